#!/usr/bin/env bash
# Reproduces the nadir-lite adapter experiments of clip/assets/nadir-lite/MODEL_CARD.md: each
# line trains adapters with one change against the baseline (seed 0) and records its val report;
# the table at the end is what the model card shows. Tower features are cached after the first run.
# Usage: bash scripts/adapter_experiments.sh [UCM_DIR]   (default ../shared/data/ucm)
set -euo pipefail
cd "$(dirname "$0")/.."
ucm=${1:-../shared/data/ucm}
out=target/adapter-experiments
mkdir -p "$out"
cargo build --release --locked --bin nadir
run() { # name args...
  local name=$1; shift
  ./target/release/nadir train-adapters --ucm "$ucm" --out "$out/$name.safetensors" "$@" >/dev/null
  echo "$name: $*"
}
# The defaults of `nadir train-adapters` are the chosen run: 40 epochs, lr 1e-4, 256-d linear
# heads, same-caption positives, 8 dihedral views, prompt augmentation, seed 0.
plain=(--views 1 --no-prompts)
run baseline "${plain[@]}"
run lr-1e-3 "${plain[@]}" --lr 1e-3
run pairs-only "${plain[@]}" --positives pair
run same-class "${plain[@]}" --positives same-class
run fixed-temp "${plain[@]}" --fixed-temperature
run dim-512 "${plain[@]}" --dim 512
run mlp-1024 "${plain[@]}" --hidden 1024
run prompts --views 1
run views-8 --no-prompts
run views-8-prompts
run views-8-prompts-mlp --hidden 1024
run views-8-same-class --no-prompts --positives same-class
run views-8-prompts-dim-512 --dim 512
run views-8-prompts-same-class --positives same-class
run views-8-prompts-seed-1 --seed 1
run views-8-prompts-seed-2 --seed 2
run views-8-prompts-same-class-seed-1 --positives same-class --seed 1
run views-8-prompts-same-class-seed-2 --positives same-class --seed 2
run views-8-prompts-15ep --epochs 15
run views-8-prompts-unfreeze-head-15ep --epochs 15 --unfreeze-head   # ~20 min: 65 s an epoch
python3 - "$out" <<'PY'
import json, sys, pathlib
rows = []
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.report.json"), key=lambda p: p.stat().st_mtime):
    r = json.load(open(p))
    v = r["val"]; zs = dict(r["zero_shot"])
    f = lambda x: f"{100*x:.1f}"
    rows.append(f"| {p.name.removesuffix('.report.json')} | {f(v['t2i'][0])} | {f(v['t2i'][1])} | {f(v['t2i'][2])} | "
                f"{f(v['i2t'][0])} | {f(v['i2t'][1])} | {f(v['i2t'][2])} | {f(v['mean_recall'])} | "
                f"{f(zs['an aerial photo of {}.'])} | {f(zs['ensemble'])} | {r['train_report']['best_epoch']} |")
print("| run | t2i R@1 | R@5 | R@10 | i2t R@1 | R@5 | R@10 | mean R | zero-shot | zero-shot ens. | epoch |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print("\n".join(rows))
PY
