//! Labels and active learning end to end: the real router on a small synthetic index (add, list,
//! relabel, remove, import, export, learn with spatial cross-validation, suggest, the 4xx
//! answers, the OpenAPI entries), and a real `kill -9` of a process writing labels: every label
//! it acknowledged is in the store afterwards.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::json_call as call;
use anyhow::{ensure, Context, Result};
use axum::http::StatusCode;
use nadir_indexer::manifest::SceneEntry;
use nadir_indexer::raster::{RasterOptions, Window};
use nadir_indexer::writer::SceneRows;
use nadir_indexer::{cells, Index, IndexWriter, ModelInfo, PatchId, PatchRecord, Tiling};
use nadir_query::service::{router, ServiceConfig};
use nadir_query::{Engine, LabelSource, LabelStore, NewLabel};
use serde_json::{json, Value};

const DIM: usize = 16;
const SIDE: usize = 20;
const STEP: f64 = 0.01;

/// Whether grid cell (i, j) shows "water": every fourth diagonal.
fn water(i: usize, j: usize) -> bool {
    (i + j).is_multiple_of(4)
}

/// The id of grid patch (i, j).
fn patch_id(i: usize, j: usize) -> String {
    PatchId::new(&format!("grid-{}", j / (SIDE / 2)), &window(i, j)).to_string()
}

fn window(i: usize, j: usize) -> Window {
    Window {
        x: i as u32 * 64,
        y: j as u32 * 64,
        width: 64,
        height: 64,
    }
}

/// A 20 x 20 grid of patches (centroids and H3 cells, no footprints) 0.01 degrees apart near (10, 45), in two scenes; "water" patches
/// point along one axis, the others along another, both with deterministic noise.
fn build(dir: &Path) -> Result<()> {
    let model = ModelInfo {
        name: "synthetic".into(),
        sha256: "0".repeat(64),
        dim: DIM,
        text: false,
        source: None,
    };
    let mut w = IndexWriter::open(dir, model, Tiling::for_input(64), RasterOptions::default())?;
    let res = cells::resolution_for_area(250.0 * 250.0);
    let mut state = 1u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
    };
    for scene in 0..2 {
        let id = format!("grid-{scene}");
        let (mut rows, mut vectors) = (Vec::new(), Vec::new());
        for i in 0..SIDE {
            for j in (scene * SIDE / 2)..((scene + 1) * SIDE / 2) {
                let window = window(i, j);
                let (lon, lat) = (10.0 + i as f64 * STEP, 45.0 + j as f64 * STEP);
                let mut v: Vec<f32> = (0..DIM).map(|_| 0.3 * noise()).collect();
                v[if water(i, j) { 0 } else { 1 }] += 1.0;
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                vectors.extend(v.iter().map(|x| x / n));
                rows.push(PatchRecord {
                    id: PatchId::new(&id, &window),
                    scene: id.clone(),
                    window,
                    footprint: None,
                    centroid: Some((lon, lat)),
                    h3: cells::cells_for(lon, lat, res).context("cells")?,
                    acquired_ms: None,
                    gsd_m: Some(7.0),
                    tags: vec![],
                    labels: vec![],
                    thumb: (0, 0),
                });
            }
        }
        let entry = SceneEntry {
            id: id.clone(),
            path: PathBuf::from(format!("/synthetic/{id}.tif")),
            sha256: format!("{scene:064x}"),
            part: String::new(),
            patches: 0,
            skipped: 0,
            width: 64 * SIDE as u32,
            height: 64 * SIDE as u32,
            epsg: Some(4326),
            georeferenced: true,
            pixel_size_m: Some(7.0),
            tags: vec![],
        };
        w.add_scene(SceneRows {
            entry,
            thumbnails: vec![Vec::new(); rows.len()],
            rows,
            vectors,
        })?;
    }
    w.finish()?;
    Ok(())
}

