//! Interactive segmentation over HTTP: sessions on a scene of the index (or a window of it), the
//! analyst's inputs, the mask as a PNG overlay, a class GeoTIFF or GeoJSON polygons, and accepting
//! it into the label store. The engine is `nadir_segment::interactive`; this module holds the
//! sessions (a bounded number, each expiring after a while unused) and maps map coordinates to
//! the session's pixels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nadir_indexer::raster::{Georef, Window};
use nadir_segment::encoder::FrozenEncoder;
use nadir_segment::interactive::protocol::read_rgb;
use nadir_segment::interactive::{Input, Session, SessionOptions, Update};
use nadir_segment::{ClassInfo, EncoderSpec};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use crate::error::{Error, Result};

/// Sessions held at once; one more is refused until one closes or expires.
pub const MAX_SESSIONS: usize = 4;
/// A session unused this long is closed.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);

struct Entry {
    session: Arc<Mutex<Session>>,
    scene: String,
    window: Window,
    georef: Option<Georef>,
    last_used: Instant,
}

/// The open sessions and the encoder they share.
#[derive(Clone)]
pub(crate) struct Sessions {
    live: Arc<nadir_query::LiveEngine>,
    open: Arc<Mutex<HashMap<String, Entry>>>,
    encoder: Arc<OnceLock<std::result::Result<Arc<FrozenEncoder>, String>>>,
    options: SessionOptions,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// A class of a session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassIn {
    pub name: String,
    /// RGB colour of the class in the overlay.
    #[serde(default)]
    pub color: Option<[u8; 3]>,
}

/// `POST /api/segment/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The scene's id (see `/api/scenes`).
    pub scene: String,
    /// x, y, width, height in the scene's pixels (default: the whole scene, if within the limit).
    #[serde(default)]
    pub window: Option<[u32; 4]>,
    /// Or the part of the scene inside this WGS84 box (west, south, east, north), e.g. the map's
    /// view: the pixels it covers, clipped to the scene. Not with `window`.
    #[serde(default)]
    pub bbox: Option<[f64; 4]>,
    #[serde(default)]
    pub classes: Vec<ClassIn>,
}

/// One input. Coordinates are the session's pixels (x right, y down), or WGS84 lon/lat (x = lon,
/// y = lat) with `lonlat` true on a georeferenced scene.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputIn {
    /// `point` (a click), `scribble` (a stroke through `points`) or `box` (`x0, y0, x1, y1`).
    pub kind: InputKind,
    /// Index of the class in the session's list.
    pub class: usize,
    /// A point or stroke of the class (true) or of "not this class" (false). Default true.
    #[serde(default)]
    pub positive: Option<bool>,
    pub x: Option<f64>,
    pub y: Option<f64>,
    #[serde(default)]
    pub points: Option<Vec<[f64; 2]>>,
    pub x0: Option<f64>,
    pub y0: Option<f64>,
    pub x1: Option<f64>,
    pub y1: Option<f64>,
    #[serde(default)]
    pub lonlat: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    Point,
    Scribble,
    Box,
}

/// A session as the page sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub scene: String,
    /// x, y, width, height of the window in the scene's pixels.
    pub window: [u32; 4],
    /// The window's corners in lon/lat (top-left, top-right, bottom-right, bottom-left), to
    /// place the overlay; null without georeference.
    pub corners: Option<Vec<[f64; 2]>>,
    pub classes: Vec<ClassIn>,
    pub inputs: usize,
    /// Time to read the window and compute its features.
    pub features_ms: f64,
    pub memory_bytes: usize,
}

/// What an input, undo, redo or clear changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateView {
    pub inputs: usize,
    /// Pixels of each class (the last entry: pixels of none).
    pub class_pixels: Vec<u64>,
    pub fit_ms: f64,
    pub predict_ms: f64,
    pub refine_ms: f64,
    pub total_ms: f64,
}

