#!/usr/bin/env bash
# The main job: set up, index the demo scenes in data/ with the default model (nadir-lite), run
# one search, and serve the index on http://127.0.0.1:8080 (NADIR_ADDR to change). Running it
# again skips the scenes already indexed. NADIR_MODEL picks another model (a CLIP weights file,
# or remoteclip-vit-b-32 when the hub or a local Hugging Face cache is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --bin nadir
nadir=./target/release/nadir
index=${NADIR_INDEX:-target/demo-index}
model=(${NADIR_MODEL:+--model "$NADIR_MODEL"})
$nadir index add --index "$index" "${model[@]}" data/scenes
echo "== nadir search \"a river with a bridge\" -k 5"
$nadir search --index "$index" "a river with a bridge" -k 5
$nadir serve --index "$index" --addr "${NADIR_ADDR:-127.0.0.1:8080}"
