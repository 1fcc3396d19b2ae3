#!/usr/bin/env bash
# Reproduces the bundled nadir-lite adapters and the tables of clip/assets/nadir-lite/MODEL_CARD.md
# and docs/bench/retrieval.md: prepares the alignment data from git snapshots of the source
# repositories, trains the default model on UCM-captions + RSICD + EuroSAT, trains the three
# leave-one-dataset-out models (without EuroSAT, RSICD/AID, UCM), and benchmarks them on
# each set's held-out split. About an hour on 2 cores the first time (tower features are
# cached in ~/.cache/nadir/features).
# Usage: bash scripts/train_default_model.sh [MIRRORS_DIR] [DATA_DIR]
#   MIRRORS_DIR: where zlima/testtensor, albertofrizzera/VT-RSBS and
#   Mariner07/Satellite_Image_Classification are (default /work/.mirror, as `fetch` leaves them).
set -euo pipefail
cd "$(dirname "$0")/.."
mirrors=${1:-/work/.mirror}
data=${2:-target/alignment-data}
out=target/default-model
mkdir -p "$out"
[ -d "$data/rsicd" ] || python3 scripts/prepare_alignment_data.py --out "$data" --mirrors "$mirrors" --ucm ../shared/data/ucm
cargo build --release --locked --bin nadir
nadir=./target/release/nadir
common=(--data "$data" --ground-size 150)
# The bundled model.
$nadir train-adapters "${common[@]}" --datasets ucm,rsicd,eurosat --views 8,2,2 --repeat 4,1,1 --out clip/assets/nadir-lite/adapters.safetensors
# Leave one data set out: EuroSAT, RSICD (whose images are AID's), UC Merced.
$nadir train-adapters "${common[@]}" --datasets ucm,rsicd --views 8,2 --repeat 4,1 --out "$out/without-eurosat.safetensors"
$nadir train-adapters "${common[@]}" --datasets ucm,eurosat --views 8,2 --repeat 4,1 --out "$out/without-rsicd.safetensors"
$nadir train-adapters "${common[@]}" --datasets rsicd,eurosat --views 2,2 --out "$out/without-ucm.safetensors"
for m in bundled "$out/without-eurosat.safetensors" "$out/without-rsicd.safetensors" "$out/without-ucm.safetensors" clip/assets/nadir-lite/adapters-v1.safetensors; do
  echo "== $m"
  if [ "$m" = bundled ]; then a=(); else a=(--adapters "$m"); fi
  $nadir bench retrieval --data "$data" "${a[@]}"
done