impl From<Update> for UpdateView {
    fn from(u: Update) -> Self {
        UpdateView {
            inputs: u.inputs,
            class_pixels: u.class_pixels,
            fit_ms: u.fit_ms,
            predict_ms: u.predict_ms,
            refine_ms: u.refine_ms,
            total_ms: u.total_ms,
        }
    }
}

/// What accepting a mask did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptView {
    /// Polygons of the mask, per class.
    pub polygons: usize,
    /// Patch labels written (patches whose centroid lies in a polygon of the class).
    pub labelled: usize,
    /// The polygons (GeoJSON FeatureCollection, WGS84).
    #[schema(value_type = Object)]
    pub geojson: Value,
}

impl Sessions {
    pub(crate) fn new(live: Arc<nadir_query::LiveEngine>) -> Self {
        Self {
            live,
            open: Arc::new(Mutex::new(HashMap::new())),
            encoder: Arc::new(OnceLock::new()),
            options: SessionOptions::default(),
        }
    }

    fn encoder(&self) -> Result<Arc<FrozenEncoder>> {
        self.encoder
            .get_or_init(|| {
                FrozenEncoder::load(&EncoderSpec::pretrained())
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Error::Unavailable)
    }

    /// Drops expired sessions.
    fn expire(open: &mut HashMap<String, Entry>) {
        open.retain(|id, e| {
            let keep = e.last_used.elapsed() < SESSION_TTL;
            if !keep {
                tracing::info!(session = %id, "session expired");
            }
            keep
        });
    }

    fn get(&self, id: &str) -> Result<(Arc<Mutex<Session>>, Option<Georef>)> {
        let mut open = self.open.lock().expect("sessions lock");
        Self::expire(&mut open);
        let e = open
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("no session {id} (closed, expired or never opened)")))?;
        e.last_used = Instant::now();
        Ok((e.session.clone(), e.georef.clone()))
    }

    fn view(&self, id: &str) -> Result<SessionView> {
        let open = self.open.lock().expect("sessions lock");
        let e = open
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("no session {id}")))?;
        let s = e.session.lock().expect("session lock");
        let w = e.window;
        let corners = match &e.georef {
            Some(g) => {
                let (fw, fh) = (f64::from(w.width), f64::from(w.height));
                let pts = g.pixels_to_lonlat(&[(0.0, 0.0), (fw, 0.0), (fw, fh), (0.0, fh)])?;
                Some(pts.into_iter().map(|(a, b)| [a, b]).collect())
            }
            None => None,
        };
        Ok(SessionView {
            id: id.to_string(),
            scene: e.scene.clone(),
            window: [w.x, w.y, w.width, w.height],
            corners,
            classes: s
                .classes()
                .iter()
                .map(|c| ClassIn {
                    name: c.name.clone(),
                    color: c.color,
                })
                .collect(),
            inputs: s.inputs().len(),
            features_ms: s.info().features_ms,
            memory_bytes: s.info().memory_bytes,
        })
    }

    fn create(&self, req: CreateSession) -> Result<String> {
        {
            let mut open = self.open.lock().expect("sessions lock");
            Self::expire(&mut open);
            if open.len() >= MAX_SESSIONS {
                return Err(Error::Busy(format!(
                    "{MAX_SESSIONS} sessions are open: close one (DELETE /api/segment/sessions/{{id}}) or wait for one to expire"
                )));
            }
        }
        let engine = self.live.get();
        let manifest = engine.index().manifest();
        let entry = manifest
            .scenes
            .iter()
            .find(|s| s.id == req.scene)
            .ok_or_else(|| {
                Error::NotFound(format!("no scene {:?} in the index (see /api/scenes)", req.scene))
            })?;
        let scene = nadir_segment::dataset::open_scene(&entry.path, None, None)?;
        let (sw, sh) = scene.size();
        let window = match (req.window, req.bbox) {
            (Some(_), Some(_)) => {
                return Err(Error::BadRequest("give a `window` or a `bbox`, not both".into()));
            }
            (Some([x, y, w, h]), None) => Window {
                x,
                y,
                width: w,
                height: h,
            },
            (None, Some(b)) => {
                let g = scene.georef().ok_or_else(|| {
                    Error::BadRequest("the scene has no georeference: give a pixel `window`".into())
                })?;
                window_of_bbox(g, b, (sw, sh))?
            }
            (None, None) => Window {
                x: 0,
                y: 0,
                width: sw,
                height: sh,
            },
        };
        let inside = window.width > 0
            && window.height > 0
            && u64::from(window.x) + u64::from(window.width) <= u64::from(sw)
            && u64::from(window.y) + u64::from(window.height) <= u64::from(sh);
        if !inside {
            return Err(Error::BadRequest(format!(
                "window {:?} is not inside the {sw}x{sh} px scene",
                req.window
            )));
        }
        let px = u64::from(window.width) * u64::from(window.height);
        if px > self.options.max_pixels {
            return Err(Error::BadRequest(format!(
                "the window is {}x{} px, over the session limit of {} px: send a smaller `window` (zoom in)",
                window.width, window.height, self.options.max_pixels
            )));
        }
        let georef = scene.georef().map(|g| g.window(&window)).transpose()?;
        let image = read_rgb(&scene, window)?;
        let classes = req
            .classes
            .into_iter()
            .map(|c| ClassInfo {
                name: c.name,
                color: c.color,
            })
            .collect();
        let session = Session::new(&*self.encoder()?, image, classes, None, self.options.clone())?;
        let id = format!("{:016x}", rand::rng().random::<u64>());
        let mut open = self.open.lock().expect("sessions lock");
        if open.len() >= MAX_SESSIONS {
            return Err(Error::Busy(format!("{MAX_SESSIONS} sessions are open")));
        }
        open.insert(
            id.clone(),
            Entry {
                session: Arc::new(Mutex::new(session)),
                scene: req.scene,
                window,
                georef,
                last_used: Instant::now(),
            },
        );
        Ok(id)
    }
}

