//! `add` end to end on real scenes: every scene in the shared data indexes; footprints match the
//! raster's georeference and H3 cells contain centroids (property test over tilings); adding is
//! incremental; bad inputs fail one by one with the file named, leaving the index unchanged.

use std::path::{Path, PathBuf};

use gdal::raster::Buffer;
use gdal::DriverManager;
use h3o::{CellIndex, LatLng};
use nadir_indexer::raster::{RasterOptions, Scene};
use nadir_indexer::{Edge, Index, Manifest, Tiling};
use proptest::prelude::*;

use crate::common::{quick, shared_data, tiny_model};

fn scenes(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in [
        "scenes/openaerialmap",
        "scenes/spacenet",
        "scenes/spacenet/preproc_tutorial",
    ] {
        for e in std::fs::read_dir(data.join(sub)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "tif") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Checks the invariants of every row: footprints within a pixel of the georeference, H3 cells
/// containing centroids, unique ids.
fn check_rows(index: &Index) {
    let mut ids = std::collections::HashSet::new();
    for (row, r) in index.records().iter().enumerate() {
        assert!(ids.insert(r.id), "duplicate patch {}", r.id);
        let v = index.vector(row as u32);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "row {row} norm {norm}");
        let scene = index.manifest().scene(&r.scene).expect("scene in manifest");
        let Some(footprint) = &r.footprint else {
            assert!(!scene.georeferenced && r.h3.is_empty() && r.centroid.is_none());
            continue;
        };
        let opened = Scene::open(&scene.path, &RasterOptions::default()).unwrap();
        let georef = opened.georef().expect("georeferenced");
        let w = r.window;
        for c in footprint.exterior().0.iter() {
            let (px, py) = georef.lonlat_to_pixel(c.x, c.y).unwrap();
            let on_x = [w.x, w.x + w.width]
                .iter()
                .any(|&e| (px - f64::from(e)).abs() <= 1.0)
                || (f64::from(w.x) - 1.0..=f64::from(w.x + w.width) + 1.0).contains(&px);
            let on_y = [w.y, w.y + w.height]
                .iter()
                .any(|&e| (py - f64::from(e)).abs() <= 1.0)
                || (f64::from(w.y) - 1.0..=f64::from(w.y + w.height) + 1.0).contains(&py);
            let on_edge = [w.x, w.x + w.width]
                .iter()
                .any(|&e| (px - f64::from(e)).abs() <= 1.0)
                || [w.y, w.y + w.height]
                    .iter()
                    .any(|&e| (py - f64::from(e)).abs() <= 1.0);
            assert!(
                on_x && on_y && on_edge,
                "vertex ({px:.2}, {py:.2}) off window {w:?} in {}",
                scene.id
            );
        }
        let (lon, lat) = r.centroid.expect("centroid");
        let ll = LatLng::new(lat, lon).unwrap();
        assert!(!r.h3.is_empty());
        for (res, cell) in r.h3.iter().enumerate() {
            let cell = CellIndex::try_from(*cell).unwrap();
            assert_eq!(u8::from(cell.resolution()) as usize, res);
            assert_eq!(
                ll.to_cell(cell.resolution()),
                cell,
                "cell at res {res} does not contain the centroid"
            );
        }
    }
}

#[test]
fn every_shared_scene_indexes_with_valid_footprints_and_cells() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let enc = tiny_model();
    let inputs = scenes(&data);
    let report = nadir_indexer::add(dir.path(), &enc, &inputs, &quick(256)).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.added, inputs.len());
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.len(), report.patches);
    let m = index.manifest();
    let epsg: std::collections::BTreeSet<u32> = m.scenes.iter().filter_map(|s| s.epsg).collect();
    for code in [3395, 32616, 32631, 4326] {
        assert!(epsg.contains(&code), "EPSG:{code} scene missing: {epsg:?}");
    }
    assert!(
        m.scenes.iter().any(|s| s.georeferenced && s.epsg.is_none()),
        "the custom Albers scene"
    );
    check_rows(&index);
    // Plain images: a UCM JPEG is one chip with no footprint.
    let ucm = data.join("ucm/images");
    let first = std::fs::read_dir(&ucm)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .unwrap();
    let plain = tempfile::tempdir().unwrap();
    let r = nadir_indexer::add(plain.path(), &enc, &[first], &quick(256)).unwrap();
    assert_eq!((r.added, r.patches), (1, 1));
    let index = Index::open(plain.path()).unwrap();
    assert!(index.records()[0].footprint.is_none() && index.records()[0].h3.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn footprints_and_cells_hold_for_any_tiling(
        scene in 0usize..4,
        patch in 64u32..400,
        stride in prop::sample::select(vec![0.5, 0.75, 1.0]),
        edge in prop::sample::select(vec![Edge::Shift, Edge::Drop, Edge::Pad]),
    ) {
        let Some(data) = shared_data() else { return Ok(()) };
        let files = [
            "scenes/openaerialmap/OSBS_029.tif",
            "scenes/spacenet/sample_geotiff.tif",
            "scenes/spacenet/preproc_tutorial/ms1.tif",
            "scenes/spacenet/sample_geotiff_custom_proj.tif",
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut opts = quick(patch);
        opts.tiling = Some(Tiling { patch, stride, ground_size_m: None, edge, out: 64 });
        let r = nadir_indexer::add(dir.path(), &tiny_model(), &[data.join(files[scene])], &opts).unwrap();
        prop_assert!(r.failed.is_empty(), "{:?}", r.failed);
        check_rows(&Index::open(dir.path()).unwrap());
    }
}

#[test]
fn adding_is_incremental() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a.tif");
    let b = work.path().join("b.tif");
    std::fs::copy(data.join("scenes/openaerialmap/OSBS_029.tif"), &a).unwrap();
    std::fs::copy(data.join("scenes/spacenet/preproc_tutorial/pan1.tif"), &b).unwrap();
    let enc = tiny_model();
    let r1 = nadir_indexer::add(dir.path(), &enc, std::slice::from_ref(&a), &quick(128)).unwrap();
    assert_eq!((r1.added, r1.unchanged), (1, 0));
    let r2 = nadir_indexer::add(dir.path(), &enc, &[a.clone(), b.clone()], &quick(128)).unwrap();
    assert_eq!((r2.added, r2.unchanged, r2.replaced), (1, 1, 0));
    let before = Index::open(dir.path()).unwrap();
    assert_eq!(before.len(), r1.patches + r2.patches);
    let b_ids: Vec<_> = before
        .records()
        .iter()
        .filter(|r| r.scene.starts_with("b-"))
        .map(|r| r.id)
        .collect();
    // a.tif changes: its rows are replaced, b's stay as they were.
    std::fs::copy(
        data.join("scenes/openaerialmap/2018_SJER_3_252000_4107000_image_477.tif"),
        &a,
    )
    .unwrap();
    let r3 = nadir_indexer::add(dir.path(), &enc, &[a, b], &quick(128)).unwrap();
    assert_eq!((r3.added, r3.unchanged, r3.replaced), (0, 1, 1));
    let after = Index::open(dir.path()).unwrap();
    assert_eq!(after.len(), r2.patches + r3.patches, "b's rows plus a's new rows");
    let b_after: Vec<_> = after
        .records()
        .iter()
        .filter(|r| r.scene.starts_with("b-"))
        .map(|r| r.id)
        .collect();
    assert_eq!(b_ids, b_after);
    assert_eq!(after.manifest().scenes.len(), 2);
    check_rows(&after);
    // Other settings or another model are refused on an existing index.
    let e = nadir_indexer::add(dir.path(), &enc, &[], &quick(96))
        .unwrap_err()
        .to_string();
    assert!(e.contains("other patch settings"), "{e}");
}

