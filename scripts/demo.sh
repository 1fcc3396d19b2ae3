#!/usr/bin/env bash
# The main job, as far as it exists today: fetch the default model's pretrained towers, build the
# CLI, and embed texts and real aerial images with `nadir-lite`, then rank the images for a query.
# NADIR_MODEL picks another model (a CLIP weights file, or remoteclip-vit-b-32 when the hub or a
# local Hugging Face cache is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-models.sh
cargo build --release --locked --bin nadir
model=(${NADIR_MODEL:+--model "$NADIR_MODEL"})
nadir=./target/release/nadir
echo "== text embeddings (${NADIR_MODEL:-nadir-lite}), first values"
$nadir embed-text "${model[@]}" "dense residential near the coast" "a harbor with boats" | cut -c1-100
echo "== images ranked for \"a beach with waves\""
$nadir rank "${model[@]}" "a beach with waves" clip/tests/fixtures/images/*.png clip/tests/fixtures/images/*.jpg
