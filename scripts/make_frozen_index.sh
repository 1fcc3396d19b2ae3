#!/usr/bin/env bash
# Rebuilds the frozen test index (indexer/tests/fixtures/frozen-v1) and what the format test
# expects of it. Run only when the format version changes on purpose. Needs ../shared/data and
# python3 with pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
out=indexer/tests/fixtures/frozen-v1
rm -rf "$out"
cargo build --bin nadir
./target/debug/nadir index add --quiet --index "$out" --patch 200 \
  --model clip/tests/fixtures/tiny-quickgelu.safetensors ../shared/data/scenes/openaerialmap/OSBS_029.tif
rm -f "$out/.lock"
python3 - "$out" <<'PY'
import glob, json, sys
import pyarrow.parquet as pq
out = sys.argv[1]
m = json.load(open(f"{out}/manifest.json"))
rows = []
for part in m["parts"]:
    rows += pq.read_table(f"{out}/parts/{part['id']}.parquet").to_pylist()
expected = {"rows": len(rows), "dim": m["model"]["dim"], "ids": [r["patch_id"] for r in rows],
            "first_vector": rows[0]["embedding"]}
json.dump(expected, open(f"{out}/../frozen-v1.expected.json", "w"), indent=1)
print(f"{out}: {len(rows)} rows")
PY