#[test]
fn labels_and_learning_over_http() -> Result<()> {
    let dir = tempfile::tempdir()?;
    build(dir.path())?;
    let engine = Arc::new(Engine::new(Index::open(dir.path())?, None)?);
    let id_at = |i: usize, j: usize| patch_id(i, j);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = router(engine.clone(), ServiceConfig::default());
        // Label every third patch of the grid.
        let mut n = 0;
        for i in 0..SIDE {
            for j in 0..SIDE {
                if !(i * SIDE + j).is_multiple_of(3) {
                    continue;
                }
                let body = json!({"patch_id": id_at(i, j), "class": "water", "positive": water(i, j),
                                  "query": {"text": "open water"}});
                let (s, v) = call(app.clone(), "POST", "/api/labels", Some(body)).await;
                ensure!(s == StatusCode::OK, "{s} {v}");
                ensure!(
                    v["source"] == "search" && v["query"]["text"] == "open water",
                    "{v}"
                );
                n += 1;
            }
        }
        let (s, v) = call(app.clone(), "GET", "/api/labels?class=water", None).await;
        ensure!(
            s == StatusCode::OK && v["labels"].as_array().unwrap().len() == n,
            "{v}"
        );
        ensure!(v["classes"][0]["class"] == "water");

        // Relabel replaces: still n labels.
        let first = id_at(0, 0);
        let body = json!({"patch_id": first, "class": "water", "positive": true, "source": "suggestion"});
        let (s, v) = call(app.clone(), "POST", "/api/labels", Some(body)).await;
        ensure!(s == StatusCode::OK && v["source"] == "suggestion", "{v}");
        let (_, v) = call(app.clone(), "GET", "/api/labels", None).await;
        ensure!(v["labels"].as_array().unwrap().len() == n);

        // Learn: a linearly separable class is found, spatially cross-validated.
        let (s, r) = call(app.clone(), "POST", "/api/learn/water", None).await;
        ensure!(s == StatusCode::OK, "{s} {r}");
        ensure!(r["dim"] == DIM && r["weak_negatives"] == 0, "{r}");
        let cv = &r["cross_validation"];
        ensure!(cv["folds"].as_u64().unwrap() >= 2, "{r}");
        ensure!(
            cv["precision"].as_f64().unwrap() > 0.9 && cv["recall"].as_f64().unwrap() > 0.9,
            "{r}"
        );

        // The discovery curve: one point per stored label, positives counted in the order given.
        let curve: Vec<u64> = r["discovery"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        ensure!(curve.len() == n, "{r}");
        ensure!(
            curve.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 1),
            "{curve:?}"
        );
        ensure!(curve[n - 1] == r["positives"].as_u64().unwrap(), "{r}");

        // Suggestions: never a labelled patch; likely positives are water; `likely` by default.
        let (s, v) = call(
            app.clone(),
            "POST",
            "/api/learn/water/suggest",
            Some(json!({"n": 6})),
        )
        .await;
        ensure!(
            s == StatusCode::OK && v["suggestions"].as_array().unwrap().len() == 6,
            "{s} {v}"
        );
        ensure!(v["mode"] == "likely", "{v}");
        // The default batch is the most probable patches.
        let likely = v["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["probability"].as_f64().unwrap() > 0.5)
            .count();
        ensure!(likely >= 4, "{v}");

        // Find all of these: the labelled positives and the probable patches as GeoJSON, then
        // as a training set.
        let (s, fc) = call(
            app.clone(),
            "POST",
            "/api/learn/water/geojson",
            Some(json!({"min_probability": 0.5})),
        )
        .await;
        ensure!(
            s == StatusCode::OK && fc["type"] == "FeatureCollection",
            "{s} {fc}"
        );
        let features = fc["features"].as_array().unwrap();
        let labelled_pos = r["positives"].as_u64().unwrap() as usize;
        ensure!(features.len() > labelled_pos, "{} features", features.len());
        let mut wrong = 0;
        for f in features {
            let p = &f["properties"];
            ensure!(
                p["class"] == "water" && p["probability"].as_f64().unwrap() >= 0.5,
                "{f}"
            );
            // The grid's patches have centroids and no footprints: Points.
            ensure!(f["geometry"]["type"] == "Point", "{f}");
            let c = &p["centroid"];
            let i = ((c[0].as_f64().unwrap() - 10.0) / STEP).round() as usize;
            let j = ((c[1].as_f64().unwrap() - 45.0) / STEP).round() as usize;
            wrong += usize::from(!water(i, j));
        }
        ensure!(
            features
                .iter()
                .filter(|f| f["properties"]["labelled"] == true)
                .count()
                == labelled_pos,
            "every labelled positive is in"
        );
        ensure!(
            wrong * 10 <= features.len(),
            "{wrong} of {} are not water",
            features.len()
        );
        // (The training set of the same patches needs scenes with pixels: query's export
        // tests and the page's test write one.)
        let (_, labels) = call(app.clone(), "GET", "/api/labels?class=water", None).await;
        let labelled: Vec<&str> = labels["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["patch_id"].as_str().unwrap())
            .collect();
        let req = json!({"n": 5, "mode": "likely", "geofilter": {"bbox": [10.0, 45.0, 10.1, 45.1]}});
        let (s, v) = call(app.clone(), "POST", "/api/learn/water/suggest", Some(req)).await;
        ensure!(s == StatusCode::OK, "{s} {v}");
        for sug in v["suggestions"].as_array().unwrap() {
            let id = sug["patch"]["patch_id"].as_str().unwrap();
            ensure!(!labelled.contains(&id), "a labelled patch was suggested");
            ensure!(sug["probability"].as_f64().unwrap() > 0.5, "{sug}");
            let c = &sug["patch"]["centroid"];
            let i = ((c[0].as_f64().unwrap() - 10.0) / STEP).round() as usize;
            let j = ((c[1].as_f64().unwrap() - 45.0) / STEP).round() as usize;
            ensure!(water(i, j), "({i}, {j}) is not water");
        }
        let (s, v) = call(app.clone(), "POST", "/api/learn/water/scores", Some(json!({}))).await;
        ensure!(
            s == StatusCode::OK && v["probabilities"].as_array().unwrap().len() == SIDE * SIDE - n,
            "{v}"
        );

        // Remove, import a point, export.
        let (s, v) = call(app.clone(), "DELETE", &format!("/api/labels/water/{first}"), None).await;
        ensure!(
            s == StatusCode::OK && v["removed"]["patch_id"] == first.as_str(),
            "{s} {v}"
        );
        let (s, _) = call(app.clone(), "DELETE", &format!("/api/labels/water/{first}"), None).await;
        ensure!(s == StatusCode::NOT_FOUND);
        let (a, b) = (10.0 - STEP / 2.0, 10.0 + STEP / 2.0);
        let (c, d) = (45.0 - STEP / 2.0, 45.0 + STEP / 2.0);
        let square = json!({"type": "Polygon", "coordinates": [[[a, c], [b, c], [b, d], [a, d], [a, c]]]});
        let (s, v) = call(
            app.clone(),
            "POST",
            "/api/labels/import",
            Some(json!({"geojson": square, "class": "harbour"})),
        )
        .await;
        ensure!(
            s == StatusCode::OK && v["added"] == 1 && v["unmatched"] == 0,
            "{s} {v}"
        );
        let (s, fc) = call(app.clone(), "GET", "/api/labels/export?class=harbour", None).await;
        ensure!(s == StatusCode::OK && fc["type"] == "FeatureCollection", "{fc}");
        ensure!(fc["features"][0]["properties"]["patch_id"] == first.as_str());
        ensure!(fc["features"][0]["properties"]["source"] == "import");
        ensure!(
            fc["features"][0]["properties"]["centroid"] == json!([10.0, 45.0]),
            "{fc}"
        );

        // Bad input: 4xx with a message, never 5xx.
        let unknown = "00000000000000ff";
        let cases: Vec<(&str, &str, Option<Value>, StatusCode)> = vec![
            (
                "/api/labels",
                "POST",
                Some(json!({"patch_id": first, "class": " ", "positive": true})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/labels",
                "POST",
                Some(json!({"patch_id": unknown, "class": "x", "positive": true})),
                StatusCode::NOT_FOUND,
            ),
            (
                "/api/labels",
                "POST",
                Some(json!({"patch_id": "xyz", "class": "x", "positive": true})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/labels",
                "POST",
                Some(json!({"patch_id": first, "class": "x", "positive": true, "colour": 1})),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ("/api/learn/nothing", "POST", None, StatusCode::NOT_FOUND),
            ("/api/learn/harbour", "POST", None, StatusCode::OK),
            (
                "/api/learn/water/suggest",
                "POST",
                Some(json!({"n": 0})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/learn/water/suggest",
                "POST",
                Some(json!({"geofilter": {"bbox": [1, 1, 0, 0]}})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/learn/water/suggest",
                "POST",
                Some(json!({"mode": "random"})),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "/api/learn/water/geojson",
                "POST",
                Some(json!({"min_probability": 1.5})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/learn/water/geojson",
                "POST",
                Some(json!({"min_probability": 0.0})),
                StatusCode::OK,
            ),
            (
                "/api/learn/nothing/geojson",
                "POST",
                Some(json!({"min_probability": 0.5})),
                StatusCode::NOT_FOUND,
            ),
            (
                "/api/export",
                "POST",
                Some(json!({"name": "x1", "min_probability": 0.5})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/export",
                "POST",
                Some(json!({"name": "x2", "class": "water", "min_probability": 0.5, "patches": [first]})),
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/labels/import",
                "POST",
                Some(json!({"geojson": {"type": "LineString", "coordinates": []}, "class": "x"})),
                StatusCode::BAD_REQUEST,
            ),
            ("/api/labels/water/xyz", "DELETE", None, StatusCode::NOT_FOUND),
            ("/api/labels/%20/xyz", "DELETE", None, StatusCode::BAD_REQUEST),
        ];
        for (uri, method, body, want) in cases {
            let (s, v) = call(app.clone(), method, uri, body.clone()).await;
            ensure!(s == want, "{method} {uri} {body:?}: {s} {v}");
            if !s.is_success() {
                ensure!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{uri}: {v}");
            }
        }
        Ok(())
    })?;

    let doc = serde_json::to_value(nadir_query::service::openapi())?;
    for p in [
        "/api/labels",
        "/api/labels/import",
        "/api/labels/export",
        "/api/labels/{class}/{patch_id}",
        "/api/learn/{class}",
        "/api/learn/{class}/suggest",
        "/api/learn/{class}/scores",
        "/api/learn/{class}/geojson",
    ] {
        ensure!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    ensure!(doc["paths"].get("/api/search").is_some());
    ensure!(doc["components"]["schemas"].get("NewLabel").is_some());
    Ok(())
}

/// The served app answers only the hosts it is told (DNS rebinding cannot reach a server on
/// 127.0.0.1 through another name), forbids framing by other sites, and answers every 4xx in
/// one JSON shape.
#[test]
fn other_hosts_are_refused_and_framing_is_forbidden() -> Result<()> {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let dir = tempfile::tempdir()?;
    build(dir.path())?;
    let engine = Arc::new(Engine::new(Index::open(dir.path())?, None)?);
    let config = ServiceConfig::default();
    let mut hosts = config.allowed_hosts.clone();
    hosts.push("nadir.internal".into());
    let origins = vec!["https://maps.example".to_string()];
    let app = nadir_query::service::guard(router(engine.clone(), config.clone()), &hosts, &origins);
    let closed = nadir_query::service::guard(router(engine, config), &hosts, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let get = |host: Option<&str>| {
            let mut req = Request::get("/health");
            if let Some(h) = host {
                req = req.header("host", h);
            }
            app.clone().oneshot(req.body(Body::empty()).unwrap())
        };
        for host in [
            None,
            Some("127.0.0.1:8080"),
            Some("localhost"),
            Some("[::1]:80"),
            Some("NADIR.internal:443"),
        ] {
            let resp = get(host).await?;
            ensure!(resp.status() == StatusCode::OK, "{host:?}: {}", resp.status());
            let h = resp.headers();
            ensure!(h["x-frame-options"] == "DENY", "{h:?}");
            ensure!(h["content-security-policy"] == "frame-ancestors 'none'", "{h:?}");
        }
        // Every 4xx in the one JSON shape: a 405 (keeping its Allow header) and a path that is
        // not UTF-8 (empty or plain-text bodies before).
        for (method, uri, want) in [
            ("DELETE", "/health", StatusCode::METHOD_NOT_ALLOWED),
            ("GET", "/api/patches/%FF%FE", StatusCode::BAD_REQUEST),
            ("PUT", "/api/learn/water", StatusCode::METHOD_NOT_ALLOWED),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .header("host", "127.0.0.1");
            let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await?;
            ensure!(resp.status() == want, "{method} {uri}: {}", resp.status());
            if want == StatusCode::METHOD_NOT_ALLOWED {
                ensure!(resp.headers().contains_key("allow"), "{:?}", resp.headers());
            }
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await?;
            let v: Value = serde_json::from_slice(&body)?;
            ensure!(
                v["error"].as_str().is_some_and(|m| !m.is_empty()),
                "{method} {uri}: {v}"
            );
        }
        // CORS: off by default; on for the origins named, preflight included.
        let cors = |app: axum::Router, method: &str, origin: &str| {
            let mut req = Request::builder()
                .method(method)
                .uri("/api/search")
                .header("host", "127.0.0.1")
                .header("origin", origin);
            if method == "OPTIONS" {
                req = req.header("access-control-request-method", "POST");
            }
            app.oneshot(req.body(Body::empty()).unwrap())
        };
        let pre = cors(app.clone(), "OPTIONS", "https://maps.example").await?;
        ensure!(pre.status() == StatusCode::NO_CONTENT, "{}", pre.status());
        ensure!(pre.headers()["access-control-allow-origin"] == "https://maps.example");
        ensure!(pre.headers()["access-control-allow-methods"]
            .to_str()?
            .contains("POST"));
        let post = cors(app.clone(), "POST", "https://maps.example").await?;
        ensure!(post.headers()["access-control-allow-origin"] == "https://maps.example");
        for (app, origin) in [
            (app.clone(), "https://evil.example"),
            (closed.clone(), "https://maps.example"),
        ] {
            for method in ["OPTIONS", "POST"] {
                let r = cors(app.clone(), method, origin).await?;
                ensure!(
                    !r.headers().contains_key("access-control-allow-origin"),
                    "{method} from {origin}: {:?}",
                    r.headers()
                );
            }
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "[::2]:80",
        ] {
            let resp = get(Some(host)).await?;
            ensure!(
                resp.status() == StatusCode::FORBIDDEN,
                "{host}: {}",
                resp.status()
            );
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await?;
            let v: Value = serde_json::from_slice(&body)?;
            ensure!(
                v["error"].as_str().is_some_and(|m| m.contains("--allowed-host")),
                "{v}"
            );
        }
        Ok(())
    })
}

/// Output into a pipe whose reader is gone (`nadir labels list | head -0`) ends the command
/// quietly with success, as Unix tools do; it panicked on the closed pipe before.
#[test]
fn a_closed_pipe_is_not_a_panic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    build(dir.path())?;
    let index = dir.path().to_str().context("utf-8 temp path")?;
    let ids: Vec<String> = (0..5).map(|i| patch_id(i, 0)).collect();
    let mut add = vec!["labels", "add", "--index", index, "--class", "water"];
    add.extend(ids.iter().map(String::as_str));
    ensure!(crate::common::nadir()?.args(&add).output()?.status.success());
    // A pipe whose read end is closed before the command writes.
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = crate::common::nadir()?
        .args(["labels", "list", "--index", index])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!stderr.contains("panicked"), "{stderr}");
    ensure!(out.status.success(), "{:?}: {stderr}", out.status);
    Ok(())
}

/// Positions are validated where they enter: not-a-number, infinite or out-of-range longitudes
/// and latitudes, and polygons that enclose nothing, get a 400 with a message (they answered 404
/// or 200 before).
#[test]
fn positions_and_empty_polygons_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    build(dir.path())?;
    let engine = Arc::new(Engine::new(Index::open(dir.path())?, None)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = router(engine.clone(), ServiceConfig::default());
        let first = patch_id(0, 0);
        let body = json!({"patch_id": first, "class": "water", "positive": true});
        let (s, _) = call(app.clone(), "POST", "/api/labels", Some(body)).await;
        ensure!(s == StatusCode::OK);
        let line = json!({"type": "Polygon", "coordinates": [[[10.0, 45.0], [10.05, 45.05], [10.1, 45.1], [10.0, 45.0]]]});
        let cases: Vec<(&str, &str, Option<Value>)> = vec![
            ("/api/patch_at?lon=NaN&lat=45", "GET", None),
            ("/api/patch_at?lon=10&lat=inf", "GET", None),
            ("/api/patch_at?lon=200&lat=45", "GET", None),
            ("/api/patch_at?lon=10&lat=-91", "GET", None),
            ("/api/similar?lon=NaN&lat=45", "GET", None),
            ("/api/similar?lon=10&lat=900", "GET", None),
            (
                "/api/labels/import",
                "POST",
                Some(json!({"geojson": {"type": "Point", "coordinates": [10.0, 900.0]}, "class": "water"})),
            ),
            (
                "/api/learn/water/suggest",
                "POST",
                Some(json!({"geofilter": {"geojson": line}})),
            ),
            (
                "/api/labels/import",
                "POST",
                Some(json!({"geojson": line, "class": "water"})),
            ),
        ];
        for (uri, method, body) in cases {
            let (s, v) = call(app.clone(), method, uri, body.clone()).await;
            ensure!(s == StatusCode::BAD_REQUEST, "{method} {uri} {body:?}: {s} {v}");
            ensure!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{uri}: {v}");
        }
        // A valid position with nothing there is still a 404 (the grid has no footprints).
        let (s, v) = call(app.clone(), "GET", "/api/patch_at?lon=10&lat=45", None).await;
        ensure!(s == StatusCode::NOT_FOUND, "{s} {v}");
        Ok(())
    })
}

/// "Find all of these" from the real CLI: label a few patches, ask for suggestions (the most
/// probable by default), take every probable patch as GeoJSON (the training set of the same
/// patches needs scenes with pixels: query's export tests write one).
#[test]
fn find_all_from_the_cli() -> Result<()> {
    let dir = tempfile::tempdir()?;
    build(dir.path())?;
    let index = dir.path().to_str().context("utf-8 temp path")?;
    let run = |args: &[&str]| -> Result<String> {
        let out = crate::common::nadir()?.args(args).output()?;
        ensure!(
            out.status.success(),
            "nadir {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    let positives = [patch_id(0, 0), patch_id(2, 2), patch_id(4, 8)];
    let negatives = [patch_id(1, 0), patch_id(3, 5)];
    let mut add = vec!["labels", "add", "--index", index, "--class", "water"];
    add.extend(positives.iter().map(String::as_str));
    run(&add)?;
    let mut add = vec![
        "labels",
        "add",
        "--index",
        index,
        "--class",
        "water",
        "--negative",
    ];
    add.extend(negatives.iter().map(String::as_str));
    run(&add)?;

    let v: Value = serde_json::from_str(&run(&[
        "labels", "suggest", "--index", index, "--class", "water", "-n", "5", "--json",
    ])?)?;
    ensure!(v["mode"] == "likely" && v["weak_negatives"] == 48, "{v}");
    let probs: Vec<f64> = v["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["probability"].as_f64().unwrap())
        .collect();
    ensure!(
        probs.len() == 5 && probs.windows(2).all(|w| w[0] >= w[1]),
        "{probs:?}"
    );

    let geojson = dir.path().join("water.geojson");
    run(&[
        "labels",
        "export",
        "--index",
        index,
        "--class",
        "water",
        "--min-probability",
        "0.5",
        "-o",
        geojson.to_str().unwrap(),
    ])?;
    let fc: Value = serde_json::from_str(&std::fs::read_to_string(&geojson)?)?;
    let features = fc["features"].as_array().context("features")?;
    let labelled: Vec<&str> = features
        .iter()
        .filter(|f| f["properties"]["labelled"] == true)
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    ensure!(labelled.len() == 3 && positives.iter().all(|p| labelled.contains(&p.as_str())));
    ensure!(features.len() > 3, "{} features", features.len());
    let water_share = features
        .iter()
        .filter(|f| {
            let c = &f["properties"]["centroid"];
            let i = ((c[0].as_f64().unwrap() - 10.0) / STEP).round() as usize;
            let j = ((c[1].as_f64().unwrap() - 45.0) / STEP).round() as usize;
            water(i, j)
        })
        .count() as f64
        / features.len() as f64;
    ensure!(
        water_share > 0.9,
        "only {water_share} of the probable patches are water"
    );

    // Bad input: a probability outside 0..=1, and --min-probability without a class.
    let bad = crate::common::nadir()?
        .args([
            "labels",
            "export",
            "--index",
            index,
            "--class",
            "water",
            "--min-probability",
            "2",
        ])
        .output()?;
    ensure!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("min_probability"));
    let bad = crate::common::nadir()?
        .args([
            "export",
            "--index",
            index,
            "--min-probability",
            "0.5",
            "--out",
            "x",
        ])
        .output()?;
    ensure!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--class"));
    Ok(())
}

const KILL_DIR: &str = "NADIR_LABELS_KILL_DIR";
const KILL_START: &str = "NADIR_LABELS_KILL_START";

/// Run by [`kill_9_loses_no_acknowledged_label`] in a child process: adds labels until killed,
/// printing `ack N` after each `add` returned.
#[test]
#[ignore = "a helper: run by kill_9_loses_no_acknowledged_label"]
fn labels_writer_until_killed() -> Result<()> {
    let Some(dir) = std::env::var_os(KILL_DIR) else {
        return Ok(());
    };
    let start: u64 = std::env::var(KILL_START)?.parse()?;
    let store = LabelStore::open(Path::new(&dir))?;
    let out = std::io::stdout();
    for i in start.. {
        store.add(&NewLabel {
            patch_id: format!("{i:016x}"),
            class: "kill".into(),
            positive: i % 2 == 0,
            source: LabelSource::Import,
            query: Some(json!({"i": i})),
        })?;
        use std::io::Write;
        let mut o = out.lock();
        writeln!(o, "ack {i}")?;
        o.flush()?;
    }
    Ok(())
}

#[test]
fn kill_9_loses_no_acknowledged_label() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut total = 0;
    for round in 0..4u64 {
        let start = round * 1_000_000;
        let mut child = Command::new(&exe)
            .args([
                "labels::labels_writer_until_killed",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL_DIR, dir.path())
            .env(KILL_START, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
                if let Some(i) = line.strip_prefix("ack ").and_then(|i| i.parse::<u64>().ok()) {
                    let _ = tx.send(i);
                }
            }
        });
        // Kill at a different moment each round, once some labels are acknowledged.
        let want = 20 + 37 * round as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acked = Vec::new();
        while acked.len() < want && Instant::now() < deadline {
            if let Ok(i) = rx.recv_timeout(Duration::from_millis(50)) {
                acked.push(i);
            }
        }
        ensure!(child.try_wait()?.is_none(), "the writer stopped by itself");
        child.kill()?; // SIGKILL
        child.wait()?;
        reader.join().expect("reader");
        acked.extend(rx.try_iter());
        ensure!(
            acked.len() >= want,
            "only {} labels acknowledged in 60 s",
            acked.len()
        );

        let store = LabelStore::open(dir.path())?;
        for &i in &acked {
            let l = store
                .get(&format!("{i:016x}"), "kill")?
                .with_context(|| format!("acknowledged label {i} lost after kill -9 (round {round})"))?;
            ensure!(l.positive == (i % 2 == 0) && l.query == Some(json!({"i": i})));
        }
        total += acked.len();
        ensure!(
            store.list(Some("kill"))?.len() >= total,
            "labels of earlier rounds lost"
        );
    }
    Ok(())
}