/// The pixels of a `size` scene inside a WGS84 box: the box's outline (corners and edge points)
/// in pixels, their bounding rectangle clipped to the scene.
fn window_of_bbox(g: &Georef, [west, south, east, north]: [f64; 4], (sw, sh): (u32, u32)) -> Result<Window> {
    let valid = [west, south, east, north].iter().all(|v| v.is_finite())
        && west < east
        && south < north
        && (-180.0..=180.0).contains(&west)
        && (-180.0..=180.0).contains(&east)
        && (-90.0..=90.0).contains(&south)
        && (-90.0..=90.0).contains(&north);
    if !valid {
        return Err(Error::BadRequest(format!(
            "bbox {:?} must be west < east, south < north, in degrees",
            [west, south, east, north]
        )));
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for i in 0..=4 {
        let t = f64::from(i) / 4.0;
        for (lon, lat) in [
            (west + t * (east - west), south),
            (west + t * (east - west), north),
            (west, south + t * (north - south)),
            (east, south + t * (north - south)),
        ] {
            let (x, y) = g.lonlat_to_pixel(lon, lat)?;
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let clip = |v: f64, max: u32| v.clamp(0.0, f64::from(max));
    let (a, b) = (clip(x0.floor(), sw) as u32, clip(y0.floor(), sh) as u32);
    let (c, d) = (clip(x1.ceil(), sw) as u32, clip(y1.ceil(), sh) as u32);
    if c <= a + 8 || d <= b + 8 {
        return Err(Error::BadRequest(
            "the bbox does not cover the scene (or too little of it)".into(),
        ));
    }
    Ok(Window {
        x: a,
        y: b,
        width: c - a,
        height: d - b,
    })
}

fn to_input(i: InputIn, georef: Option<&Georef>) -> Result<Input> {
    let bad = |m: &str| Error::BadRequest(m.to_string());
    let px = |x: f64, y: f64| -> Result<[f64; 2]> {
        if !i.lonlat {
            return Ok([x, y]);
        }
        let g = georef.ok_or_else(|| bad("lonlat inputs need a georeferenced scene"))?;
        let (px, py) = g.lonlat_to_pixel(x, y)?;
        Ok([px, py])
    };
    let positive = i.positive.unwrap_or(true);
    Ok(match i.kind {
        InputKind::Point => {
            let (Some(x), Some(y)) = (i.x, i.y) else {
                return Err(bad("a point needs x and y"));
            };
            let [x, y] = px(x, y)?;
            Input::Point {
                x,
                y,
                class: i.class,
                positive,
            }
        }
        InputKind::Scribble => {
            let pts = i.points.as_ref().ok_or_else(|| bad("a scribble needs points"))?;
            Input::Scribble {
                points: pts.iter().map(|p| px(p[0], p[1])).collect::<Result<_>>()?,
                class: i.class,
                positive,
            }
        }
        InputKind::Box => {
            let (Some(x0), Some(y0), Some(x1), Some(y1)) = (i.x0, i.y0, i.x1, i.y1) else {
                return Err(bad("a box needs x0, y0, x1, y1"));
            };
            let [a, b] = px(x0, y0)?;
            let [c, d] = px(x1, y1)?;
            Input::Box {
                x0: a.min(c),
                y0: b.min(d),
                x1: a.max(c),
                y1: b.max(d),
                class: i.class,
            }
        }
    })
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// Opens a session on a scene (or a window of it): reads it and computes its features.
#[utoipa::path(post, path = "/api/segment/sessions", request_body = CreateSession,
    responses((status = 201, body = SessionView), (status = 400, body = Object), (status = 404, body = Object),
              (status = 422, body = Object), (status = 503, body = Object)))]
async fn create(
    State(s): State<Sessions>,
    body: std::result::Result<Json<CreateSession>, JsonRejection>,
) -> Result<Response> {
    let Json(req) = body.map_err(|r| Error::BadRequest(r.body_text()))?;
    let view = blocking(move || {
        let id = s.create(req)?;
        s.view(&id)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// A session.
#[utoipa::path(get, path = "/api/segment/sessions/{id}", params(("id" = String, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = Object)))]
async fn show(State(s): State<Sessions>, Path(id): Path<String>) -> Result<Json<SessionView>> {
    s.get(&id)?;
    Ok(Json(s.view(&id)?))
}

/// Closes a session.
#[utoipa::path(delete, path = "/api/segment/sessions/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Object)))]
async fn close(State(s): State<Sessions>, Path(id): Path<String>) -> Result<StatusCode> {
    let removed = s.open.lock().expect("sessions lock").remove(&id);
    match removed {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(Error::NotFound(format!("no session {id}"))),
    }
}

/// Adds a class to a session.
#[utoipa::path(post, path = "/api/segment/sessions/{id}/classes", params(("id" = String, Path)), request_body = ClassIn,
    responses((status = 200, body = SessionView), (status = 400, body = Object), (status = 404, body = Object), (status = 422, body = Object)))]
async fn add_class(
    State(s): State<Sessions>,
    Path(id): Path<String>,
    body: std::result::Result<Json<ClassIn>, JsonRejection>,
) -> Result<Json<SessionView>> {
    let Json(c) = body.map_err(|r| Error::BadRequest(r.body_text()))?;
    let (session, _) = s.get(&id)?;
    blocking(move || {
        session.lock().expect("session lock").add_class(ClassInfo {
            name: c.name,
            color: c.color,
        })?;
        Ok(())
    })
    .await?;
    Ok(Json(s.view(&id)?))
}

/// Adds an input (click, stroke, box) and returns what the mask became.
#[utoipa::path(post, path = "/api/segment/sessions/{id}/inputs", params(("id" = String, Path)), request_body = InputIn,
    responses((status = 200, body = UpdateView), (status = 400, body = Object), (status = 404, body = Object), (status = 422, body = Object)))]
async fn add_input(
    State(s): State<Sessions>,
    Path(id): Path<String>,
    body: std::result::Result<Json<InputIn>, JsonRejection>,
) -> Result<Json<UpdateView>> {
    let Json(i) = body.map_err(|r| Error::BadRequest(r.body_text()))?;
    let (session, georef) = s.get(&id)?;
    let input = to_input(i, georef.as_ref())?;
    let up = blocking(move || Ok(session.lock().expect("session lock").add(input)?)).await?;
    Ok(Json(up.into()))
}

/// Undo, redo or clear.
async fn edit(
    s: Sessions,
    id: String,
    what: fn(&mut Session) -> nadir_segment::Result<Update>,
) -> Result<Json<UpdateView>> {
    let (session, _) = s.get(&id)?;
    let up = blocking(move || Ok(what(&mut session.lock().expect("session lock"))?)).await?;
    Ok(Json(up.into()))
}

/// Takes the last input back.
#[utoipa::path(post, path = "/api/segment/sessions/{id}/undo", params(("id" = String, Path)),
    responses((status = 200, body = UpdateView), (status = 404, body = Object)))]