fn write_tif(
    path: &Path,
    w: usize,
    h: usize,
    bands: usize,
    georef: Option<(&str, [f64; 6])>,
    fill: impl Fn(usize, usize, usize) -> u8,
    nodata: Option<f64>,
) {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = driver.create_with_band_type::<u8, _>(path, w, h, bands).unwrap();
    if let Some((wkt, gt)) = georef {
        ds.set_geo_transform(&gt).unwrap();
        if !wkt.is_empty() {
            ds.set_spatial_ref(&gdal::spatial_ref::SpatialRef::from_epsg(wkt.parse().unwrap()).unwrap())
                .unwrap();
        }
    }
    for b in 1..=bands {
        let mut band = ds.rasterband(b).unwrap();
        if let Some(nd) = nodata {
            band.set_no_data_value(Some(nd)).unwrap();
        }
        let data: Vec<u8> = (0..w * h).map(|i| fill(b, i % w, i / w)).collect();
        let mut buf = Buffer::new((w, h), data);
        band.write((0, 0), (w, h), &mut buf).unwrap();
    }
}

#[test]
fn bad_inputs_fail_one_by_one_and_leave_the_index_unchanged() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let enc = tiny_model();
    let good = data.join("scenes/openaerialmap/OSBS_029.tif");
    let r = nadir_indexer::add(dir.path(), &enc, std::slice::from_ref(&good), &quick(128)).unwrap();
    assert!(r.failed.is_empty());
    let snapshot = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        for sub in ["", "parts"] {
            for e in std::fs::read_dir(d.join(sub)).unwrap().flatten() {
                if e.path().is_file() {
                    files.push((e.path(), std::fs::read(e.path()).unwrap()));
                }
            }
        }
        files.sort();
        files
    };
    let before = snapshot(dir.path());

    let p = |n: &str| bad.path().join(n);
    let bytes = std::fs::read(data.join("scenes/spacenet/sample_geotiff.tif")).unwrap();
    std::fs::write(p("truncated.tif"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(p("empty.tif"), b"").unwrap();
    let utm = [500_000.0, 1.0, 0.0, 4_000_000.0, 0.0, -1.0];
    write_tif(
        &p("no-crs.tif"),
        300,
        300,
        3,
        Some(("", utm)),
        |b, x, y| (b * 40 + x + y) as u8,
        None,
    );
    write_tif(
        &p("all-nodata.tif"),
        300,
        300,
        3,
        Some(("32631", utm)),
        |_, _, _| 0,
        Some(0.0),
    );
    write_tif(
        &p("one-pixel.tif"),
        1,
        1,
        3,
        Some(("32631", utm)),
        |_, _, _| 7,
        None,
    );
    std::fs::create_dir(p("no-images")).unwrap();
    std::fs::write(p("no-images/readme.txt"), b"nothing").unwrap();
    let inputs: Vec<PathBuf> = [
        "truncated.tif",
        "empty.tif",
        "no-crs.tif",
        "all-nodata.tif",
        "one-pixel.tif",
        "no-images",
        "missing.tif",
    ]
    .iter()
    .map(|n| p(n))
    .collect();
    let r = nadir_indexer::add(dir.path(), &enc, &inputs, &quick(128)).unwrap();
    assert_eq!(r.failed.len(), inputs.len(), "{:#?}", r.failed);
    for (path, why) in &r.failed {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            why.contains(name.as_ref()),
            "error for {name} does not name it: {why}"
        );
    }
    let why = |n: &str| {
        r.failed
            .iter()
            .find(|(p, _)| p.ends_with(n))
            .unwrap()
            .1
            .to_lowercase()
    };
    assert!(why("no-crs.tif").contains("crs"), "{}", why("no-crs.tif"));
    assert!(
        why("all-nodata.tif").contains("nodata"),
        "{}",
        why("all-nodata.tif")
    );
    assert!(why("one-pixel.tif").contains("small"), "{}", why("one-pixel.tif"));
    assert!(why("no-images").contains("no images"), "{}", why("no-images"));
    assert!(
        why("missing.tif").contains("no such file"),
        "{}",
        why("missing.tif")
    );
    assert_eq!(snapshot(dir.path()), before, "a failed batch changed the index");

    // A bad band list fails every scene of the run, naming the file and the band.
    let mut opts = quick(128);
    opts.raster = Some(RasterOptions {
        bands: Some(vec![1, 2, 5]),
        ..Default::default()
    });
    let other = tempfile::tempdir().unwrap();
    let r = nadir_indexer::add(other.path(), &enc, std::slice::from_ref(&good), &opts).unwrap();
    assert_eq!(r.failed.len(), 1);
    assert!(
        r.failed[0].1.contains("OSBS_029.tif") && r.failed[0].1.contains('5'),
        "{}",
        r.failed[0].1
    );
    assert!(!Manifest::exists(other.path()), "nothing committed");

    // Good and bad together: the good one is indexed, the batch ends with the failures listed.
    let r = nadir_indexer::add(
        dir.path(),
        &enc,
        &[
            p("empty.tif"),
            data.join("scenes/spacenet/preproc_tutorial/pan2.tif"),
        ],
        &quick(128),
    )
    .unwrap();
    assert_eq!((r.added, r.failed.len()), (1, 1));
}
