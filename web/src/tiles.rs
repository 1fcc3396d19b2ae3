//! Map tiles rendered from the source rasters: for a web-mercator tile, every indexed scene whose
//! footprint meets it is read through GDAL (the indexer's [`Scene`]: same bands and stretch as the
//! thumbnails) and sampled, nearest neighbour, at each tile pixel. Where no scene has data (outside
//! the rasters, or not valid by [`Masks`]) the tile is transparent.
//!
//! Tile pixels map to source pixels through a 9 x 9 grid of exact transformations
//! ([`Georef::lonlat_to_pixel`]) laid over the part of the tile the scene covers, bilinear in
//! between (as GDAL's approximate warper does): accurate at every zoom, since the grid shrinks
//! with the scene. Opened scenes (GDAL datasets are not `Sync`: each behind a mutex) and encoded
//! tiles are kept in LRU caches.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use geo::BoundingRect;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, Rgba, RgbaImage};
use nadir_indexer::raster::{RasterOptions, Scene, Window};
use nadir_indexer::Index;

use crate::cache::Lru;
use crate::error::Result;
use crate::mask::Masks;
use crate::mercator::{TileId, TILE_SIZE};

/// Encoded tiles kept in memory (at most about 200 kB each: 50 MB).
const TILE_CACHE: usize = 256;
/// Scenes kept open.
const SCENE_CACHE: usize = 32;
/// Grid cells per side of the transformation grid.
const GRID: usize = 8;
/// Longest side of a source read.
const MAX_READ: f64 = 512.0;

/// A scene the renderer may draw: its file and a lon/lat box that contains its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneSource {
    pub id: String,
    pub path: PathBuf,
    /// `[west, south, east, north]`.
    pub bbox: [f64; 4],
}

impl SceneSource {
    fn meets(&self, b: &[f64; 4]) -> bool {
        self.bbox[0] <= b[2] && b[0] <= self.bbox[2] && self.bbox[1] <= b[3] && b[1] <= self.bbox[3]
    }
}

/// An opened scene and its masks.
#[derive(Debug)]
struct Source {
    scene: Scene,
    masks: Option<Masks>,
}

/// An opened scene, or None when it could not be opened (logged once).
type Slot = Arc<OnceLock<Option<Mutex<Source>>>>;

/// Renders and caches tiles over a set of scenes.
pub struct TileRenderer {
    scenes: Vec<SceneSource>,
    options: RasterOptions,
    open: Mutex<Lru<String, Slot>>,
    tiles: Mutex<Lru<TileId, Bytes>>,
}