async fn undo(State(s): State<Sessions>, Path(id): Path<String>) -> Result<Json<UpdateView>> {
    edit(s, id, Session::undo).await
}

/// Puts the last undone input back.
#[utoipa::path(post, path = "/api/segment/sessions/{id}/redo", params(("id" = String, Path)),
    responses((status = 200, body = UpdateView), (status = 404, body = Object)))]
async fn redo(State(s): State<Sessions>, Path(id): Path<String>) -> Result<Json<UpdateView>> {
    edit(s, id, Session::redo).await
}

/// Removes every input.
#[utoipa::path(post, path = "/api/segment/sessions/{id}/clear", params(("id" = String, Path)),
    responses((status = 200, body = UpdateView), (status = 404, body = Object)))]
async fn clear(State(s): State<Sessions>, Path(id): Path<String>) -> Result<Json<UpdateView>> {
    edit(s, id, Session::clear).await
}

/// The mask as a PNG overlay (RGBA, the window's pixels, classes in their colours).
#[utoipa::path(get, path = "/api/segment/sessions/{id}/mask.png", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 404, body = Object)))]
async fn mask_png(State(s): State<Sessions>, Path(id): Path<String>) -> Result<Response> {
    let (session, _) = s.get(&id)?;
    let png = blocking(move || Ok(session.lock().expect("session lock").overlay_png()?)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response())
}

