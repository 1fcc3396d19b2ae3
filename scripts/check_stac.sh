#!/usr/bin/env bash
# Checks `nadir export` with an outside tool: exports the SpaceNet patches (with building masks)
# and a few Manila patches of the demo index that scripts/check_outside.sh builds
# (target/check-index, from data/scenes; rebuilt here when absent), then validates the STAC catalog
# and every item it links with stac-validator (pinned), offline: the STAC 1.1.0 and GeoJSON schemas
# are the copies pystac bundles, the label extension v1.0.1 schema is vendored in
# scripts/stac-schemas/ (from github.com/stac-extensions/label, tag v1.0.1), as is the projection
# extension v2.0.0 schema (github.com/stac-extensions/projection, tag v2.0.0). pystac then reads
# the catalog, the collection and every item and writes them back unchanged. A second export
# without masks checks vector (classification) label items, and a broken item must be refused.
# Patches are given explicitly so that the index's label store is left untouched.
# Masks come from the SpaceNet building footprints in ../shared/data when present, else from a
# small polygon written here over the first SpaceNet patch.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pyenv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import pyarrow" 2>/dev/null; then
  "$venv/bin/pip" install --quiet pyarrow==26.0.1
fi
if [ ! -x "$venv/bin/stac-validator" ] || ! "$venv/bin/python" -c "import pystac" 2>/dev/null; then
  "$venv/bin/pip" install --quiet stac-validator==4.1.2 pystac==1.14.1
fi
nadir=./target/debug/nadir
index=target/check-index
out=target/check-stac
"$nadir" index add --quiet --index "$index" data/scenes
rm -rf "$out" "$out-vector" "$out".*

