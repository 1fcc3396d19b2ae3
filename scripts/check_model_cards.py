"""Reads model cards the way the Hugging Face hub does (huggingface_hub.ModelCard, offline): the
front matter must parse, name a licence, tags and a pipeline, and its model-index must give
results with a task, a data set and a value. Usage: python check_model_cards.py CARD..."""

import sys
from huggingface_hub import ModelCard
for path in sys.argv[1:]:
    card = ModelCard.load(path)
    d = card.data
    assert d.license and d.tags and d.pipeline_tag, (path, d)
    assert d.eval_results, f"{path}: no model-index results"
    for r in d.eval_results:
        assert r.metric_value is not None and r.task_type and r.dataset_name, r
    print(f"{path}: model card front matter read by huggingface_hub: licence {d.license}, "
          f"{len(d.tags)} tags, {len(d.eval_results)} results ({', '.join(f'{r.metric_type} {r.metric_value}' for r in d.eval_results)})")