/// The mask as a class GeoTIFF (uint8, 255 = none, the window's georeference).
#[utoipa::path(get, path = "/api/segment/sessions/{id}/mask.tif", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/tiff", body = Vec<u8>), (status = 404, body = Object)))]
async fn mask_tif(State(s): State<Sessions>, Path(id): Path<String>) -> Result<Response> {
    let (session, georef) = s.get(&id)?;
    let bytes = blocking(move || {
        let s = session.lock().expect("session lock");
        let dir = std::env::temp_dir().join(format!("nadir-mask-{:016x}", rand::rng().random::<u64>()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Task(e.to_string()))?;
        let path = dir.join("mask.tif");
        let size = (s.info().width, s.info().height);
        let res =
            nadir_segment::predict::write_class_map(&path, s.labels(), size, georef.as_ref(), s.classes())
                .map_err(Error::from)
                .and_then(|()| std::fs::read(&path).map_err(|e| Error::Task(e.to_string())));
        let _ = std::fs::remove_dir_all(&dir);
        res
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/tiff"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"mask.tif\""),
        ],
        bytes,
    )
        .into_response())
}

fn polygons(session: &Session, georef: Option<&Georef>) -> Result<Value> {
    let size = (session.info().width, session.info().height);
    Ok(nadir_segment::geojson::polygons(
        session.labels(),
        size,
        georef,
        session.classes(),
        16,
    )?)
}

/// The mask's polygons (GeoJSON FeatureCollection; WGS84 on a georeferenced scene).
#[utoipa::path(get, path = "/api/segment/sessions/{id}/mask.geojson", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = Object)))]
async fn mask_geojson(State(s): State<Sessions>, Path(id): Path<String>) -> Result<Json<Value>> {
    let (session, georef) = s.get(&id)?;
    let v = blocking(move || polygons(&session.lock().expect("session lock"), georef.as_ref())).await?;
    Ok(Json(v))
}