# The patch ids: every SpaceNet patch and five Manila ones; the fallback mask polygon.
mapfile -t patches < <("$venv/bin/python" - "$index" "$out.masks.geojson" <<'PY'
import json, pathlib, sys
import pyarrow.parquet as pq
index, masks = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
manifest = json.loads((index / "manifest.json").read_text())
spacenet, manila = [], []
for part in manifest["parts"]:
    t = pq.read_table(index / "parts" / f"{part['id']}.parquet", columns=["patch_id", "scene", "bbox"]).to_pylist()
    for r in t:
        pid = r["patch_id"] if isinstance(r["patch_id"], str) else f"{r['patch_id']:016x}"
        if r["scene"].startswith("spacenet"):
            spacenet.append((pid, r["bbox"]))
        elif r["scene"].startswith("manila"):
            manila.append((pid, r["bbox"]))
assert spacenet and manila, "the demo index lacks the SpaceNet or Manila scene"
b = spacenet[0][1]
cx, cy = (b["xmin"] + b["xmax"]) / 2, (b["ymin"] + b["ymax"]) / 2
dx, dy = (b["xmax"] - b["xmin"]) / 4, (b["ymax"] - b["ymin"]) / 4
ring = [[cx - dx, cy - dy], [cx + dx, cy - dy], [cx + dx, cy + dy], [cx - dx, cy + dy], [cx - dx, cy - dy]]
masks.write_text(json.dumps({"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
for pid, _ in spacenet + manila[:5]:
    print(pid)
PY
)
labels=../shared/data/scenes/spacenet/geotiff_labels.geojson
[ -f "$labels" ] || labels="$out.masks.geojson"
args=()
for p in "${patches[@]}"; do args+=(--patch "$p"); done
"$nadir" export --index "$index" --out "$out" "${args[@]}" --masks "$labels" --mask-class building
# Remote schema URLs -> local files.
"$venv/bin/python" - "$PWD/scripts/stac-schemas/label-v1.0.1.json" >"$out.schemas.json" <<'PY'
import json, pathlib, sys
import pystac
root = pathlib.Path(pystac.__file__).parent / "validation" / "jsonschemas"
base = "https://schemas.stacspec.org/v1.1.0"
m = {}
for f in (root / "stac-spec" / "v1.1.0").glob("*.json"):
    spec = {"catalog": "catalog-spec", "collection": "collection-spec"}.get(f.stem, "item-spec")
    m[f"{base}/{spec}/json-schema/{f.name}"] = str(f)
for f in (root / "geojson").glob("*.json"):
    m[f"https://geojson.org/schema/{f.name}"] = str(f)
m["https://stac-extensions.github.io/label/v1.0.1/schema.json"] = sys.argv[1]
m["https://stac-extensions.github.io/projection/v2.0.0/schema.json"] = sys.argv[1].replace("label-v1.0.1", "projection-v2.0.0")
print(json.dumps({"schemas": m}, indent=1))
PY
validate() { # catalog, expected item count, report file
  "$venv/bin/stac-validator" validate --recursive "$1" -sc "$out.schemas.json" 2>/dev/null >"$3" || true
  "$venv/bin/python" - "$3" "$2" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
reports = json.loads(text[text.index("["):text.rindex("]") + 1])
bad = [r for r in reports if not r.get("valid_stac")]
assert not bad, f"invalid STAC: {json.dumps(bad, indent=1)[:4000]}"
items = [r for r in reports if r.get("asset_type") == "ITEM"]
assert len(items) == int(sys.argv[2]), f"{len(items)} items validated, {sys.argv[2]} exported"
print(f"STAC: {sys.argv[1]}: the catalog and its {len(items)} items are valid")
PY
}
validate "$out/catalog.json" "${#patches[@]}" "$out.validation.json"
# pystac round trip: what it reads, it writes back the same (no field lost or reinterpreted).
"$venv/bin/python" - "$out" "${#patches[@]}" <<'PY'
import json, pathlib, sys
import pystac
out, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
cat = pystac.Catalog.from_file(str(out / "catalog.json"))
cols = list(cat.get_children())
assert len(cols) == 1 and isinstance(cols[0], pystac.Collection), cols
col = cols[0]
assert col.extent.spatial.bboxes and col.license == "other"
items = list(col.get_items())
assert len(items) == n, (len(items), n)
def strip(d):
    d = dict(d)
    d["links"] = sorted((l["rel"], l["href"].split("/")[-1]) for l in d.get("links", []) if l["rel"] != "self")
    # Times compare as instants: pystac writes microseconds where the item has milliseconds.
    props = dict(d.get("properties", {}))
    for k in ("datetime", "start_datetime", "end_datetime", "created", "updated"):
        if props.get(k):
            props[k] = pystac.utils.str_to_datetime(props[k])
    d["properties"] = props
    return d
for item in items:
    raw = json.loads((out / "items" / f"{item.id}.json").read_text())
    back = item.to_dict(include_self_link=False, transform_hrefs=False)
    assert strip(back) == strip(raw), f"{item.id}: pystac changed the item"
    assert item.properties["proj:code"].startswith("EPSG:") and "proj:transform" in item.properties
    assert "labels" in item.assets and any(l.rel == "source" for l in item.links)
print(f"STAC: pystac {pystac.__version__} reads the collection and its {n} items and writes them back unchanged")
PY

"$nadir" export --index "$index" --out "$out-vector" "${args[@]:0:6}" >/dev/null
validate "$out-vector/catalog.json" 3 "$out-vector.validation.json"

# A negative control: an item without label:type must be refused.
item=$(ls "$out-vector/items" | head -1)
"$venv/bin/python" -c "
import json, sys
p = sys.argv[1]; d = json.load(open(p)); del d['properties']['label:type']; json.dump(d, open(p + '.broken.json', 'w'))
" "$out-vector/items/$item"
if "$venv/bin/stac-validator" validate "$out-vector/items/$item.broken.json" -sc "$out.schemas.json" 2>/dev/null \
    | grep -q '"valid_stac": true'; then
  echo "stac-validator accepted a broken item: the check checks nothing" >&2
  exit 1
fi
echo "STAC: a broken item is refused"
# And the projection extension is validated, not skipped: a malformed proj:shape is refused.
"$venv/bin/python" -c "
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d['properties']['proj:shape'] = 'bad'; json.dump(d, open(p + '.badproj.json', 'w'))
" "$out-vector/items/$item"
if "$venv/bin/stac-validator" validate "$out-vector/items/$item.badproj.json" -sc "$out.schemas.json" 2>/dev/null \
    | grep -q '"valid_stac": true'; then
  echo "stac-validator accepted a malformed proj:shape: the projection schema is not applied" >&2
  exit 1
fi
echo "STAC: a malformed projection field is refused"

# Maps are Cloud Optimized GeoTIFFs: a quick model from the masked export (random encoder, a few
# steps: the pixels do not matter here, the file layout does), a map of the SpaceNet scene, and
# rio-cogeo's validator (pinned; its rasterio wheel brings its own GDAL) on what is on disk.
if [ ! -x "$venv/bin/rio" ] || ! "$venv/bin/rio" cogeo --version >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet rio-cogeo==7.0.4
fi
rm -rf "$out.model" "$out.map.tif"
"$nadir" finetune --encoder random --train "$out" --out "$out.model" --chip 128 --epochs 1 --max-steps 3 \
  --decoder-channels 16 >/dev/null
"$nadir" predict --model "$out.model" --out "$out.map.tif" data/scenes/spacenet-atlanta-pan.tif >/dev/null
# Model cards (the new model folder's and nadir-lite's) as the Hugging Face hub reads them.
if ! "$venv/bin/python" -c "import huggingface_hub" 2>/dev/null; then
  "$venv/bin/pip" install --quiet huggingface_hub==2.5.0
fi
HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/check_model_cards.py "$out.model/README.md" \
  clip/assets/nadir-lite/MODEL_CARD.md
"$venv/bin/rio" cogeo validate --strict "$out.map.tif"
"$venv/bin/python" - "$out.map.tif" <<'PY'
import sys
import rasterio
with rasterio.open(sys.argv[1]) as ds:
    assert ds.overviews(1), "internal overviews"
    assert ds.colormap(1), "the class colour table"
    assert ds.nodata == 255
    print(f"COG: {sys.argv[1]}: {ds.width}x{ds.height}, {ds.block_shapes[0]} tiles, overviews {ds.overviews(1)}, colour table, nodata 255")
PY
