#!/usr/bin/env bash
# The active-learning benchmark: indexes the UC Merced images (../shared/data/ucm) with the
# default model, simulates labelling per class (`nadir bench active-learning`), and plots mean
# average precision against labels into docs/bench/active-learning.png (needs matplotlib).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin nadir
nadir=./target/release/nadir
index=target/ucm-index
$nadir index add --quiet --index "$index" ../shared/data/ucm/images
$nadir bench active-learning --index "$index" --seeds "${SEEDS:-3}" > docs/bench/active-learning.csv
python3 scripts/plot_active_learning.py docs/bench/active-learning.csv docs/bench/active-learning.png
