//! Interactive segmentation through the real web router (`nadir_web::router`) on an index of the
//! demo Manila scene: open a session on a window, click, see the overlay follow, undo and redo,
//! download the map, accept it into the label store, and the 4xx answers for bad inputs.

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use axum::http::StatusCode;
use axum::Router;
use nadir_indexer::Index;
use nadir_query::service::ServiceConfig;
use nadir_query::Engine;
use serde_json::{json, Value};

use crate::common::{call, json_call, lite_towers_present, root, rt};

/// An index of the Manila scene (224 px windows, so that many patch centres fall in a session's
/// window) and the web router over it.
fn app(dir: &std::path::Path) -> Result<Router> {
    let enc = nadir_clip::registry::load_encoder(&Default::default())?;
    let opts = nadir_indexer::AddOptions {
        progress: false,
        tiling: Some(nadir_indexer::Tiling::for_input(enc.input_size())),
        ..Default::default()
    };
    nadir_indexer::add(
        dir,
        enc.as_ref(),
        &[root().join("data/scenes/manila-pasig-river.tif")],
        &opts,
    )?;
    let engine = Engine::new(Index::open(dir)?, Some(enc))?;
    Ok(nadir_web::router(Arc::new(engine), ServiceConfig::default()))
}

/// Opaque pixels of a PNG overlay.
fn opaque(png: &[u8]) -> Result<usize> {
    let img = image::load_from_memory(png)?.to_rgba8();
    Ok(img.pixels().filter(|p| p.0[3] > 0).count())
}

