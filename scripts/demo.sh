#!/usr/bin/env bash
# The main job, as far as it exists today: build the CLI and embed texts and real images with a
# CLIP checkpoint. NADIR_MODEL picks the weights (a file, or remoteclip-vit-b-32 when the hub or a
# local Hugging Face cache is reachable); the default is the tiny random-weight parity fixture,
# so the job runs offline but its vectors carry no meaning.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${NADIR_MODEL:-clip/tests/fixtures/tiny-quickgelu.pt}
cargo build --release --locked --bin nadir
echo "== text embeddings ($model)"
./target/release/nadir embed-text --model "$model" "dense residential near the coast" "a harbor with boats" | cut -c1-120
echo "== image embeddings ($model)"
./target/release/nadir embed-image --model "$model" clip/tests/fixtures/images/*.png | cut -c1-120