/// Accepts the mask: every patch of the window gets the class of its centre pixel as a label.
#[utoipa::path(post, path = "/api/segment/sessions/{id}/accept", params(("id" = String, Path)),
    responses((status = 200, body = AcceptView), (status = 400, body = Object), (status = 404, body = Object)))]
async fn accept(State(s): State<Sessions>, Path(id): Path<String>) -> Result<Json<AcceptView>> {
    let (session, georef) = s.get(&id)?;
    let engine = s.live.get();
    let sessions = s.clone();
    let view = blocking(move || {
        if georef.is_none() {
            return Err(Error::BadRequest(
                "the scene has no georeference: its mask cannot label patches (download it instead)".into(),
            ));
        }
        let (scene, window) = {
            let open = sessions.open.lock().expect("sessions lock");
            let e = open
                .get(&id)
                .ok_or_else(|| Error::NotFound(format!("no session {id}")))?;
            (e.scene.clone(), e.window)
        };
        let s = session.lock().expect("session lock");
        let geojson = polygons(&s, georef.as_ref())?;
        let n = geojson["features"].as_array().map_or(0, Vec::len);
        // Each patch of the window whose centre pixel has a class gets that class's label (a
        // lookup in the mask, not a polygon test: masks have polygons of many vertices).
        let (w, labels) = (s.info().width, s.labels());
        let mut features = Vec::new();
        for r in engine.index().records().iter().filter(|r| r.scene == scene) {
            let (cx, cy) = (r.window.x + r.window.width / 2, r.window.y + r.window.height / 2);
            let inside = (window.x..window.x + window.width).contains(&cx)
                && (window.y..window.y + window.height).contains(&cy);
            if !inside {
                continue;
            }
            let v = labels[((cy - window.y) * w + (cx - window.x)) as usize];
            if let Some(c) = s.classes().get(usize::from(v)) {
                features.push(serde_json::json!({"type": "Feature", "geometry": null,
                    "properties": {"patch_id": r.id.to_string(), "class": c.name, "positive": true}}));
            }
        }
        drop(s);
        let mut labelled = 0;
        if !features.is_empty() {
            let fc = serde_json::json!({"type": "FeatureCollection", "features": features});
            let report = nadir_query::labels::import_geojson(&engine, &fc, "segmented", true)
                .map_err(|e| Error::BadRequest(e.to_string()))?;
            labelled = report.added;
        }
        Ok(AcceptView {
            polygons: n,
            labelled,
            geojson,
        })
    })
    .await?;
    Ok(Json(view))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        create,
        show,
        close,
        add_class,
        add_input,
        undo,
        redo,
        clear,
        mask_png,
        mask_tif,
        mask_geojson,
        accept
    ),
    components(schemas(
        CreateSession,
        ClassIn,
        InputIn,
        InputKind,
        SessionView,
        UpdateView,
        AcceptView
    ))
)]
pub(crate) struct SessionsDoc;

/// The routes, over the engine's scenes.
pub(crate) fn routes(live: Arc<nadir_query::LiveEngine>) -> Router {
    Router::new()
        .route("/api/segment/sessions", post(create))
        .route("/api/segment/sessions/{id}", get(show).delete(close))
        .route("/api/segment/sessions/{id}/classes", post(add_class))
        .route("/api/segment/sessions/{id}/inputs", post(add_input))
        .route("/api/segment/sessions/{id}/undo", post(undo))
        .route("/api/segment/sessions/{id}/redo", post(redo))
        .route("/api/segment/sessions/{id}/clear", post(clear))
        .route("/api/segment/sessions/{id}/mask.png", get(mask_png))
        .route("/api/segment/sessions/{id}/mask.tif", get(mask_tif))
        .route("/api/segment/sessions/{id}/mask.geojson", get(mask_geojson))
        .route("/api/segment/sessions/{id}/accept", post(accept))
        .with_state(Sessions::new(live))
}