impl std::fmt::Debug for TileRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileRenderer")
            .field("scenes", &self.scenes.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TileRenderer {
    /// A renderer over `scenes`, read with `options` (their nodata limit is ignored: a tile shows
    /// whatever pixels exist).
    pub fn new(scenes: Vec<SceneSource>, options: RasterOptions) -> Self {
        TileRenderer {
            scenes,
            options: RasterOptions {
                max_nodata: 1.0,
                ..options
            },
            open: Mutex::new(Lru::new(SCENE_CACHE)),
            tiles: Mutex::new(Lru::new(TILE_CACHE)),
        }
    }

    /// A renderer over the georeferenced scenes of an index, read as the index read them. A
    /// scene's box is that of its patches' footprints, grown by a tenth on each side (windows
    /// skipped as nodata may leave pixels at its edges).
    pub fn from_index(index: &Index) -> Self {
        let mut boxes: Vec<(String, [f64; 4])> = Vec::new();
        let mut place: HashMap<&str, usize> = HashMap::new();
        for r in index.records() {
            let Some(rect) = r.footprint.as_ref().and_then(|f| f.bounding_rect()) else {
                continue;
            };
            let b = [rect.min().x, rect.min().y, rect.max().x, rect.max().y];
            let i = *place.entry(r.scene.as_str()).or_insert_with(|| {
                boxes.push((r.scene.clone(), b));
                boxes.len() - 1
            });
            let acc = &mut boxes[i].1;
            *acc = [
                acc[0].min(b[0]),
                acc[1].min(b[1]),
                acc[2].max(b[2]),
                acc[3].max(b[3]),
            ];
        }
        let manifest = index.manifest();
        let scenes = boxes
            .into_iter()
            .filter_map(|(id, b)| {
                let entry = manifest.scene(&id)?;
                let (mx, my) = ((b[2] - b[0]) / 10.0, (b[3] - b[1]) / 10.0);
                Some(SceneSource {
                    path: entry.path.clone(),
                    id,
                    bbox: [b[0] - mx, b[1] - my, b[2] + mx, b[3] + my],
                })
            })
            .collect();
        Self::new(scenes, manifest.raster.clone())
    }

    /// A renderer over raster files, each opened once for its exact footprint; files without
    /// georeference are left out.
    pub fn from_paths(paths: &[PathBuf], options: RasterOptions) -> Result<Self> {
        let mut scenes = Vec::new();
        for path in paths {
            let scene = Scene::open(path, &options)?;
            let Some(g) = scene.georef() else { continue };
            let (w, h) = scene.size();
            let Some(rect) = g.footprint(&Window::new(0, 0, w, h))?.bounding_rect() else {
                continue;
            };
            scenes.push(SceneSource {
                id: path.display().to_string(),
                path: path.clone(),
                bbox: [rect.min().x, rect.min().y, rect.max().x, rect.max().y],
            });
        }
        Ok(Self::new(scenes, options))
    }

    /// The scenes drawn, in drawing order (later ones on top).
    pub fn scenes(&self) -> &[SceneSource] {
        &self.scenes
    }

    /// The tile as a PNG (cached). A tile without data is the fully transparent tile.
    pub fn png(&self, tile: TileId) -> Result<Bytes> {
        if let Some(hit) = self.tiles.lock().expect("tile cache").get(&tile) {
            return Ok(hit);
        }
        let png = match self.render(tile)? {
            Some(img) => Bytes::from(encode(&img)?),
            None => empty_png()?,
        };
        self.tiles.lock().expect("tile cache").insert(tile, png.clone());
        Ok(png)
    }

    /// Renders a tile; None when no scene has a pixel in it.
    pub fn render(&self, tile: TileId) -> Result<Option<RgbaImage>> {
        let bounds = tile.bounds();
        let mut out = RgbaImage::new(TILE_SIZE, TILE_SIZE);
        let mut drawn = false;
        for src in self.scenes.iter().filter(|s| s.meets(&bounds)) {
            let slot = self.slot(src);
            let Some(source) = slot.as_ref().get().and_then(Option::as_ref) else {
                continue;
            };
            let source = source.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            drawn |= draw(&source, tile, &src.bbox, &mut out)?;
        }
        Ok(drawn.then_some(out))
    }

    /// The opened scene of `src`, opening it on first use.
    fn slot(&self, src: &SceneSource) -> Slot {
        let slot = {
            let mut open = self.open.lock().expect("scene cache");
            open.get(&src.id).unwrap_or_else(|| {
                let slot = Slot::default();
                open.insert(src.id.clone(), slot.clone());
                slot
            })
        };
        slot.get_or_init(|| match Scene::open(&src.path, &self.options) {
            Ok(scene) => {
                let masks = Masks::open(&src.path, &self.options)
                    .map_err(
                        |e| tracing::warn!(error = %e, "cannot read a scene's masks; drawn as all valid"),
                    )
                    .ok();
                Some(Mutex::new(Source { scene, masks }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a scene for tiles; it is left out");
                None
            }
        });
        slot
    }
}

/// Draws the valid pixels of `source` inside `bbox` onto `out`; whether any was drawn.
fn draw(source: &Source, tile: TileId, bbox: &[f64; 4], out: &mut RgbaImage) -> Result<bool> {
    let scene = &source.scene;
    let Some(georef) = scene.georef() else {
        return Ok(false);
    };
    let size = f64::from(TILE_SIZE);
    // The tile pixels the scene's box covers.
    let (x0, y0) = tile.pixel(bbox[0], bbox[3]);
    let (x1, y1) = tile.pixel(bbox[2], bbox[1]);
    let (x0, y0, x1, y1) = (
        x0.floor().max(0.0),
        y0.floor().max(0.0),
        x1.ceil().min(size),
        y1.ceil().min(size),
    );
    if x0 >= x1 || y0 >= y1 {
        return Ok(false);
    }
    let step = ((x1 - x0) / GRID as f64, (y1 - y0) / GRID as f64);
    let grid: Vec<Option<(f64, f64)>> = (0..=GRID)
        .flat_map(|j| (0..=GRID).map(move |i| (i, j)))
        .map(|(i, j)| {
            let (lon, lat) = tile.lonlat(x0 + i as f64 * step.0, y0 + j as f64 * step.1);
            georef.lonlat_to_pixel(lon, lat).ok()
        })
        .collect();
    // The source pixels they map to, within the raster.
    let (w, h) = scene.size();
    let (w, h) = (f64::from(w), f64::from(h));
    let (mut sx0, mut sy0, mut sx1, mut sy1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for &(sx, sy) in grid.iter().flatten() {
        (sx0, sy0, sx1, sy1) = (sx0.min(sx), sy0.min(sy), sx1.max(sx), sy1.max(sy));
    }
    let (sx0, sy0) = (sx0.floor().max(0.0), sy0.floor().max(0.0));
    let (sx1, sy1) = (sx1.ceil().min(w), sy1.ceil().min(h));
    if sx0 >= sx1 || sy0 >= sy1 {
        return Ok(false);
    }
    let (bw, bh) = (sx1 - sx0, sy1 - sy0);
    // Read at most twice the tile pixels covered: averaged down when zoomed out, native when in.
    let n = bw
        .max(bh)
        .min(2.0 * (x1 - x0).max(y1 - y0))
        .clamp(2.0, MAX_READ)
        .round();
    let win = Window::new(sx0 as u32, sy0 as u32, bw as u32, bh as u32);
    let Some(img) = scene.read_window(win, n as u32)? else {
        return Ok(false);
    };
    let valid = match &source.masks {
        Some(m) => m.valid(win, n as u32)?,
        None => None,
    };
    let black_is_nodata = source.masks.as_ref().is_some_and(Masks::black_is_nodata);
    let last = n - 1.0;
    let mut drawn = false;
    for py in y0 as u32..y1 as u32 {
        for px in x0 as u32..x1 as u32 {
            let gx = (f64::from(px) + 0.5 - x0) / step.0;
            let gy = (f64::from(py) + 0.5 - y0) / step.1;
            let (i, j) = ((gx as usize).min(GRID - 1), (gy as usize).min(GRID - 1));
            let (fx, fy) = (gx - i as f64, gy - j as f64);
            let at = |di: usize, dj: usize| grid[(j + dj) * (GRID + 1) + i + di];
            let (Some(a), Some(b), Some(c), Some(d)) = (at(0, 0), at(1, 0), at(0, 1), at(1, 1)) else {
                continue;
            };
            let lerp = |p: f64, q: f64, t: f64| p + (q - p) * t;
            let sx = lerp(lerp(a.0, b.0, fx), lerp(c.0, d.0, fx), fy);
            let sy = lerp(lerp(a.1, b.1, fx), lerp(c.1, d.1, fx), fy);
            if !(0.0..w).contains(&sx) || !(0.0..h).contains(&sy) {
                continue;
            }
            let ix = ((sx - sx0) / bw * n).floor().clamp(0.0, last) as u32;
            let iy = ((sy - sy0) / bh * n).floor().clamp(0.0, last) as u32;
            if valid.as_ref().is_some_and(|v| !v[(iy * n as u32 + ix) as usize]) {
                continue;
            }
            let p = img.get_pixel(ix, iy);
            if black_is_nodata && p.0 == [0, 0, 0] {
                continue;
            }
            out.put_pixel(px, py, Rgba([p[0], p[1], p[2], 255]));
            drawn = true;
        }
    }
    Ok(drawn)
}

fn encode(img: &RgbaImage) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    PngEncoder::new_with_quality(&mut buf, CompressionType::Fast, FilterType::Adaptive).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgba8,
    )?;
    Ok(buf)
}

/// The fully transparent tile.
pub fn empty_png() -> Result<Bytes> {
    static EMPTY: OnceLock<Bytes> = OnceLock::new();
    if let Some(b) = EMPTY.get() {
        return Ok(b.clone());
    }
    let png = Bytes::from(encode(&RgbaImage::new(TILE_SIZE, TILE_SIZE))?);
    Ok(EMPTY.get_or_init(|| png).clone())
}
