//! Export for fine-tuning on an index of a real scene (`data/scenes/spacenet-atlanta-pan.tif`,
//! tiled 128 px): chips are GeoTIFFs on the patch's exact grid with the source pixels, masks
//! rasterised from the SpaceNet building footprints match the reference mask (when
//! `../shared/data` is present), split groups are disjoint, the STAC items carry the label
//! extension, and a non-empty output folder is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gdal::raster::Buffer;
use gdal::Dataset;
use geo::Centroid;
use nadir_indexer::manifest::SceneEntry;
use nadir_indexer::raster::{RasterOptions, Scene, Window};
use nadir_indexer::writer::SceneRows;
use nadir_indexer::{cells, Index, IndexWriter, ModelInfo, PatchId, PatchRecord, Tiling};
use nadir_query::export::{self, ExportRequest, Selection, LABEL_EXTENSION, SPLITS};
use nadir_query::labels::{LabelSource, NewLabel};
use nadir_query::Engine;
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const TILE: u32 = 128;

fn scene_path() -> PathBuf {
    Path::new(ROOT).join("data/scenes/spacenet-atlanta-pan.tif")
}

fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(ROOT).join("../shared/data").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipping the part that needs {}: ../shared/data is absent",
            p.display()
        );
        None
    }
}

/// An index of the SpaceNet scene in 128 px tiles (synthetic embeddings).
fn build(dir: &Path) -> Engine {
    build_from(dir, scene_path())
}

/// The same index, of the scene file at `path`.
fn build_from(dir: &Path, path: PathBuf) -> Engine {
    let scene = Scene::open(&path, &RasterOptions::default()).unwrap();
    let georef = scene
        .georef()
        .expect("the SpaceNet scene is georeferenced")
        .clone();
    let (w, h) = scene.size();
    let gsd = georef.pixel_size_m(w, h).unwrap();
    let res = cells::resolution_for_area((gsd * f64::from(TILE)).powi(2));
    let model = ModelInfo {
        name: "synthetic".into(),
        sha256: "0".repeat(64),
        dim: 4,
        text: false,
        source: None,
    };
    let mut writer = IndexWriter::open(dir, model, Tiling::for_input(224), RasterOptions::default()).unwrap();
    let id = "spacenet".to_string();
    let (mut rows, mut vectors) = (Vec::new(), Vec::new());
    for ty in 0..h / TILE {
        for tx in 0..w / TILE {
            let window = Window::new(tx * TILE, ty * TILE, TILE, TILE);
            let fp = georef.footprint(&window).unwrap();
            let c = fp.centroid().unwrap();
            rows.push(PatchRecord {
                id: PatchId::new(&id, &window),
                scene: id.clone(),
                window,
                footprint: Some(fp),
                centroid: Some((c.x(), c.y())),
                h3: cells::cells_for(c.x(), c.y(), res).unwrap(),
                acquired_ms: None,
                gsd_m: Some(gsd),
                tags: Vec::new(),
                labels: Vec::new(),
                thumb: (0, 0),
            });
            // Two kinds of patch (even and odd columns), for the probe of `Selection::Probable`.
            vectors.extend(if tx % 2 == 0 {
                [1.0f32, 0.0, 0.0, 0.0]
            } else {
                [0.0f32, 1.0, 0.0, 0.0]
            });
        }
    }
    let entry = SceneEntry {
        id: id.clone(),
        path: path.clone(),
        sha256: "1".repeat(64),
        part: String::new(),
        patches: 0,
        skipped: 0,
        width: w,
        height: h,
        epsg: georef.epsg(),
        georeferenced: true,
        pixel_size_m: Some(gsd),
        tags: Vec::new(),
    };
    writer
        .add_scene(SceneRows {
            entry,
            thumbnails: vec![Vec::new(); rows.len()],
            rows,
            vectors,
        })
        .unwrap();
    writer.finish().unwrap();
    Engine::new(Index::open(dir).unwrap(), None).unwrap()
}

