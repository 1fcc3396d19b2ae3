//! `import` end to end: the real Clay GeoParquet (417 Sentinel-2 chips over western Alaska) and an
//! AlphaEarth-style embedding GeoTIFF written here. Row counts, unit vectors equal to the source's
//! (Clay) or to the pooled mean computed here (AlphaEarth), footprints against the bbox or the
//! georeference, the model id, re-import as a no-op, and the refusal to mix two models.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use gdal::raster::Buffer;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::DriverManager;
use h3o::{CellIndex, LatLng};
use nadir_indexer::import::{import, Format, ImportOptions};
use nadir_indexer::{Index, Manifest};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::shared_data;

const CLAY: &str = "embeddings/clay/03WVN_20220610_20220610_v001.gpq";
/// The file's `geo` bbox (lon, lat): MGRS tile 03WVN, western Alaska.
const CLAY_BBOX: [f64; 4] = [
    -167.18803051829005,
    64.84192675131861,
    -164.83644584231885,
    65.8215885781936,
];

fn clay_file() -> Option<PathBuf> {
    let p = shared_data()?.join(CLAY);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// The H3 cell at the row's finest resolution contains its centroid.
fn check_cells(h3: &[u64], (lon, lat): (f64, f64)) {
    let finest = CellIndex::try_from(*h3.last().expect("cells")).unwrap();
    let at = LatLng::new(lat, lon).unwrap().to_cell(finest.resolution());
    assert_eq!(at, finest, "H3 cell does not contain the centroid");
}

#[test]
fn clay_geoparquet_imports_once_and_refuses_another_model() -> anyhow::Result<()> {
    let Some(gpq) = clay_file() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let report = import(
        dir.path(),
        Format::Clay,
        std::slice::from_ref(&gpq),
        &ImportOptions::default(),
    )?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!((report.added, report.patches, report.total_rows), (1, 417, 417));

    let m = Manifest::load(dir.path())?;
    assert_eq!(
        (m.model.name.as_str(), m.model.dim, m.model.text),
        ("clay-v0", 768, false)
    );
    assert_eq!(m.model.sha256, nadir_clip::encoder::sha256_file(&gpq)?);
    assert_eq!(m.scenes.len(), 1);
    assert!(m.scenes[0].georeferenced);
    assert_eq!(m.scenes[0].sha256, m.model.sha256);

    let index = Index::open(dir.path())?;
    assert_eq!((index.len(), index.dim()), (417, 768));
    let [x0, y0, x1, y1] = CLAY_BBOX;
    let eps = 1e-9;
    for (row, r) in index.records().iter().enumerate() {
        let v = index.vector(row as u32);
        assert!((norm(v) - 1.0).abs() < 1e-4, "row {row}: norm {}", norm(v));
        let fp = r.footprint.as_ref().expect("footprint");
        for c in fp.exterior().coords() {
            assert!(
                (x0 - eps..=x1 + eps).contains(&c.x) && (y0 - eps..=y1 + eps).contains(&c.y),
                "row {row}: vertex {c:?} outside the file's bbox"
            );
        }
        assert!(
            geo::Area::signed_area(fp) > 0.0,
            "row {row}: not counter-clockwise"
        );
        let centroid = r.centroid.expect("centroid");
        check_cells(&r.h3, centroid);
        // A 5.12 km chip (~26 km2): H3 resolution 6 (~36 km2) is the closest.
        assert_eq!(r.h3.len(), 7, "row {row}");
        assert_eq!(r.acquired_ms, Some(1_654_819_200_000), "2022-06-10");
        assert_eq!(r.gsd_m, Some(10.0));
        assert_eq!(r.tags, ["clay", "sentinel-2"]);
        assert!(r.labels.is_empty());
    }
    let thumb = image::load_from_memory(&index.thumbnail(0)?)?.to_rgb8();
    assert_eq!(thumb.dimensions(), (128, 128));

    // The stored vector of the file's first row is its embedding, L2-normalised.
    let mut batches = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&gpq)?)?.build()?;
    let batch = batches.next().expect("a batch")?;
    let list = batch
        .column_by_name("embeddings")
        .expect("embeddings")
        .as_list::<i32>()
        .value(0);
    let source = list.as_primitive::<Float32Type>().values().to_vec();
    let n = norm(&source);
    assert!(
        (n - 1.0).abs() > 0.1,
        "Clay's vectors are not unit length ({n}): normalising is tested"
    );
    let row = index
        .records()
        .iter()
        .position(|r| r.window.x == 0)
        .expect("row 0") as u32;
    for (a, b) in index.vector(row).iter().zip(&source) {
        assert!((a - b / n).abs() < 1e-6);
    }

    // Importing the same file again changes nothing.
    let again = import(
        dir.path(),
        Format::Clay,
        std::slice::from_ref(&gpq),
        &ImportOptions::default(),
    )?;
    assert_eq!(
        (again.added, again.unchanged, again.patches, again.total_rows),
        (0, 1, 0, 417)
    );
    let after = Manifest::load(dir.path())?;
    assert_eq!((after.generation, &after.parts), (m.generation, &m.parts));

    // AlphaEarth vectors into the Clay index: refused, naming both models, the index untouched.
    let tif = dir.path().join("ae.tif");
    write_embedding_tif(&tif)?;
    let err = import(dir.path(), Format::AlphaEarth, &[tif], &ImportOptions::default())
        .expect_err("two models in one index")
        .to_string();
    assert!(err.contains("clay-v0") && err.contains("alphaearth-v1"), "{err}");
    assert_eq!(Manifest::load(dir.path())?, after);
    Ok(())
}

