//! A session run from a file, for scripts and reproduction (`nadir segment`): the inputs come from
//! GeoJSON (points are clicks, lines are scribbles; lon/lat on a georeferenced scene, pixel x, y on
//! a plain image), and the mask goes to a class GeoTIFF and GeoJSON polygons.
//!
//! ```json
//! {"type": "FeatureCollection", "features": [
//!   {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.98, 14.59]},
//!    "properties": {"class": "water", "positive": true}}]}
//! ```

use std::path::{Path, PathBuf};

use nadir_indexer::raster::{Georef, Window};
use serde::Serialize;
use serde_json::Value;

use super::protocol::read_rgb;
use super::{Input, Session, SessionOptions, Update};
use crate::config::ClassInfo;
use crate::dataset::open_scene;
use crate::encoder::FrozenEncoder;
use crate::error::{Error, Result};
use crate::model::Segmenter;

/// The most features an input file may hold.
pub const MAX_INPUT_FEATURES: usize = 10_000;

/// What to segment, from which inputs, into where.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    pub scene: PathBuf,
    /// The part of the scene (None: all of it).
    pub window: Option<Window>,
    pub inputs: PathBuf,
    /// A `nadir finetune` model to start from.
    pub model: Option<PathBuf>,
    /// A MobileSAM checkpoint: SAM makes the masks from the inputs instead of the probe.
    pub sam: Option<PathBuf>,
    pub out: PathBuf,
    pub geojson: Option<PathBuf>,
    /// Regions under this many pixels get no polygon.
    pub min_pixels: usize,
    pub session: SessionOptions,
}

/// What a scripted session did.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptReport {
    pub width: u32,
    pub height: u32,
    pub classes: Vec<String>,
    pub inputs: usize,
    pub features_ms: f64,
    pub update: Update,
    pub polygons: Option<usize>,
}

/// Runs the inputs of `opts.inputs` on the scene and writes the map.
pub fn run(opts: &ScriptOptions) -> Result<ScriptReport> {
    let prior = opts.model.as_deref().map(Segmenter::load).transpose()?;
    let scene = match &prior {
        Some(m) => crate::predict::open_for(m, &opts.scene)?,
        None => open_scene(&opts.scene, None, None)?,
    };
    let (sw, sh) = scene.size();
    let win = opts.window.unwrap_or(Window {
        x: 0,
        y: 0,
        width: sw,
        height: sh,
    });
    if win.width == 0 || win.height == 0 || win.x + win.width > sw || win.y + win.height > sh {
        return Err(Error::input(
            &opts.scene,
            format!("the window {win:?} is not inside the {sw}x{sh} px scene"),
        ));
    }
    let georef = scene.georef().map(|g| g.window(&win)).transpose()?;
    let (classes, inputs) = read_inputs(&opts.inputs, georef.as_ref(), prior.as_ref())?;
    let image = read_rgb(&scene, win)?;
    let encoder = match (&prior, &opts.sam) {
        (None, None) => Some(FrozenEncoder::load(&crate::EncoderSpec::pretrained())?),
        _ => None,
    };
    let fallback;
    let enc = match (&prior, &encoder) {
        (Some(m), _) => m.encoder(),
        (None, Some(e)) => e,
        // A SAM session: no encoder maps are used, a random one stands in.
        (None, None) => {
            fallback = FrozenEncoder::load(&crate::EncoderSpec::RandomLite0 { seed: 0 })?;
            &fallback
        }
    };
    let session = match &opts.sam {
        Some(path) => {
            let sam = std::sync::Arc::new(crate::sam::MobileSam::load(path)?);
            Session::new_sam(sam, image, classes, opts.session.clone())
        }
        None => Session::new(enc, image, classes, prior.as_ref(), opts.session.clone()),
    };
    let mut session = session.map_err(|e| Error::input(&opts.scene, e))?;
    let n = inputs.len();
    for input in inputs {
        session
            .push_input(input)
            .map_err(|e| Error::input(&opts.inputs, e))?;
    }
    let update = session.refresh()?;
    let size = (win.width, win.height);
    crate::predict::write_class_map(
        &opts.out,
        session.labels(),
        size,
        georef.as_ref(),
        session.classes(),
    )?;
    let polygons = match &opts.geojson {
        Some(p) => Some(crate::geojson::write_polygons(
            p,
            session.labels(),
            size,
            georef.as_ref(),
            session.classes(),
            opts.min_pixels,
        )?),
        None => None,
    };
    Ok(ScriptReport {
        width: win.width,
        height: win.height,
        classes: session.classes().iter().map(|c| c.name.clone()).collect(),
        inputs: n,
        features_ms: session.info().features_ms,
        update,
        polygons,
    })
}