fn read_u8(ds: &Dataset, band: usize, win: (isize, isize), size: (usize, usize)) -> Vec<u8> {
    let b: Buffer<u8> = ds
        .rasterband(band)
        .unwrap()
        .read_as(win, size, size, None)
        .unwrap();
    b.into_shape_and_vec().1
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn chips_masks_split_and_stac() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = build(&tmp.path().join("index"));
    let index = engine.index();
    let ids: Vec<String> = index.records().iter().map(|r| r.id.to_string()).collect();
    let out = tmp.path().join("export");
    let mut req = ExportRequest::new(out.clone(), Selection::Patches(ids.clone()));
    req.group_levels = 1;
    let labels = shared("scenes/spacenet/geotiff_labels.geojson");
    if let Some(l) = &labels {
        req.masks = Some(json(l));
        req.mask_class = "building".into();
    }
    let report = export::export(&engine, &req).unwrap();
    assert_eq!(report.chips, ids.len());
    assert_eq!(report.splits.iter().sum::<usize>(), ids.len());
    assert!(report.groups > 1, "{report:?}");

    let src = Dataset::open(scene_path()).unwrap();
    let sgt = src.geo_transform().unwrap();
    let reference =
        shared("scenes/spacenet/sample_fp_mask_from_geojson.tif").map(|p| Dataset::open(p).unwrap());
    let (mut inter, mut union) = (0usize, 0usize);
    let mut group_split: HashMap<String, String> = HashMap::new();
    let catalog = json(&out.join("catalog.json"));
    assert_eq!(catalog["type"], "Catalog");
    assert_eq!(catalog["stac_version"], "1.1.0");
    assert!(catalog["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rel"] == "child" && l["href"] == "./collection.json"));
    let collection = json(&out.join("collection.json"));
    assert_eq!(collection["type"], "Collection");
    assert_eq!(collection["license"], "other");
    let item_links = collection["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"] == "item")
        .count();
    assert_eq!(item_links, ids.len());
    let extent = collection["extent"]["spatial"]["bbox"][0].as_array().unwrap();
    let src_ds = Dataset::open(scene_path()).unwrap();
    let epsg = src_ds.spatial_ref().unwrap().auth_code().unwrap();
    for r in index.records() {
        let id = r.id.to_string();
        let item = json(&out.join(format!("items/{id}.json")));
        assert_eq!(item["type"], "Feature");
        assert_eq!(item["stac_extensions"][0], LABEL_EXTENSION);
        let p = &item["properties"];
        assert!(p["datetime"].as_str().unwrap().ends_with('Z'));
        for f in [
            "label:description",
            "label:type",
            "label:properties",
            "label:tasks",
        ] {
            assert!(p.get(f).is_some(), "{f} missing in {item}");
        }
        assert_eq!(item["bbox"].as_array().unwrap().len(), 4);
        for (i, v) in item["bbox"].as_array().unwrap().iter().enumerate() {
            let (v, e) = (v.as_f64().unwrap(), extent[i].as_f64().unwrap());
            assert!(
                if i < 2 { e <= v } else { e >= v },
                "the collection's extent holds every item"
            );
        }
        assert_eq!(item["collection"], "nadir-export");
        // The projection extension: the chip's grid in the scene's CRS.
        assert_eq!(p["proj:code"], format!("EPSG:{epsg}"));
        assert_eq!(p["proj:shape"], serde_json::json!([TILE, TILE]));
        let t: Vec<f64> = serde_json::from_value(p["proj:transform"].clone()).unwrap();
        let (x, y) = (f64::from(r.window.x), f64::from(r.window.y));
        let sgt0 = src_ds.geo_transform().unwrap();
        assert!(
            (t[2] - (sgt0[0] + x * sgt0[1])).abs() < 1e-6 && (t[5] - (sgt0[3] + y * sgt0[5])).abs() < 1e-6
        );
        assert!((t[0] - sgt0[1]).abs() < 1e-12 && (t[4] - sgt0[5]).abs() < 1e-12);
        let pb: Vec<f64> = serde_json::from_value(p["proj:bbox"].clone()).unwrap();
        assert!(
            (pb[0] - t[2]).abs() < 1e-6 && (pb[3] - t[5]).abs() < 1e-6,
            "{pb:?}"
        );
        assert!(p["gsd"].as_f64().unwrap() > 0.0);
        assert_eq!(
            item["assets"]["image"]["bands"].as_array().unwrap().len(),
            src_ds.raster_count()
        );
        let source = item["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "source")
            .unwrap();
        assert!(source["href"]
            .as_str()
            .unwrap()
            .ends_with("spacenet-atlanta-pan.tif"));
        let split = p["nadir:split"].as_str().unwrap().to_string();
        assert!(SPLITS.contains(&split.as_str()));
        let group = p["nadir:group"].as_str().unwrap().to_string();
        assert_eq!(
            group_split.entry(group).or_insert(split.clone()),
            &split,
            "a group in two splits"
        );

        // The chip: the patch's exact grid, the scene's CRS, the source pixels.
        let chip = Dataset::open(out.join(format!("images/{split}/{id}.tif"))).unwrap();
        assert_eq!(chip.raster_size(), (TILE as usize, TILE as usize));
        assert_eq!(chip.raster_count(), src.raster_count());
        let gt = chip.geo_transform().unwrap();
        let (x, y) = (f64::from(r.window.x), f64::from(r.window.y));
        let want = [sgt[0] + x * sgt[1], sgt[1], 0.0, sgt[3] + y * sgt[5], 0.0, sgt[5]];
        for (a, b) in gt.iter().zip(want) {
            assert!((a - b).abs() < 1e-9, "{gt:?} vs {want:?}");
        }
        assert_eq!(
            chip.spatial_ref().unwrap().auth_code().ok(),
            src.spatial_ref().unwrap().auth_code().ok()
        );
        let win = (r.window.x as isize, r.window.y as isize);
        let size = (TILE as usize, TILE as usize);
        let chip_px: Buffer<f64> = chip.rasterband(1).unwrap().read_band_as().unwrap();
        let src_px: Buffer<f64> = src.rasterband(1).unwrap().read_as(win, size, size, None).unwrap();
        assert_eq!(
            chip_px.data(),
            src_px.data(),
            "chip {id} differs from its source window"
        );
        assert_eq!(
            chip.rasterband(1).unwrap().band_type(),
            src.rasterband(1).unwrap().band_type()
        );

        if let Some(reference) = &reference {
            assert_eq!(p["label:type"], "raster");
            assert_eq!(item["assets"]["labels"]["roles"][0], "labels");
            assert_eq!(
                item["assets"]["labels"]["href"],
                format!("../masks/{split}/{id}.tif")
            );
            let mask_ds = Dataset::open(out.join(format!("masks/{split}/{id}.tif"))).unwrap();
            assert_eq!(mask_ds.geo_transform().unwrap(), gt);
            let mask = read_u8(&mask_ds, 1, (0, 0), size);
            assert!(mask.iter().all(|&v| v <= 1));
            let want = read_u8(reference, 1, win, size);
            let (mut i, mut u) = (0, 0);
            for (m, w) in mask.iter().zip(&want) {
                let (m, w) = (*m > 0, *w > 0);
                i += usize::from(m && w);
                u += usize::from(m || w);
            }
            if u > 500 {
                let iou = i as f64 / u as f64;
                assert!(iou > 0.9, "chip {id}: IoU {iou:.3} with the reference mask");
            }
            inter += i;
            union += u;
        }
    }
    if reference.is_some() {
        let iou = inter as f64 / union as f64;
        eprintln!("mask IoU over all chips: {iou:.4} ({union} px in the union)");
        assert!(union > 1000 && iou > 0.95, "IoU {iou}");
    }
    // Deterministic: the same request gives the same splits.
    let out2 = tmp.path().join("export2");
    let mut again = req.clone();
    again.out_dir = out2.clone();
    let r2 = export::export(&engine, &again).unwrap();
    assert_eq!(r2.splits, report.splits);

    // A non-empty output folder is refused.
    let err = export::export(&engine, &req).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    // Bad ratios are refused.
    let mut bad = ExportRequest::new(tmp.path().join("bad"), Selection::Patches(ids[..1].to_vec()));
    bad.split = [0.5, 0.5, 0.5];
    assert!(export::export(&engine, &bad).is_err());
}