const W: usize = 64;
const H: usize = 48;
const BANDS: usize = 64;
const NODATA: f32 = -9999.0;
/// UTM 10N, 10 m pixels, near San Francisco.
const GT: [f64; 6] = [550_000.0, 10.0, 0.0, 4_180_000.0, 0.0, -10.0];

/// The synthetic raster's value of band `b` (0-based) at (x, y): four regions (quadrants split at
/// x = 32, y = 24, so windows of 16 px straddle them) with distinct vectors plus a small ramp;
/// nodata over the bottom-right window and on a sparse pattern; NaN in one band of other pixels.
fn value(b: usize, x: usize, y: usize) -> f32 {
    if (x >= 48 && y >= 32) || (x * y) % 13 == 5 {
        return NODATA;
    }
    if (x + 2 * y).is_multiple_of(11) && b == x % BANDS {
        return f32::NAN;
    }
    let region = x / 32 + 2 * (y / 24);
    ((b + 1) as f32 * 0.37 * (region + 1) as f32).sin() + 0.01 * (x as f32 - y as f32) / 64.0
}

fn valid(x: usize, y: usize) -> bool {
    (0..BANDS).all(|b| {
        let v = value(b, x, y);
        v.is_finite() && v != NODATA
    })
}

/// The L2-normalised mean of the valid pixels of the 16 px window at (wx, wy); `None` without any.
fn pooled(wx: usize, wy: usize, side: usize) -> Option<Vec<f32>> {
    let pixels: Vec<(usize, usize)> = (wy..wy + side)
        .flat_map(|y| (wx..wx + side).map(move |x| (x, y)))
        .filter(|&(x, y)| valid(x, y))
        .collect();
    if pixels.is_empty() {
        return None;
    }
    let mean: Vec<f64> = (0..BANDS)
        .map(|b| {
            pixels
                .iter()
                .map(|&(x, y)| f64::from(value(b, x, y)))
                .sum::<f64>()
                / pixels.len() as f64
        })
        .collect();
    let n = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    Some(mean.iter().map(|v| (v / n) as f32).collect())
}

/// A 64x48 px, 64-band Float32 GeoTIFF in EPSG:32610 with 10 m pixels and nodata -9999.
fn write_embedding_tif(path: &Path) -> anyhow::Result<()> {
    let mut ds =
        DriverManager::get_driver_by_name("GTiff")?.create_with_band_type::<f32, _>(path, W, H, BANDS)?;
    ds.set_geo_transform(&GT)?;
    ds.set_spatial_ref(&SpatialRef::from_epsg(32610)?)?;
    for b in 0..BANDS {
        let mut band = ds.rasterband(b + 1)?;
        band.set_no_data_value(Some(f64::from(NODATA)))?;
        let px = (0..W * H).map(|i| value(b, i % W, i / W)).collect();
        band.write((0, 0), (W, H), &mut Buffer::new((W, H), px))?;
    }
    ds.close()?;
    Ok(())
}

/// (lon, lat) of pixel corner (x, y), through GDAL directly.
fn corner_lonlat(x: f64, y: f64) -> anyhow::Result<(f64, f64)> {
    let mut utm = SpatialRef::from_epsg(32610)?;
    let mut wgs84 = SpatialRef::from_epsg(4326)?;
    utm.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let (mut xs, mut ys) = ([GT[0] + x * GT[1]], [GT[3] + y * GT[5]]);
    CoordTransform::new(&utm, &wgs84)?.transform_coords(&mut xs, &mut ys, &mut [])?;
    Ok((xs[0], ys[0]))
}

