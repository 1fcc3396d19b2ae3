//! The web layer on real data: tiles rendered from the Manila demo scene match its pixels, a tile
//! far from every scene is transparent, and the whole router (page, assets, tiles, catalogue, and
//! the query API under it) answers on an index of that scene built with the tiny test model.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{ensure, Context, Result};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use image::RgbaImage;
use nadir_indexer::raster::{RasterOptions, Scene, Window};
use nadir_indexer::{AddOptions, Index, Tiling};
use nadir_query::service::ServiceConfig;
use nadir_query::Engine;
use nadir_web::mercator::TILE_SIZE;
use nadir_web::{TileId, TileRenderer};
use serde_json::Value;
use tower::ServiceExt;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn manila() -> PathBuf {
    root().join("data/scenes/manila-pasig-river.tif")
}

/// The Manila scene, its centre in lon/lat, and a zoom-19 tile there.
fn manila_tile() -> Result<(Scene, TileId)> {
    let scene = Scene::open(&manila(), &RasterOptions::default())?;
    let (w, h) = scene.size();
    let g = scene.georef().context("Manila is georeferenced")?;
    let (lon, lat) = g.pixel_to_lonlat(f64::from(w) / 2.0, f64::from(h) / 2.0)?;
    Ok((scene, TileId::containing(19, lon, lat)?))
}

fn mean_rgb(px: impl Iterator<Item = [u8; 3]>) -> Option<[f64; 3]> {
    let (mut sum, mut n) = ([0.0; 3], 0.0);
    for p in px {
        for c in 0..3 {
            sum[c] += f64::from(p[c]);
        }
        n += 1.0;
    }
    (n > 0.0).then(|| sum.map(|s| s / n))
}

#[test]
fn a_tile_over_manila_shows_its_pixels() -> Result<()> {
    let renderer = TileRenderer::from_paths(&[manila()], RasterOptions::default())?;
    let (scene, tile) = manila_tile()?;
    let img = renderer.render(tile)?.context("the tile over Manila is empty")?;
    let opaque = img.pixels().filter(|p| p[3] == 255).count();
    ensure!(
        opaque > (TILE_SIZE * TILE_SIZE / 2) as usize,
        "only {opaque} opaque pixels"
    );
    // Blocks of 5x5 tile pixels against the source pixels under them (the same stretch).
    let g = scene.georef().unwrap();
    let (mut diffs, mut compared) = (0.0, 0);
    for j in 0..8 {
        for i in 0..8 {
            let (px, py) = (16 + 32 * i, 16 + 32 * j);
            let block = (py - 2..=py + 2).flat_map(|y| (px - 2..=px + 2).map(move |x| (x, y)));
            let block: Vec<_> = block.map(|(x, y)| *img.get_pixel(x, y)).collect();
            if block.iter().any(|p| p[3] == 0) {
                continue;
            }
            let tile_mean = mean_rgb(block.iter().map(|p| [p[0], p[1], p[2]])).unwrap();
            // The source window under the block: its corners, mapped.
            let (lon0, lat0) = tile.lonlat(f64::from(px) - 2.0, f64::from(py) - 2.0);
            let (lon1, lat1) = tile.lonlat(f64::from(px) + 3.0, f64::from(py) + 3.0);
            let (x0, y0) = g.lonlat_to_pixel(lon0, lat0)?;
            let (x1, y1) = g.lonlat_to_pixel(lon1, lat1)?;
            let (sx, sy) = (
                x0.min(x1).floor().max(0.0) as u32,
                y0.min(y1).floor().max(0.0) as u32,
            );
            let side = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as u32).max(2);
            let Some(src) = scene.read_window(Window::new(sx, sy, side, side), side)? else {
                continue;
            };
            let src_mean = mean_rgb(src.pixels().map(|p| p.0)).unwrap();
            diffs += (0..3).map(|c| (tile_mean[c] - src_mean[c]).abs()).sum::<f64>() / 3.0;
            compared += 1;
        }
    }
    ensure!(compared >= 32, "only {compared} blocks compared");
    let mean_diff = diffs / f64::from(compared);
    eprintln!("{compared} blocks, mean absolute difference {mean_diff:.1} levels");
    ensure!(
        mean_diff < 8.0,
        "the tile differs from the source by {mean_diff:.1} levels on average"
    );
    Ok(())
}