#[test]
fn an_export_whose_scene_file_is_gone_says_which_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("spacenet.tif");
    std::fs::copy(scene_path(), &copy).unwrap();
    let engine = build_from(&tmp.path().join("index"), copy.clone());
    std::fs::remove_file(&copy).unwrap();
    let ids = vec![engine.index().records()[0].id.to_string()];
    let out = tmp.path().join("out");
    let e = export::export(&engine, &ExportRequest::new(out.clone(), Selection::Patches(ids))).unwrap_err();
    assert!(matches!(e, nadir_query::Error::Conflict(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("spacenet") && msg.contains("nadir index relocate"),
        "{msg}"
    );
    assert!(!out.join("images").exists() && !out.join("catalog.json").exists());
}

#[test]
fn labelled_patches_export_with_their_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = build(&tmp.path().join("index"));
    let store = engine.labels().unwrap();
    let records = engine.index().records();
    let labels: Vec<NewLabel> = [(0, true), (3, false), (7, true)]
        .iter()
        .map(|&(i, positive)| NewLabel {
            patch_id: records[i].id.to_string(),
            class: "roof".into(),
            positive,
            source: LabelSource::Search,
            query: None,
        })
        .collect();
    store.add_many(&labels).unwrap();
    let gone = NewLabel {
        patch_id: "0123456789abcdef".into(),
        ..labels[0].clone()
    };
    store.add(&gone).unwrap();
    let out = tmp.path().join("out");
    let req = ExportRequest::new(
        out.clone(),
        Selection::Labelled {
            class: Some("roof".into()),
        },
    );
    let report = export::export(&engine, &req).unwrap();
    assert_eq!((report.chips, report.masks, report.skipped), (3, 0, 1));
    let csv = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "patch_id,split,class,positive,scene");
    assert_eq!(lines.len(), 4);
    assert!(lines
        .iter()
        .any(|l| l.starts_with(&records[3].id.to_string()) && l.contains(",roof,false,")));
    let item = json(&out.join(format!("items/{}.json", records[0].id)));
    assert_eq!(item["properties"]["label:type"], "vector");
    assert_eq!(item["properties"]["label:tasks"][0], "classification");
    assert_eq!(item["properties"]["label:classes"][0]["classes"][0], "roof");
    assert_eq!(item["assets"]["labels"]["type"], "application/geo+json");
    let fc = json(&out.join(format!("labels/{}.geojson", records[0].id)));
    assert_eq!(fc["features"][0]["properties"]["class"], "roof");
    assert_eq!(fc["features"][0]["properties"]["positive"], true);
    assert_eq!(fc["features"][0]["geometry"]["type"], "Polygon");

    let none = ExportRequest::new(
        tmp.path().join("none"),
        Selection::Labelled {
            class: Some("lake".into()),
        },
    );
    assert!(matches!(
        export::export(&engine, &none),
        Err(nadir_query::Error::NotFound(_))
    ));
}

