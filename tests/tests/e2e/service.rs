//! The real router (`tower::ServiceExt::oneshot`) on an index of the demo scenes in `data/`,
//! built once with the default model: search, similar, patches, thumbnails, GeoJSON, OpenAPI,
//! the 4xx answers, concurrent queries, and the model check of issue 3.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{ensure, Result};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use nadir_indexer::{Index, IndexWriter, ModelInfo, Tiling};
use nadir_query::service::{router, ServiceConfig};
use nadir_query::Engine;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::{call, json_call, lite_towers_present, root, rt};

struct Demo {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
}

/// The demo index, built once per test run (None when the default model's towers are absent).
fn demo() -> Option<&'static Demo> {
    static DEMO: OnceLock<Option<Demo>> = OnceLock::new();
    DEMO.get_or_init(|| {
        if !lite_towers_present("service tests") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let enc = nadir_clip::registry::load_encoder(&Default::default()).unwrap();
        let opts = nadir_indexer::AddOptions {
            progress: false,
            ..Default::default()
        };
        let report =
            nadir_indexer::add(dir.path(), enc.as_ref(), &[root().join("data/scenes")], &opts).unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let engine = Engine::new(Index::open(dir.path()).unwrap(), Some(enc)).unwrap();
        Some(Demo {
            _dir: dir,
            engine: Arc::new(engine),
        })
    })
    .as_ref()
}

fn app(engine: Arc<Engine>) -> Router {
    router(engine, ServiceConfig::default())
}

