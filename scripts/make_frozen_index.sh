#!/usr/bin/env bash
# Builds the frozen test index of the current format (indexer/tests/fixtures/frozen-v<N>) and what the format test
# expects of it. Run only when the format version changes on purpose, with the new version as
# the argument (older frozen indexes stay: they test that old versions still open). Needs ../shared/data and
# python3 with pyarrow. NADIR=path/to/nadir uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: make_frozen_index.sh FORMAT_VERSION}
out=indexer/tests/fixtures/frozen-v$version
rm -rf "$out"
nadir=${NADIR:-./target/debug/nadir}
[ -n "${NADIR:-}" ] || cargo build --bin nadir
"$nadir" index add --quiet --index "$out" --patch 200 \
  --model clip/tests/fixtures/tiny-quickgelu.safetensors ../shared/data/scenes/openaerialmap/OSBS_029.tif
rm -f "$out/.lock"
python3 - "$out" "$version" <<'PY'
import glob, json, sys
import pyarrow.parquet as pq
out, version = sys.argv[1], sys.argv[2]
m = json.load(open(f"{out}/manifest.json"))
rows = []
for part in m["parts"]:
    rows += pq.read_table(f"{out}/parts/{part['id']}.parquet").to_pylist()
expected = {"rows": len(rows), "dim": m["model"]["dim"], "ids": [r["patch_id"] for r in rows],
            "first_vector": rows[0]["embedding"]}
json.dump(expected, open(f"{out}/../frozen-v{version}.expected.json", "w"), indent=1)
print(f"{out}: {len(rows)} rows")
PY
