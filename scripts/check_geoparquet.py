"""Opens every part of a Nadir index with GeoPandas (pyarrow) and checks the GeoParquet patch
table as an outside tool sees it: the CRS is WGS84 (OGC:CRS84), geometries are valid polygons,
the bbox covering column and the centroid columns agree with the geometries, and the row count
matches the manifest. Usage: python check_geoparquet.py INDEX_DIR"""

import json
import warnings
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq


def main(index: Path) -> None:
    warnings.filterwarnings("ignore", message="Geometry is in a geographic CRS")
    manifest = json.loads((index / "manifest.json").read_text())
    total = 0
    for part in manifest["parts"]:
        path = index / "parts" / f"{part['id']}.parquet"
        # The footer as it is on disk (read_schema would rebuild it from ARROW:schema).
        geo = json.loads(pq.read_metadata(path).metadata[b"geo"])
        assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry", geo
        gdf = gpd.read_parquet(path)
        assert len(gdf) == part["rows"], f"{path}: {len(gdf)} rows, manifest says {part['rows']}"
        assert gdf.crs is not None and gdf.crs.to_epsg() == 4326 or "CRS84" in gdf.crs.srs, gdf.crs
        placed = gdf[gdf.geometry.notna()]
        assert (placed.geom_type == "Polygon").all(), set(placed.geom_type)
        assert placed.geometry.is_valid.all(), f"{path}: invalid footprints"
        b = placed.geometry.bounds
        # GeoPandas hides the bbox covering column; read it with pyarrow.
        bbox = pq.read_table(path, columns=["bbox"]).column("bbox").to_pylist()
        bbox = [bbox[i] for i in placed.index]
        for col in ["xmin", "ymin", "xmax", "ymax"]:
            got = np.array([r[col] for r in bbox])
            want = b[{"xmin": "minx", "ymin": "miny", "xmax": "maxx", "ymax": "maxy"}[col]].to_numpy()
            assert np.allclose(got, want), f"{path}: bbox.{col} disagrees with the geometry"
        # The stored centroid lies inside its footprint and close to the planar centroid.
        pts = gpd.points_from_xy(placed["lon"], placed["lat"], crs=placed.crs)
        assert placed.geometry.contains(gpd.GeoSeries(pts, index=placed.index)).all()
        c = placed.geometry.centroid
        assert np.allclose(c.x, placed["lon"], atol=1e-6) and np.allclose(c.y, placed["lat"], atol=1e-6)
        if len(placed):
            assert np.allclose(geo["columns"]["geometry"]["bbox"],
                               [b.minx.min(), b.miny.min(), b.maxx.max(), b.maxy.max()])
        dims = {len(e) for e in gdf["embedding"]}
        assert dims == {manifest["model"]["dim"]}, dims
        total += len(gdf)
    rows = sum(p["rows"] for p in manifest["parts"])
    assert total == rows, (total, rows)
    print(f"{index}: GeoParquet OK ({total} rows in {len(manifest['parts'])} parts, CRS84, valid polygons)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