#[test]
fn probable_patches_export_as_the_class() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = build(&tmp.path().join("index"));
    let store = engine.labels().unwrap();
    let records = engine.index().records();
    let even: Vec<usize> = (0..records.len())
        .filter(|&i| (records[i].window.x / TILE).is_multiple_of(2))
        .collect();
    let odd = (0..records.len()).find(|i| !even.contains(i)).unwrap();
    let labels: Vec<NewLabel> = [(even[0], true), (odd, false)]
        .iter()
        .map(|&(i, positive)| NewLabel {
            patch_id: records[i].id.to_string(),
            class: "pool".into(),
            positive,
            source: LabelSource::Search,
            query: None,
        })
        .collect();
    store.add_many(&labels).unwrap();
    let out = tmp.path().join("out");
    let req = ExportRequest::new(
        out.clone(),
        Selection::Probable {
            class: "pool".into(),
            min_probability: 0.5,
        },
    );
    let report = export::export(&engine, &req).unwrap();
    // Every even-column patch (the labelled one included), as the class.
    assert_eq!(report.chips, even.len());
    let csv = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    assert_eq!(csv.lines().count(), even.len() + 1);
    assert!(csv.lines().skip(1).all(|l| l.contains(",pool,true,")), "{csv}");
    let bad = ExportRequest::new(
        tmp.path().join("bad"),
        Selection::Probable {
            class: "pool".into(),
            min_probability: 1.5,
        },
    );
    assert!(matches!(
        export::export(&engine, &bad),
        Err(nadir_query::Error::BadRequest(_))
    ));
}