#[test]
fn alphaearth_windows_pool_valid_pixels() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tif = dir.path().join("embeddings.tif");
    write_embedding_tif(&tif)?;
    let index_dir = dir.path().join("index");
    let report = import(
        &index_dir,
        Format::AlphaEarth,
        std::slice::from_ref(&tif),
        &ImportOptions::default(),
    )?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let side = 16;
    let windows: Vec<(usize, usize)> = (0..H / side)
        .flat_map(|j| (0..W / side).map(move |i| (i * side, j * side)))
        .collect();
    let expected: Vec<(usize, usize)> = windows
        .iter()
        .copied()
        .filter(|&(x, y)| pooled(x, y, side).is_some())
        .collect();
    assert_eq!(expected.len(), 11, "the bottom-right window is all nodata");
    assert_eq!(
        (report.patches, report.skipped_windows, report.total_rows),
        (11, 1, 11)
    );

    let m = Manifest::load(&index_dir)?;
    assert_eq!(
        (m.model.name.as_str(), m.model.dim, m.model.text),
        ("alphaearth-v1", 64, false)
    );
    assert_eq!(m.model.sha256, nadir_clip::encoder::sha256_file(&tif)?);
    assert_eq!(m.tiling.patch, 16);
    let scene = &m.scenes[0];
    assert_eq!(
        (scene.width, scene.height, scene.epsg, scene.skipped),
        (64, 48, Some(32610), 1)
    );
    let px = scene.pixel_size_m.expect("pixel size");
    assert!((px - 10.0).abs() < 0.1, "pixel {px} m");

    let index = Index::open(&index_dir)?;
    assert_eq!((index.len(), index.dim()), (11, 64));
    let mut got: Vec<(usize, usize)> = Vec::new();
    for (row, r) in index.records().iter().enumerate() {
        let (wx, wy) = (r.window.x as usize, r.window.y as usize);
        assert_eq!((r.window.width, r.window.height), (16, 16));
        got.push((wx, wy));
        // The stored vector is the L2-normalised mean computed here, independently.
        let want = pooled(wx, wy, side).expect("a window with valid pixels");
        let v = index.vector(row as u32);
        for (d, (a, b)) in v.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-5, "window {wx},{wy} dim {d}: {a} vs {b}");
        }
        // The footprint's corners are the window's corners through the georeference.
        let fp = r.footprint.as_ref().expect("footprint");
        for (cx, cy) in [(wx, wy), (wx + side, wy), (wx + side, wy + side), (wx, wy + side)] {
            let (lon, lat) = corner_lonlat(cx as f64, cy as f64)?;
            let d = fp
                .exterior()
                .coords()
                .map(|c| (c.x - lon).hypot(c.y - lat))
                .fold(f64::MAX, f64::min);
            assert!(
                d < 1e-9,
                "window {wx},{wy}: corner {cx},{cy} is {d} deg from the footprint"
            );
        }
        check_cells(&r.h3, r.centroid.expect("centroid"));
        assert_eq!(r.tags, ["alphaearth"]);
        let thumb = image::load_from_memory(&index.thumbnail(row as u32)?)?.to_rgb8();
        assert_eq!(thumb.dimensions(), (128, 128));
    }
    got.sort_by_key(|&(x, y)| (y, x));
    assert_eq!(got, expected);

    // Distinct regions give distinct vectors and distinct false-colour thumbnails.
    let row_of = |x: u32, y: u32| {
        index
            .records()
            .iter()
            .position(|r| (r.window.x, r.window.y) == (x, y))
            .expect("window") as u32
    };
    let (a, b) = (row_of(0, 0), row_of(32, 0));
    let dot: f32 = index
        .vector(a)
        .iter()
        .zip(index.vector(b))
        .map(|(x, y)| x * y)
        .sum();
    assert!(
        dot < 0.95,
        "regions 0 and 1 pool to near-identical vectors ({dot})"
    );
    assert_ne!(index.thumbnail(a)?, index.thumbnail(b)?);

    // Again: a no-op; another patch size: refused.
    let again = import(
        &index_dir,
        Format::AlphaEarth,
        std::slice::from_ref(&tif),
        &ImportOptions::default(),
    )?;
    assert_eq!((again.unchanged, again.patches, again.total_rows), (1, 0, 11));
    let opts = ImportOptions {
        patch: Some(32),
        ..Default::default()
    };
    let err = import(&index_dir, Format::AlphaEarth, &[tif], &opts).expect_err("other patch size");
    assert!(err.to_string().contains("patch settings"), "{err}");
    Ok(())
}

#[test]
fn alphaearth_name_and_patch_are_parameters() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tif = dir.path().join("embeddings.tif");
    write_embedding_tif(&tif)?;
    let index_dir = dir.path().join("index");
    let opts = ImportOptions {
        name: Some("my-embeddings".into()),
        patch: Some(32),
        tags: vec!["x".into()],
    };
    let report = import(&index_dir, Format::AlphaEarth, std::slice::from_ref(&tif), &opts)?;
    // 32 px windows over 64x48: x 0, 32; y 0, 16 (shifted to end at the edge). The bottom-right one
    // (32..64, 16..48) still has valid pixels above y = 32.
    assert_eq!(report.patches, 4);
    let m = Manifest::load(&index_dir)?;
    assert_eq!((m.model.name.as_str(), m.tiling.patch), ("my-embeddings", 32));
    let index = Index::open(&index_dir)?;
    assert_eq!(index.records()[0].tags, ["alphaearth", "x"]);
    for row in 0..index.len() as u32 {
        let r = index.record(row);
        let want = pooled(r.window.x as usize, r.window.y as usize, 32).expect("valid pixels");
        for (a, b) in index.vector(row).iter().zip(&want) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    // A missing file is reported, the others imported; a non-raster fails naming the file.
    let junk = dir.path().join("junk.tif");
    std::fs::write(&junk, b"not a raster")?;
    let report = import(
        &index_dir,
        Format::AlphaEarth,
        &[dir.path().join("missing.tif"), junk.clone()],
        &opts,
    )?;
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    assert!(report.failed[1].1.contains("junk.tif"), "{:?}", report.failed);
    assert_eq!(report.total_rows, 4);
    Ok(())
}
