"""Reads every part of a Nadir index the way footer readers do: the parquet footer's key-value
metadata (pyarrow's read_metadata, not the schema rebuilt from ARROW:schema), then DuckDB, which
must type `geometry` as GEOMETRY('OGC:CRS84'), filter on the bbox covering column, and cast
`embedding` to a fixed-size array for array_cosine_similarity. Then GDAL's Parquet driver where
the installed GDAL has one (ogrinfo, else pyogrio), skipped with a message where it has not.
Parts are taken from the manifest's list, never a glob (a folder may hold files of an interrupted
run). Usage: python check_duckdb.py INDEX_DIR"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import shapely.wkt


def main(index: Path) -> None:
    manifest = json.loads((index / "manifest.json").read_text())
    dim = manifest["model"]["dim"]
    parts = [index / "parts" / f"{p['id']}.parquet" for p in manifest["parts"]]
    assert parts, "no parts"
    for path in parts:
        footer = pq.read_metadata(path).metadata or {}
        assert b"geo" in footer, f"{path}: no `geo` key in the parquet footer ({sorted(footer)})"
        geo = json.loads(footer[b"geo"])
        assert geo["primary_column"] == "geometry" and "covering" in geo["columns"]["geometry"], geo

    con = duckdb.connect()
    files = "[" + ", ".join(f"'{p}'" for p in parts) + "]"
    types = {name: typ for name, typ, *_ in con.execute(f"DESCRIBE SELECT * FROM read_parquet({files})").fetchall()}
    assert types["geometry"] == "GEOMETRY('OGC:CRS84')", f"geometry is typed {types['geometry']}"
    rows = con.execute(f"SELECT count(*) FROM read_parquet({files})").fetchone()[0]
    assert rows == sum(p["rows"] for p in manifest["parts"]), rows

    # The bbox covering filters like the geometry: the rows whose bbox meets a box around the
    # first placed patch are the rows whose geometry intersects it (exact test with ST_Intersects
    # would need the spatial extension; the bbox of the geometry is core: ST_XMin...).
    first = con.execute(f"SELECT lon, lat FROM read_parquet({files}) WHERE lon IS NOT NULL LIMIT 1").fetchone()
    if first is not None:
        lon, lat = first
        box = (lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001)
        by_cover = con.execute(
            f"""SELECT patch_id FROM read_parquet({files})
                WHERE bbox.xmin <= {box[2]} AND bbox.xmax >= {box[0]}
                  AND bbox.ymin <= {box[3]} AND bbox.ymax >= {box[1]} ORDER BY patch_id"""
        ).fetchall()
        # Core DuckDB has no ST_XMin (the spatial extension has; no download here): the
        # geometries' own bounds come from their WKT, which core writes.
        wkts = con.execute(f"SELECT patch_id, ST_AsText(geometry) FROM read_parquet({files}) "
                           "WHERE geometry IS NOT NULL ORDER BY patch_id").fetchall()
        by_geom = []
        for pid, wkt in wkts:
            b = shapely.wkt.loads(wkt).bounds
            if b[0] <= box[2] and b[2] >= box[0] and b[1] <= box[3] and b[3] >= box[1]:
                by_geom.append((pid,))
        assert by_cover and by_cover == by_geom, (len(by_cover), len(by_geom))

    # Similarity search in SQL: every patch is its own nearest neighbour.
    nearest = con.execute(
        f"""WITH t AS (SELECT patch_id, embedding::FLOAT[{dim}] AS e FROM read_parquet({files})),
                 q AS (SELECT patch_id AS qid, e AS qe FROM t LIMIT 3)
            SELECT qid, arg_max(patch_id, array_cosine_similarity(e, qe)) AS best,
                   max(array_cosine_similarity(e, qe)) AS sim
            FROM q, t GROUP BY qid"""
    ).fetchall()
    assert nearest and all(q == best and sim > 0.999 for q, best, sim in nearest), nearest
    print(f"{index}: DuckDB {duckdb.__version__} reads {rows} rows in {len(parts)} parts: "
          f"geometry GEOMETRY('OGC:CRS84'), bbox covering filters, embedding FLOAT[{dim}] searchable")

    gdal(parts[0])


def gdal(part: Path) -> None:
    ogrinfo = shutil.which("ogrinfo")
    if ogrinfo:
        formats = subprocess.run([ogrinfo, "--formats"], capture_output=True, text=True).stdout
        if "Parquet" in formats:
            out = subprocess.run([ogrinfo, "-so", "-al", str(part)], capture_output=True, text=True, check=True).stdout
            assert "Geometry: Polygon" in out and ("CRS84" in out or "WGS 84" in out), out
            print(f"{part.name}: GDAL ogrinfo reads Polygon layers in WGS 84")
            return
    try:
        import pyogrio
        if "Parquet" in pyogrio.list_drivers():
            info = pyogrio.read_info(part)
            assert info["geometry_type"] == "Polygon", info
            print(f"{part.name}: GDAL {pyogrio.__gdal_version_string__} (pyogrio) reads Polygon layers")
            return
    except ImportError:
        pass
    print("GDAL Parquet check skipped: neither the installed GDAL (ogrinfo) nor pyogrio's has the Parquet driver "
          "(Debian bookworm's GDAL 3.6 is built without it)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