#[test]
fn search_similar_patch_and_thumbnail() -> Result<()> {
    let Some(demo) = demo() else { return Ok(()) };
    rt().block_on(async {
        let app = app(demo.engine.clone());
        let (s, v) = json_call(app.clone(), "GET", "/health", None).await;
        ensure!(s == StatusCode::OK && v["status"] == "ok");

        let (s, info) = json_call(app.clone(), "GET", "/api/info", None).await;
        ensure!(s == StatusCode::OK);
        insta::assert_json_snapshot!("info", info);

        // Text within a bbox around the Manila scene: every hit inside, best first.
        let bbox = [120.980, 14.594, 120.984, 14.598];
        let req = json!({"text": "a river with a bridge", "k": 8, "geofilter": {"bbox": bbox}});
        let (s, v) = json_call(app.clone(), "POST", "/api/search", Some(req.clone())).await;
        ensure!(s == StatusCode::OK, "{v}");
        let hits = v["hits"].as_array().unwrap();
        ensure!(!hits.is_empty() && hits.len() <= 8);
        let mut last = f64::MAX;
        for h in hits {
            let c = &h["centroid"];
            let (lon, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
            ensure!(lon >= bbox[0] && lon <= bbox[2] && lat >= bbox[1] && lat <= bbox[3], "{h}");
            let score = h["score"].as_f64().unwrap();
            ensure!(score <= last);
            last = score;
            ensure!(h["footprint"]["type"] == "Polygon");
        }
        ensure!(v["candidates"].as_u64().unwrap() < v["total"].as_u64().unwrap());

        // The same as GeoJSON.
        let (s, fc) = json_call(app.clone(), "POST", "/api/search/geojson", Some(req)).await;
        ensure!(s == StatusCode::OK && fc["type"] == "FeatureCollection");
        ensure!(fc["features"].as_array().unwrap().len() == hits.len());
        ensure!(fc["features"][0]["geometry"]["type"] == "Polygon");

        // Similar to the first hit: it is excluded, its neighbours come back.
        let id = hits[0]["patch_id"].as_str().unwrap().to_string();
        let (s, v) = json_call(app.clone(), "GET", &format!("/api/similar?patch={id}&k=5"), None).await;
        ensure!(s == StatusCode::OK, "{v}");
        let sims = v["hits"].as_array().unwrap();
        ensure!(sims.len() == 5 && sims.iter().all(|h| h["patch_id"] != id.as_str()));

        // Similar to a location: the patch containing it is the example.
        let c = &hits[0]["centroid"];
        let uri = format!("/api/similar?lon={}&lat={}&k=3", c[0], c[1]);
        let (s, v) = json_call(app.clone(), "GET", &uri, None).await;
        ensure!(s == StatusCode::OK && v["hits"].as_array().unwrap().len() == 3, "{v}");

        let (s, mut patch) = json_call(app.clone(), "GET", &format!("/api/patches/{id}"), None).await;
        ensure!(s == StatusCode::OK && patch["patch_id"] == id.as_str());
        // Up to 3 zero-shot labels, only those that clear the calibrated margin.
        ensure!(patch["labels"].as_array().unwrap().len() <= 3, "{patch}");
        patch["labels"] = json!("[up to 3 zero-shot labels]");
        insta::assert_json_snapshot!("patch", patch, { ".patch_id" => "[id]", ".scene" => "[scene id: name and path hash]", ".thumbnail_url" => "[url]", ".window" => "[window]", ".centroid" => "[centroid]", ".footprint" => "[footprint]", ".h3" => "[cell]" });

        let (s, jpeg) = call(app.clone(), "GET", &format!("/api/patches/{id}/thumbnail.jpg"), None).await;
        ensure!(s == StatusCode::OK && jpeg.starts_with(&[0xFF, 0xD8]));

        // Positives and negatives combine; an uploaded image works as an example.
        let png = std::fs::read(root().join("clip/tests/fixtures/images").read_dir()?.flatten().next().unwrap().path())?;
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
        let req = json!({"positives": [{"image_base64": b64}, {"patch": id}], "negatives": [{"patch": sims[0]["patch_id"]}], "k": 4});
        let (s, v) = json_call(app.clone(), "POST", "/api/search", Some(req)).await;
        ensure!(s == StatusCode::OK && v["hits"].as_array().unwrap().len() == 4, "{v}");
        Ok(())
    })
}

#[test]
fn bad_requests_get_4xx_with_a_message() -> Result<()> {
    let Some(demo) = demo() else { return Ok(()) };
    rt().block_on(async {
        let app = app(demo.engine.clone());
        let cases: Vec<(&str, &str, &str, Option<Value>)> = vec![
            ("invalid-polygon", "POST", "/api/search", Some(json!({"text": "x", "geofilter": {"geojson": {"type": "Polygon", "coordinates": [[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}}))),
            ("unknown-patch", "GET", "/api/patches/00000000000000ff", None),
            ("bad-patch-id", "GET", "/api/patches/xyz", None),
            ("k-too-large", "POST", "/api/search", Some(json!({"text": "x", "k": 100000}))),
            ("no-query", "POST", "/api/search", Some(json!({"k": 5}))),
            ("unknown-field", "POST", "/api/search", Some(json!({"text": "x", "colour": "red"}))),
            ("outside", "GET", "/api/similar?lon=0&lat=0", None),
            ("bad-query-param", "GET", "/api/similar?lon=abc&lat=1", None),
            ("no-route", "GET", "/api/nothing", None),
        ];
        for (name, method, uri, body) in cases {
            let (s, v) = json_call(app.clone(), method, uri, body).await;
            ensure!(s.is_client_error(), "{name}: {s} {v}");
            insta::assert_json_snapshot!(format!("error-{name}"), json!({"status": s.as_u16(), "body": v}));
        }
        // Malformed JSON and an oversized body.
        let req = Request::post("/api/search").header("content-type", "application/json").body(Body::from("{\"text\": ")).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        ensure!(resp.status() == StatusCode::BAD_REQUEST, "{}", resp.status());
        let big = format!("{{\"text\": \"{}\"}}", "a".repeat(nadir_query::service::MAX_BODY_BYTES + 10));
        let req = Request::post("/api/search").header("content-type", "application/json").body(Body::from(big)).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        ensure!(resp.status() == StatusCode::PAYLOAD_TOO_LARGE, "{}", resp.status());
        Ok(())
    })
}

#[test]
fn concurrent_queries_agree() -> Result<()> {
    let Some(demo) = demo() else { return Ok(()) };
    rt().block_on(async {
        let app = app(demo.engine.clone());
        let req = json!({"text": "trees", "k": 5});
        let (_, first) = json_call(app.clone(), "POST", "/api/search", Some(req.clone())).await;
        let tasks: Vec<_> = (0..16)
            .map(|_| tokio::spawn(json_call(app.clone(), "POST", "/api/search", Some(req.clone()))))
            .collect();
        for t in tasks {
            let (s, v) = t.await?;
            ensure!(s == StatusCode::OK && v["hits"] == first["hits"]);
        }
        Ok(())
    })
}

#[test]
fn openapi_lists_every_route() -> Result<()> {
    let doc = serde_json::to_value(nadir_query::service::openapi())?;
    for p in [
        "/health",
        "/api/info",
        "/api/search",
        "/api/search/geojson",
        "/api/similar",
        "/api/patches/{id}",
        "/api/patches/{id}/thumbnail.jpg",
        "/api/patch_at",
    ] {
        ensure!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    ensure!(doc["components"]["schemas"].get("SearchRequest").is_some());
    Ok(())
}

/// Every route the page calls (the `/api/...` strings in `web/ui/src`) and every route the
/// routers declare (the `.route(...)` literals in `query/src` and `web/src`) is in the served
/// OpenAPI document, so the document cannot drift from the code.
#[test]
fn every_route_the_page_calls_is_documented() -> Result<()> {
    let doc = serde_json::to_value(nadir_web::openapi())?;
    let paths: Vec<Vec<String>> = doc["paths"]
        .as_object()
        .map(|p| {
            p.keys()
                .map(|k| k.split('/').map(str::to_string).collect())
                .collect()
        })
        .unwrap_or_default();
    let mut called = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(root().join("web/ui/src"))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "js") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for (i, _) in text.match_indices("/api/") {
            // Only string literals (or `${location.origin}/api/...`), not comments.
            if !text[..i].ends_with(['\'', '"', '`', '}']) {
                continue;
            }
            // Up to the end of the string literal or the query string; `${...}` is one segment.
            let rest = &text[i..];
            let (mut out, mut depth) = (String::new(), 0);
            for c in rest.chars() {
                match c {
                    '{' if out.ends_with('$') => {
                        out.pop();
                        out.push('*');
                        depth += 1;
                    }
                    '}' if depth > 0 => depth -= 1,
                    _ if depth > 0 => {}
                    '\'' | '"' | '`' | '?' => break,
                    c => out.push(c),
                }
            }
            called.insert(out);
        }
    }
    ensure!(called.len() > 15, "found only {called:?}");
    // And every route the routers declare (the `.route("...")` literals of the service crates).
    let mut declared = Vec::new();
    for dir in ["query/src", "web/src"] {
        for entry in std::fs::read_dir(root().join(dir))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            for (i, _) in text.match_indices(".route(\"") {
                let rest = &text[i + 8..];
                if let Some(end) = rest.find('"') {
                    declared.push(rest[..end].to_string());
                }
            }
        }
    }
    ensure!(declared.len() > 25, "found only {declared:?}");
    for route in declared {
        if !(route.starts_with("/api/") || route == "/health" || route == "/openapi.json")
            || route == "/api/docs"
        {
            continue;
        }
        let segs: Vec<&str> = route.split('/').collect();
        let documented = paths.iter().any(|p| {
            p.len() == segs.len()
                && p.iter()
                    .zip(&segs)
                    .all(|(d, s)| d == s || (d.starts_with('{') && s.starts_with('{')))
        });
        ensure!(
            documented,
            "the router declares {route} but /openapi.json does not document it"
        );
    }
    for route in &called {
        let segs: Vec<&str> = route.split('/').collect();
        let documented = paths.iter().any(|p| {
            p.len() == segs.len()
                && p.iter().zip(&segs).all(|(d, s)| {
                    d == s
                        || *s == "*"
                        || (d.starts_with('{') && d.ends_with('}'))
                        || (d.contains('{') && s.contains('{'))
                })
        });
        ensure!(
            documented,
            "{route} is called by the page but not in /openapi.json"
        );
    }
    Ok(())
}

/// An index of imported vectors (no text tower) answers text queries with a clear 400.
#[test]
fn text_on_a_model_without_text_tower_is_a_400() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let model = ModelInfo {
        name: "clay-v0".into(),
        sha256: "0".repeat(64),
        dim: 4,
        text: false,
        source: None,
    };
    let mut w = IndexWriter::open(dir.path(), model, Tiling::for_input(256), Default::default())?;
    let window = nadir_indexer::raster::Window {
        x: 0,
        y: 0,
        width: 256,
        height: 256,
    };
    let rows = vec![nadir_indexer::PatchRecord {
        id: nadir_indexer::PatchId::new("s", &window),
        scene: "s".into(),
        window,
        footprint: None,
        centroid: None,
        h3: vec![],
        acquired_ms: None,
        gsd_m: None,
        tags: vec![],
        labels: vec![],
        thumb: (0, 0),
    }];
    let entry = nadir_indexer::manifest::SceneEntry {
        id: "s".into(),
        path: Path::new("/nowhere/s.tif").into(),
        sha256: "1".repeat(64),
        part: String::new(),
        patches: 1,
        skipped: 0,
        width: 256,
        height: 256,
        epsg: None,
        georeferenced: false,
        pixel_size_m: None,
        tags: vec![],
    };
    w.add_scene(nadir_indexer::writer::SceneRows {
        entry,
        rows,
        vectors: vec![0.5; 4],
        thumbnails: vec![vec![1, 2, 3]],
    })?;
    w.finish()?;
    let engine = Arc::new(Engine::open(dir.path(), None)?);
    rt().block_on(async {
        let (s, v) = json_call(app(engine), "POST", "/api/search", Some(json!({"text": "river"}))).await;
        ensure!(s == StatusCode::BAD_REQUEST, "{s}");
        insta::assert_json_snapshot!("error-no-text-tower", v);
        Ok(())
    })
}

/// Issue 3: an index refuses queries encoded with another model.
#[test]
fn queries_from_another_model_are_refused() -> Result<()> {
    let Some(demo) = demo() else { return Ok(()) };
    let other = nadir_clip::ClipEncoder::load(&nadir_clip::ClipSpec {
        model: root()
            .join("clip/tests/fixtures/tiny-quickgelu.safetensors")
            .display()
            .to_string(),
        ..Default::default()
    })?;
    let index = Index::open(demo.engine.index().dir())?;
    let err = Engine::new(index, Some(Box::new(other))).unwrap_err().to_string();
    ensure!(
        err.contains("model mismatch") && err.contains("nadir-lite") && err.contains("tiny-quickgelu"),
        "{err}"
    );
    Ok(())
}