#[test]
fn nodata_is_transparent_and_black_data_is_not() -> Result<()> {
    // Atlanta (uint16 panchromatic, no mask): the stretch maps its darkest 2% to black, which is
    // data. A tile inside the scene is opaque everywhere.
    let atlanta = root().join("data/scenes/spacenet-atlanta-pan.tif");
    let renderer = TileRenderer::from_paths(std::slice::from_ref(&atlanta), RasterOptions::default())?;
    let scene = Scene::open(&atlanta, &RasterOptions::default())?;
    let (w, h) = scene.size();
    let g = scene.georef().context("Atlanta is georeferenced")?;
    let (lon, lat) = g.pixel_to_lonlat(f64::from(w) / 2.0, f64::from(h) / 2.0)?;
    let img = renderer
        .render(TileId::containing(20, lon, lat)?)?
        .context("empty tile")?;
    let black = img.pixels().filter(|p| p.0 == [0, 0, 0, 255]).count();
    let clear = img.pixels().filter(|p| p[3] == 0).count();
    ensure!(
        clear == 0 && black > 0,
        "{clear} transparent pixels, {black} opaque black"
    );

    // Manila's top-left corner is 8-bit black fill: transparent there at every zoom, opaque inside.
    let (scene, _) = manila_tile()?;
    let renderer = TileRenderer::from_paths(&[manila()], RasterOptions::default())?;
    let g = scene.georef().unwrap();
    let alpha = |z: u8, x: f64, y: f64| -> Result<u8> {
        let (lon, lat) = g.pixel_to_lonlat(x, y)?;
        let tile = TileId::containing(z, lon, lat)?;
        let (px, py) = tile.pixel(lon, lat);
        Ok(renderer
            .render(tile)?
            .map_or(0, |img| img.get_pixel(px as u32, py as u32)[3]))
    };
    for z in [17, 19, 21] {
        ensure!(alpha(z, 20.0, 20.0)? == 0, "zoom {z}: fill drawn");
        ensure!(alpha(z, 1024.0, 1024.0)? == 255, "zoom {z}: data left out");
    }
    Ok(())
}

#[test]
fn a_tile_far_away_is_transparent() -> Result<()> {
    let renderer = TileRenderer::from_paths(&[manila()], RasterOptions::default())?;
    let far = TileId::containing(12, 0.0, 0.0)?;
    ensure!(renderer.render(far)?.is_none());
    let png = renderer.png(far)?;
    let img: RgbaImage = image::load_from_memory(&png)?.to_rgba8();
    ensure!(img.dimensions() == (TILE_SIZE, TILE_SIZE));
    ensure!(img.pixels().all(|p| p[3] == 0), "a far tile has opaque pixels");
    // The world tile holds Manila as a speck, at most a few pixels.
    let world = renderer.render(TileId::new(0, 0, 0)?)?;
    let specks = world.map_or(0, |img| img.pixels().filter(|p| p[3] > 0).count());
    ensure!(specks <= 4, "{specks} pixels for a 200 m scene on the world tile");
    Ok(())
}

// The router.

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
}

/// An index of the Manila scene (512 px windows) with the tiny test model, built once.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = root().join("clip/tests/fixtures/tiny-quickgelu.safetensors");
        let spec = nadir_clip::registry::ModelSpec {
            model: Some(model.display().to_string()),
            ..Default::default()
        };
        let enc = nadir_clip::registry::load_encoder(&spec).unwrap();
        let opts = AddOptions {
            tiling: Some(Tiling {
                patch: 512,
                ..Tiling::for_input(enc.input_size())
            }),
            progress: false,
            ..Default::default()
        };
        let report = nadir_indexer::add(dir.path(), enc.as_ref(), &[manila()], &opts).unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let engine = Engine::new(Index::open(dir.path()).unwrap(), Some(enc)).unwrap();
        Fixture {
            _dir: dir,
            engine: Arc::new(engine),
        }
    })
}

fn app() -> Router {
    nadir_web::router(fixture().engine.clone(), ServiceConfig::default())
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn get(uri: &str, extra: Option<(header::HeaderName, &str)>) -> Answer {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = Request::builder().uri(uri);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        let resp = app().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    })
}