/// The classes and inputs of a GeoJSON file: classes in order of first mention (after the
/// model's, when there is a model), coordinates turned into the window's pixels.
pub fn read_inputs(
    path: &Path,
    georef: Option<&Georef>,
    prior: Option<&Segmenter>,
) -> Result<(Vec<ClassInfo>, Vec<Input>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let doc: Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::input(path, format!("not JSON: {e}")))?;
    let features: Vec<&Value> = match doc["type"].as_str() {
        Some("FeatureCollection") => doc["features"]
            .as_array()
            .ok_or_else(|| Error::input(path, "a FeatureCollection without `features`"))?
            .iter()
            .collect(),
        Some("Feature") => vec![&doc],
        _ => {
            return Err(Error::input(
                path,
                "expected a GeoJSON FeatureCollection or Feature",
            ))
        }
    };
    if features.len() > MAX_INPUT_FEATURES {
        return Err(Error::input(
            path,
            format!(
                "{} features, over the limit of {MAX_INPUT_FEATURES}",
                features.len()
            ),
        ));
    }
    let mut classes: Vec<ClassInfo> = prior.map_or_else(Vec::new, |m| m.config().classes.clone());
    let mut inputs = Vec::new();
    for (i, f) in features.iter().enumerate() {
        let bad = |m: String| Error::input(path, format!("feature {i}: {m}"));
        let props = &f["properties"];
        let class = match &props["class"] {
            Value::String(name) => match classes.iter().position(|c| &c.name == name) {
                Some(k) => k,
                None => {
                    classes.push(ClassInfo {
                        name: name.clone(),
                        color: None,
                    });
                    classes.len() - 1
                }
            },
            Value::Number(n) => {
                let k = n
                    .as_u64()
                    .ok_or_else(|| bad(format!("class {n} is not a class index")))?
                    as usize;
                while classes.len() <= k {
                    classes.push(ClassInfo {
                        name: format!("class {}", classes.len()),
                        color: None,
                    });
                }
                k
            }
            _ => return Err(bad("`properties.class` must be a class name or index".into())),
        };
        let positive = match &props["positive"] {
            Value::Null => true,
            Value::Bool(b) => *b,
            other => {
                return Err(bad(format!(
                    "`properties.positive` must be true or false, got {other}"
                )))
            }
        };
        let to_pixel = |c: &Value| -> Result<[f64; 2]> {
            let (a, b) = match c.as_array().map(Vec::as_slice) {
                Some([a, b, ..]) => (a.as_f64(), b.as_f64()),
                _ => (None, None),
            };
            let (Some(a), Some(b)) = (a, b) else {
                return Err(bad(format!("bad coordinates {c}")));
            };
            match georef {
                Some(g) => {
                    let (x, y) = g.lonlat_to_pixel(a, b)?;
                    Ok([x, y])
                }
                None => Ok([a, b]),
            }
        };
        let geom = &f["geometry"];
        match geom["type"].as_str() {
            Some("Point") => {
                let [x, y] = to_pixel(&geom["coordinates"])?;
                inputs.push(Input::Point {
                    x,
                    y,
                    class,
                    positive,
                });
            }
            Some("LineString") => {
                let pts = geom["coordinates"]
                    .as_array()
                    .ok_or_else(|| bad("a LineString without coordinates".into()))?
                    .iter()
                    .map(to_pixel)
                    .collect::<Result<Vec<_>>>()?;
                inputs.push(Input::Scribble {
                    points: pts,
                    class,
                    positive,
                });
            }
            other => {
                return Err(bad(format!(
                    "geometry {other:?}: inputs are Points (clicks) or LineStrings (scribbles)"
                )))
            }
        }
    }
    if inputs.is_empty() {
        return Err(Error::input(path, "no inputs: the file holds no feature"));
    }
    Ok((classes, inputs))
}
