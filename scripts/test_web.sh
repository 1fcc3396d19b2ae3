#!/usr/bin/env bash
# Tests the page in a real browser: Debian's headless Chromium driven by playwright-core (npm,
# pinned in web/ui/package-lock.json). Installs Chromium with apt-get when /usr/bin/chromium is
# missing, checks that the checked-in bundle in web/assets/ is what web/ui/ builds to, indexes the
# demo scenes (data/scenes) and ~20 UCM photos without georeference (../shared/data/ucm/images; the
# gallery test is skipped with a message when they are absent) with the debug CLI, serves each on
# a free port of 127.0.0.1, and runs web/ui/tests/ with node's test runner. Screenshots are saved
# to target/web-screenshots/. The servers are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q chromium
fi

if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "the browser tests need Node.js >= 20 (playwright-core); this is $(node --version)" >&2
  exit 1
fi
# The npm packages (esbuild, MapLibre, h3-js, playwright-core), then the bundle check.
ui=web/ui
stamp=$ui/node_modules/.installed-lock.json
if ! cmp -s "$ui/package-lock.json" "$stamp"; then
  (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$ui/package-lock.json" "$stamp"
fi
fresh=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$fresh"
}
trap cleanup EXIT
WEB_ASSETS_OUT=$fresh bash scripts/build_web.sh >/dev/null
if ! diff -r -q "$fresh" web/assets; then
  echo "web/assets/ is not what web/ui/ builds to: run scripts/build_web.sh and commit web/assets/" >&2
  exit 1
fi

# The page is built into the binary: (re)build it (a no-op when current).
cargo build --locked --bin nadir
nadir=./target/debug/nadir
# 224 px windows (not the model's 150 m default): the page tests want more than 40 patches.
"$nadir" index add --quiet --index target/web-index --patch 224 data/scenes
ucm=../shared/data/ucm/images
gallery_url=
if [ -d "$ucm" ]; then
  photos=()
  for class in agricultural airplane beach buildings harbor; do
    for i in 00 01 02 03; do photos+=("$ucm/$class$i.jpg"); done
  done
  "$nadir" index add --quiet --index target/web-ucm-index "${photos[@]}"
else
  echo "no $ucm: the gallery test will be skipped"
fi

free_port() {
  node -e "const s = require('net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"
}
serve() { # index, port
  "$nadir" serve --index "$1" --addr "127.0.0.1:$2" --query-timeout 30 >"target/web-serve-$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 240); do
    curl -fsS "http://127.0.0.1:$2/health" >/dev/null 2>&1 && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.5
  done
  echo "nadir serve --index $1 did not start:" >&2
  cat "target/web-serve-$2.log" >&2
  return 1
}
# Start from empty label stores (the labels API keeps them in the index folder), without the
# training sets earlier runs exported there.
rm -f target/web-index/labels.sqlite* target/web-ucm-index/labels.sqlite*
rm -rf target/web-index/exports target/web-ucm-index/exports
port=$(free_port)
serve target/web-index "$port"
map_url=http://127.0.0.1:$port/
if [ -d "$ucm" ]; then
  port2=$(free_port)
  serve target/web-ucm-index "$port2"
  gallery_url=http://127.0.0.1:$port2/
fi

shots=target/web-screenshots
rm -rf "$shots"
mkdir -p "$shots"
NADIR_MAP_URL=$map_url NADIR_GALLERY_URL=$gallery_url NADIR_SCREENSHOTS=$shots \
  node --test "$ui/tests/"
echo "screenshots: $shots/"