#[test]
fn the_page_and_its_assets_are_served() {
    let page = get("/", None);
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(page.header(header::CACHE_CONTROL), "no-cache");
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(
        html.contains("/assets/app.js") && html.contains("/assets/app.css") && html.contains("id=\"map\"")
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from outside"
    );

    for (path, ty) in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("LICENSES.txt", "text/plain"),
    ] {
        let a = get(&format!("/assets/{path}"), None);
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(a.header(header::CONTENT_TYPE).starts_with(ty), "{path}");
        assert!(a.body.len() > 1000, "{path} is {} bytes", a.body.len());
        let etag = a.header(header::ETAG).to_string();
        let again = get(&format!("/assets/{path}"), Some((header::IF_NONE_MATCH, &etag)));
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty());
    }
    let js = String::from_utf8(get("/assets/app.js", None).body).unwrap();
    assert!(js.contains("/api/tiles/{z}/{x}/{y}.png") && js.contains("/api/search"));
    assert_eq!(get("/assets/../Cargo.toml", None).status, StatusCode::NOT_FOUND);
    assert_eq!(get("/assets/nothing.js", None).status, StatusCode::NOT_FOUND);
}

#[test]
fn tiles_are_served_as_png() -> Result<()> {
    let (_, t) = manila_tile()?;
    let a = get(&format!("/api/tiles/{}/{}/{}.png", t.z, t.x, t.y), None);
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CONTENT_TYPE), "image/png");
    assert!(a.header(header::CACHE_CONTROL).contains("max-age"));
    let img = image::load_from_memory(&a.body)?.to_rgba8();
    assert!(
        img.pixels().filter(|p| p[3] == 255).count() > 1000,
        "the Manila tile is empty"
    );
    let far = TileId::containing(12, 0.0, 0.0)?;
    let a = get(&format!("/api/tiles/12/{}/{}.png", far.x, far.y), None);
    assert_eq!(a.status, StatusCode::OK);
    assert!(image::load_from_memory(&a.body)?
        .to_rgba8()
        .pixels()
        .all(|p| p[3] == 0));
    for bad in [
        "/api/tiles/25/0/0.png",
        "/api/tiles/2/4/0.png",
        "/api/tiles/1/0/0",
        "/api/tiles/a/0/0.png",
    ] {
        let a = get(bad, None);
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            a.json()["error"].as_str().is_some_and(|m| m.contains("tile")),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn the_catalogue_lists_scenes_footprints_and_patches() {
    let info = get("/api/info", None).json();
    // 2048 px in 512 px windows, less those mostly nodata.
    let n = info["patches"].as_u64().unwrap();
    assert!((12..=16).contains(&n), "{n} patches");

    let scenes = get("/api/scenes", None).json();
    let f = &scenes["features"][0];
    assert_eq!(f["properties"]["name"], "manila-pasig-river.tif");
    assert_eq!(f["properties"]["patches"], n);
    assert_eq!(f["geometry"]["type"], "Polygon");
    let b: Vec<f64> = serde_json::from_value(f["properties"]["bbox"].clone()).unwrap();
    let (lon, lat) = (120.9818, 14.5960); // the middle of the scene
    assert!(b[0] < lon && lon < b[2] && b[1] < lat && lat < b[3], "{b:?}");

    let view = format!("/api/footprints?bbox={},{},{},{}", b[0], b[1], b[2], b[3]);
    let fc = get(&view, None).json();
    assert_eq!(fc["features"].as_array().unwrap().len() as u64, n);
    assert_eq!(fc["truncated"], false);
    assert_eq!(fc["features"][0]["geometry"]["type"], "Polygon");
    let fc = get(&format!("{view}&limit=5"), None).json();
    assert_eq!(
        (fc["features"].as_array().unwrap().len(), &fc["truncated"]),
        (5, &Value::Bool(true))
    );
    let nowhere = get("/api/footprints?bbox=0,0,1,1", None).json();
    assert!(nowhere["features"].as_array().unwrap().is_empty());
    for bad in [
        "/api/footprints?bbox=1,2,3",
        "/api/footprints?bbox=3,0,1,1",
        "/api/footprints",
    ] {
        assert_eq!(get(bad, None).status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let page = get("/api/patches?offset=10&limit=4", None).json();
    assert_eq!(
        (page["total"].as_u64(), page["offset"].as_u64()),
        (Some(n), Some(10))
    );
    assert_eq!(page["patches"].as_array().unwrap().len(), 4);
    assert!(page["patches"][0]["thumbnail_url"]
        .as_str()
        .unwrap()
        .ends_with("thumbnail.jpg"));
    let last = get(&format!("/api/patches?offset={}&limit=100", n - 2), None).json();
    assert_eq!(last["patches"].as_array().unwrap().len(), 2);

    // The query API is there too, and unknown routes are still its JSON 404.
    assert_eq!(get("/health", None).status, StatusCode::OK);
    assert_eq!(get("/openapi.json", None).status, StatusCode::OK);
    let none = get("/api/nothing", None);
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert!(none.json()["error"].is_string());
}