#[test]
fn a_session_follows_clicks_and_its_mask_becomes_labels() -> Result<()> {
    if !lite_towers_present("interactive session tests") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let app = app(dir.path())?;
    rt().block_on(async {
        let (st, doc) = json_call(app.clone(), "GET", "/openapi.json", None).await;
        ensure!(st == StatusCode::OK);
        for p in ["/api/segment/sessions", "/api/segment/sessions/{id}/inputs", "/api/segment/sessions/{id}/accept"] {
            ensure!(doc["paths"].get(p).is_some(), "{p} missing from /openapi.json");
        }
        ensure!(doc["paths"].get("/api/search").is_some(), "the query API is still documented");
        let (_, scenes) = json_call(app.clone(), "GET", "/api/scenes", None).await;
        let scene = scenes["features"][0]["properties"]["id"].as_str().context("a scene id")?.to_string();

        let body = json!({"scene": scene, "window": [512, 512, 1024, 1024], "classes": [{"name": "water", "color": [0, 90, 255]}]});
        let (st, s) = json_call(app.clone(), "POST", "/api/segment/sessions", Some(body)).await;
        ensure!(st == StatusCode::CREATED, "{st}: {s}");
        let id = s["id"].as_str().context("id")?.to_string();
        ensure!(s["window"] == json!([512, 512, 1024, 1024]) && s["corners"].as_array().map(Vec::len) == Some(4), "{s}");
        let base = format!("/api/segment/sessions/{id}");

        let (st, png) = call(app.clone(), "GET", &format!("{base}/mask.png"), None).await;
        ensure!(st == StatusCode::OK && opaque(&png)? == 0, "an empty mask before any input");
        // A click given in lon/lat (the window's centre), then one in pixels.
        let c = &s["corners"];
        let (lon, lat) = (
            (c[0][0].as_f64().unwrap() + c[2][0].as_f64().unwrap()) / 2.0,
            (c[0][1].as_f64().unwrap() + c[2][1].as_f64().unwrap()) / 2.0,
        );
        let click = json!({"kind": "point", "class": 0, "x": lon, "y": lat, "lonlat": true});
        let (st, up) = json_call(app.clone(), "POST", &format!("{base}/inputs"), Some(click)).await;
        ensure!(st == StatusCode::OK, "{st}: {up}");
        let first = up["class_pixels"][0].as_u64().context("pixels")?;
        ensure!(first > 0 && up["inputs"] == 1, "{up}");
        let (_, png) = call(app.clone(), "GET", &format!("{base}/mask.png"), None).await;
        ensure!(opaque(&png)? as u64 == first, "the overlay shows the class's pixels");
        let neg = json!({"kind": "point", "class": 0, "x": 20.0, "y": 20.0, "positive": false});
        let (st, up) = json_call(app.clone(), "POST", &format!("{base}/inputs"), Some(neg)).await;
        ensure!(st == StatusCode::OK && up["inputs"] == 2, "{up}");
        let (_, up) = json_call(app.clone(), "POST", &format!("{base}/undo"), None).await;
        ensure!(up["inputs"] == 1 && up["class_pixels"][0].as_u64() == Some(first), "undo restores: {up}");
        let (_, up) = json_call(app.clone(), "POST", &format!("{base}/redo"), None).await;
        ensure!(up["inputs"] == 2, "{up}");

        let (st, tif) = call(app.clone(), "GET", &format!("{base}/mask.tif"), None).await;
        ensure!(st == StatusCode::OK && tif.starts_with(b"II*"), "a GeoTIFF");
        let path = dir.path().join("mask.tif");
        std::fs::write(&path, &tif)?;
        let ds = gdal::Dataset::open(&path)?;
        ensure!(ds.raster_size() == (1024, 1024) && !ds.projection().is_empty());
        let (st, gj) = json_call(app.clone(), "GET", &format!("{base}/mask.geojson"), None).await;
        ensure!(st == StatusCode::OK && gj["type"] == "FeatureCollection", "{gj}");

        let (st, acc) = json_call(app.clone(), "POST", &format!("{base}/accept"), None).await;
        ensure!(st == StatusCode::OK, "{st}: {acc}");
        let (_, labels) = json_call(app.clone(), "GET", "/api/labels?class=water", None).await;
        let stored = labels["labels"].as_array().map_or(0, Vec::len) as u64;
        let labelled = acc["labelled"].as_u64().context("labelled")?;
        ensure!(labelled > 0 && stored == labelled, "accepted labels are in the store: {acc} / {labels}");
        // The accepted patches and the mask's polygons make a training set.
        let req = json!({"name": "segmented", "class": "water", "masks": acc["geojson"], "mask_class": "water"});
        let (st, ex) = json_call(app.clone(), "POST", "/api/export", Some(req)).await;
        ensure!(st == StatusCode::OK, "{st}: {ex}");
        ensure!(ex["chips"].as_u64() == Some(labelled) && ex["masks"].as_u64().unwrap_or(0) > 0, "{ex}");

        let (st, _) = call(app.clone(), "DELETE", &base, None).await;
        ensure!(st == StatusCode::NO_CONTENT);
        let (st, e) = json_call(app.clone(), "GET", &base, None).await;
        ensure!(st == StatusCode::NOT_FOUND && e["error"].is_string(), "{e}");
        Ok(())
    })
}

