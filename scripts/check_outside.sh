#!/usr/bin/env bash
# Checks Nadir with outside tools, as users' tools see it: indexes the demo scenes with the debug
# CLI, opens the GeoParquet patch table with GeoPandas (scripts/check_geoparquet.py) and with
# footer readers, DuckDB and GDAL where it has the Parquet driver (scripts/check_duckdb.py, on the
# new index and on the frozen format fixture), then serves the index on 127.0.0.1 and fuzzes the
# API from its OpenAPI document with schemathesis (no answer may be a 5xx), then runs the hostile
# corpus, a load and a slow-client flood (scripts/check_hostile.py). Python packages go into a
# virtualenv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pyenv
if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet geopandas==1.1.1 pyarrow==26.0.1 shapely==2.2.0 schemathesis==4.32.5 \
    duckdb==2.0.1
fi
nadir=./target/debug/nadir
index=target/check-index
"$nadir" index add --quiet --index "$index" data/scenes
"$venv/bin/python" scripts/check_geoparquet.py "$index"
"$venv/bin/python" scripts/check_duckdb.py "$index"
"$venv/bin/python" scripts/check_duckdb.py indexer/tests/fixtures/frozen-v3

port=${NADIR_CHECK_PORT:-18181}
"$nadir" serve --index "$index" --addr "127.0.0.1:$port" --query-timeout 20 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.5
done
"$venv/bin/st" run "http://127.0.0.1:$port/openapi.json" --checks not_a_server_error \
  --max-examples 40 --generation-deterministic --request-timeout 30
echo "API fuzzing: no 5xx"
# The hostile corpus (tests/hostile/cases.json and large bodies), a mixed load and a slow-client
# flood against the same server (a debug build here: the figures that matter come from the
# release build, see the issue notes).
"$venv/bin/python" scripts/check_hostile.py --port "$port" --pid "$server" --requests 600 \
  --concurrency 16 --slow 900 --max-rss-mb 1500