/// `POST /api/export` with `body` through `app`: the status and the JSON answer (null when the
/// body is not JSON).
async fn post_export(app: axum::Router, body: Value) -> (axum::http::StatusCode, Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::post("/api/export")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// An export that runs past the time limit stops (it does not keep writing for an answer nobody
/// reads) and removes what it wrote, so the same name can be exported again at once.
#[test]
fn a_timed_out_export_stops_and_leaves_its_folder_reusable() {
    use axum::http::StatusCode;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let engine = std::sync::Arc::new(build(&dir));
    let ids: Vec<String> = engine
        .index()
        .records()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let post = |timeout: std::time::Duration| {
        let config = nadir_query::service::ServiceConfig {
            query_timeout: timeout,
            ..Default::default()
        };
        let app = nadir_query::service::router(engine.clone(), config);
        rt.block_on(post_export(
            app,
            serde_json::json!({"name": "set", "patches": ids}),
        ))
        .0
    };
    let out = dir.join("exports/set");
    assert_eq!(
        post(std::time::Duration::from_millis(1)),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The cancelled work notices at its next chip, removes what it wrote and lets go.
    let start = std::time::Instant::now();
    while out.join(".nadir-export-in-progress").exists() {
        assert!(
            start.elapsed().as_secs() < 60,
            "the cancelled export kept running"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a cancelled export left {left:?}");
    assert_eq!(
        post(std::time::Duration::from_secs(60)),
        StatusCode::OK,
        "the retry is not refused"
    );
    let items = std::fs::read_dir(out.join("items")).unwrap().count();
    assert_eq!(items, ids.len());
}

#[test]
fn the_endpoint_writes_only_under_exports() {
    use axum::http::StatusCode;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let engine = std::sync::Arc::new(build(&dir));
    let ids: Vec<String> = engine.index().records()[..2]
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    let app = nadir_query::service::router(engine, Default::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let post = |body: Value| rt.block_on(post_export(app.clone(), body));
    let (status, body) = post(serde_json::json!({"name": "set-1", "patches": ids}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["chips"], 2);
    assert!(dir.join("exports/set-1/catalog.json").exists());
    // No server path in the answer or in what the export wrote.
    assert_eq!(body["out_dir"], "exports/set-1", "{body}");
    let catalog = std::fs::read_to_string(dir.join("exports/set-1/catalog.json")).unwrap();
    assert!(!catalog.contains(tmp.path().to_str().unwrap()), "{catalog}");
    assert!(
        !dir.join("exports/set-1/.nadir-export-in-progress").exists(),
        "the claim is released"
    );
    for bad in ["../escape", "/abs", "", "-x", "a/b", "."] {
        let (status, body) = post(serde_json::json!({"name": bad, "patches": ids}));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
    }
    assert!(!tmp.path().join("escape").exists());
    // The same name again: the folder is not empty (said without the server's path).
    let (status, body) = post(serde_json::json!({"name": "set-1", "patches": ids}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "exports/set-1: the output folder is not empty");
    // No labels: nothing to export.
    let (status, _) = post(serde_json::json!({"name": "set-2"}));
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The export is a training set for `nadir-segment`: fine-tune on it, predict the whole scene,
/// and the map finds the buildings; raster and polygons agree.
#[test]
fn export_trains_a_segmentation_model_that_maps_the_buildings() {
    use nadir_segment::{EncoderSpec, FinetuneOptions, PredictOptions, Segmenter};
    let (Some(labels), Some(reference)) = (
        shared("scenes/spacenet/geotiff_labels.geojson"),
        shared("scenes/spacenet/sample_fp_mask_from_geojson.tif"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let engine = build(&tmp.path().join("index"));
    let ids: Vec<String> = engine
        .index()
        .records()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    let out = tmp.path().join("export");
    let mut req = ExportRequest::new(out.clone(), Selection::Patches(ids));
    req.group_levels = 1;
    req.masks = Some(json(&labels));
    req.mask_class = "building".into();
    export::export(&engine, &req).unwrap();

    let model_dir = tmp.path().join("model");
    let mut opts = FinetuneOptions::new(out.clone(), model_dir.clone());
    // The pretrained encoder when its weights are here (CI fetches them), else the random one.
    if nadir_clip::lite::load_image_tower(&nadir_clip::lite::models_dir(), &candle_core::Device::Cpu).is_err()
    {
        eprintln!("EfficientNet-Lite0 weights absent: training on the random encoder");
        opts.encoder = EncoderSpec::RandomLite0 { seed: 1 };
    }
    opts.chip = TILE;
    opts.train.max_epochs = 25;
    let report = nadir_segment::finetune(&opts).unwrap();
    assert!(report.train_chips > 0 && report.val_chips > 0, "{report:?}");
    let model = Segmenter::load(&model_dir).unwrap();
    let names: Vec<&str> = model.config().classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["background", "building"],
        "classes from the export's classes.json"
    );

    let map = tmp.path().join("map.tif");
    let polygons = tmp.path().join("map.geojson");
    let popts = PredictOptions {
        geojson: Some(polygons.clone()),
        min_pixels: 1,
        ..PredictOptions::default()
    };
    let r = nadir_segment::predict_scene(&model, &scene_path(), &map, &popts).unwrap();
    let ds = Dataset::open(&map).unwrap();
    let src = Dataset::open(scene_path()).unwrap();
    assert_eq!(ds.raster_size(), src.raster_size());
    assert_eq!(ds.geo_transform().unwrap(), src.geo_transform().unwrap());
    assert_eq!(
        ds.spatial_ref().unwrap().auth_code().ok(),
        src.spatial_ref().unwrap().auth_code().ok()
    );
    let (w, h) = ds.raster_size();
    let pred = read_u8(&ds, 1, (0, 0), (w, h));
    assert!(pred.iter().all(|&v| v <= 1), "every pixel predicted, as 0 or 1");
    let truth = read_u8(&Dataset::open(reference).unwrap(), 1, (0, 0), (w, h));
    let inter = pred.iter().zip(&truth).filter(|(&p, &t)| p == 1 && t > 0).count();
    let union = pred.iter().zip(&truth).filter(|(&p, &t)| p == 1 || t > 0).count();
    let iou = inter as f64 / union as f64;
    eprintln!("building IoU over the scene: {iou:.3}");
    // Chance (every pixel a building) is the building share, about 0.04; all background is 0.
    assert!(iou > 0.15, "building IoU {iou:.3} over the scene");

    // The polygons: WGS84, inside the scene, and their pixels are the raster's.
    let fc = json(&polygons);
    let feats = fc["features"].as_array().unwrap();
    assert_eq!(Some(feats.len()), r.polygons);
    let georef = Scene::open(&scene_path(), &RasterOptions::default())
        .unwrap()
        .georef()
        .unwrap()
        .clone();
    let (fw, fh) = (w as f64, h as f64);
    let corners = georef
        .pixels_to_lonlat(&[(0.0, 0.0), (fw, 0.0), (fw, fh), (0.0, fh)])
        .unwrap();
    let bound = |f: fn(&(f64, f64)) -> f64| {
        let v: Vec<f64> = corners.iter().map(f).collect();
        (
            v.iter().copied().fold(f64::MAX, f64::min),
            v.iter().copied().fold(f64::MIN, f64::max),
        )
    };
    let ((lon0, lon1), (lat0, lat1)) = (bound(|c| c.0), bound(|c| c.1));
    let mut pixels = [0u64; 2];
    for f in feats {
        pixels[f["properties"]["class"].as_u64().unwrap() as usize] +=
            f["properties"]["pixels"].as_u64().unwrap();
        for ring in f["geometry"]["coordinates"].as_array().unwrap() {
            for p in ring.as_array().unwrap() {
                let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
                assert!(
                    (lon0 - 1e-7..=lon1 + 1e-7).contains(&x) && (lat0 - 1e-7..=lat1 + 1e-7).contains(&y),
                    "{x},{y}"
                );
            }
        }
    }
    let buildings = pred.iter().filter(|&&v| v == 1).count() as u64;
    assert_eq!(pixels, [pred.len() as u64 - buildings, buildings]);
}

/// Two exports into one folder at once (a double click): exactly one writes it, the other is
/// refused (409 while the first runs, 400 once it has written); the folder holds what the
/// catalog lists.
#[test]
fn racing_exports_into_one_folder_do_not_mix() {
    use axum::http::StatusCode;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let engine = std::sync::Arc::new(build(&dir));
    let ids: Vec<String> = engine
        .index()
        .records()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    let app = nadir_query::service::router(engine, Default::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..3 {
        let name = format!("race-{round}");
        let statuses: Vec<StatusCode> = rt.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let body = serde_json::json!({"name": name, "patches": ids});
                    tokio::spawn(post_export(app.clone(), body))
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap().0);
            }
            out
        });
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 1, "{statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|s| [StatusCode::OK, StatusCode::CONFLICT, StatusCode::BAD_REQUEST].contains(s)),
            "{statuses:?}"
        );
        let out = dir.join("exports").join(&name);
        let collection = json(&out.join("collection.json"));
        let items = collection["links"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["rel"] == "item")
            .count();
        let chips: usize = SPLITS
            .iter()
            .map(|s| std::fs::read_dir(out.join("images").join(s)).map_or(0, |d| d.count()))
            .sum();
        assert_eq!((items, chips), (ids.len(), ids.len()));
    }
}