#[test]
fn bad_session_requests_get_4xx_with_a_message() -> Result<()> {
    if !lite_towers_present("interactive session tests") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let app = app(dir.path())?;
    rt().block_on(async {
        let (_, scenes) = json_call(app.clone(), "GET", "/api/scenes", None).await;
        let scene: Value = scenes["features"][0]["properties"]["id"].clone();
        let cases: Vec<(Value, StatusCode, &str)> = vec![
            (json!({"scene": "nope"}), StatusCode::NOT_FOUND, "no scene"),
            (
                json!({"scene": scene, "window": [2000, 0, 100, 100]}),
                StatusCode::BAD_REQUEST,
                "not inside",
            ),
            (
                json!({"scene": scene, "window": [0, 0, 0, 10]}),
                StatusCode::BAD_REQUEST,
                "not inside",
            ),
            (
                json!({"scene": scene, "bogus": 1}),
                StatusCode::BAD_REQUEST,
                "unknown field",
            ),
            (
                json!({"scene": scene, "window": [0, 0, 10, 10], "bbox": [0.0, 0.0, 1.0, 1.0]}),
                StatusCode::BAD_REQUEST,
                "not both",
            ),
            (
                json!({"scene": scene, "bbox": [10.0, 10.0, 11.0, 11.0]}),
                StatusCode::BAD_REQUEST,
                "does not cover",
            ),
            (
                json!({"scene": scene, "bbox": [11.0, 10.0, 10.0, 11.0]}),
                StatusCode::BAD_REQUEST,
                "west < east",
            ),
        ];
        for (body, want, msg) in cases {
            let (st, e) = json_call(app.clone(), "POST", "/api/segment/sessions", Some(body.clone())).await;
            ensure!(st == want, "{body}: {st} {e}");
            ensure!(
                e["error"].as_str().is_some_and(|m| m.contains(msg)),
                "{body}: {e}"
            );
        }
        // A bbox inside the scene gives the window of its pixels.
        let b: Vec<f64> = serde_json::from_value(scenes["features"][0]["properties"]["bbox"].clone())?;
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        let (dx, dy) = ((b[2] - b[0]) / 8.0, (b[3] - b[1]) / 8.0);
        let body = json!({"scene": scene, "bbox": [cx - dx, cy - dy, cx + dx, cy + dy]});
        let (st, s) = json_call(app.clone(), "POST", "/api/segment/sessions", Some(body)).await;
        ensure!(st == StatusCode::CREATED, "{st} {s}");
        let w: Vec<u32> = serde_json::from_value(s["window"].clone())?;
        ensure!(
            w[2] > 100 && w[2] < 1024 && w[3] > 100 && w[3] < 1024,
            "a quarter of the scene across: {w:?}"
        );
        let id = s["id"].as_str().context("id")?.to_string();
        let (st, _) = call(
            app.clone(),
            "DELETE",
            &format!("/api/segment/sessions/{id}"),
            None,
        )
        .await;
        ensure!(st == StatusCode::NO_CONTENT);
        let body = json!({"scene": scene, "window": [0, 0, 128, 128], "classes": [{"name": "a"}]});
        let (_, s) = json_call(app.clone(), "POST", "/api/segment/sessions", Some(body.clone())).await;
        let base = format!("/api/segment/sessions/{}", s["id"].as_str().context("id")?);
        for (input, msg) in [
            (
                json!({"kind": "point", "class": 0, "x": 500.0, "y": 3.0}),
                "outside",
            ),
            (
                json!({"kind": "point", "class": 3, "x": 5.0, "y": 3.0}),
                "does not exist",
            ),
            (json!({"kind": "point", "class": 0}), "needs x and y"),
            (json!({"kind": "lasso", "class": 0}), "kind"),
        ] {
            let (st, e) = json_call(
                app.clone(),
                "POST",
                &format!("{base}/inputs"),
                Some(input.clone()),
            )
            .await;
            ensure!(st == StatusCode::BAD_REQUEST, "{input}: {st} {e}");
            ensure!(
                e["error"].as_str().is_some_and(|m| m.contains(msg)),
                "{input}: {e}"
            );
        }
        let (st, _) = json_call(
            app.clone(),
            "POST",
            "/api/segment/sessions/0000000000000000/undo",
            None,
        )
        .await;
        ensure!(st == StatusCode::NOT_FOUND);
        // The session limit: three more open, the fifth is refused.
        for _ in 0..3 {
            let (st, _) = json_call(app.clone(), "POST", "/api/segment/sessions", Some(body.clone())).await;
            ensure!(st == StatusCode::CREATED);
        }
        let (st, e) = json_call(app.clone(), "POST", "/api/segment/sessions", Some(body)).await;
        ensure!(
            st == StatusCode::SERVICE_UNAVAILABLE
                && e["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("sessions are open")),
            "{st} {e}"
        );
        Ok(())
    })
}
