//! Tiling: which pixel windows of a scene become patches. A window is `patch` source pixels wide
//! (or covers `ground_size_m` metres, when set, whatever the scene's resolution), windows start
//! every `stride` pixels, and each is resampled to the model's input size.
//!
//! Edges: `shift` (default) moves the last window of a row or column inward so that it ends at
//! the edge; `drop` leaves the remainder out; `pad` keeps a partial window, its outside filled as
//! nodata. A scene smaller than one window on a side is one window: its centred square. So is a
//! plain photo (no georeference) smaller than two windows on both sides: such images are chips
//! already (UC Merced's 256 px scenes), and tiling them would index four near-copies.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::raster::Window;

/// What to do with the remainder at the right and bottom edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Edge {
    #[default]
    Shift,
    Drop,
    Pad,
}

impl std::str::FromStr for Edge {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "shift" => Ok(Edge::Shift),
            "drop" => Ok(Edge::Drop),
            "pad" => Ok(Edge::Pad),
            _ => Err(format!("unknown edge mode {s:?}: use shift, drop or pad")),
        }
    }
}

/// The tiling parameters of an index (fixed when it is created).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tiling {
    /// Window side in source pixels (ignored when `ground_size_m` is set).
    pub patch: u32,
    /// Step between windows as a share of the window side (1.0: no overlap, 0.5: half overlap).
    pub stride: f64,
    /// Window side on the ground in metres: each patch covers the same area whatever the GSD.
    pub ground_size_m: Option<f64>,
    pub edge: Edge,
    /// Side of the image each window is resampled to (the model's input size).
    pub out: u32,
}

impl Tiling {
    /// Tiling for a model with input side `out`: windows of `out` pixels, no overlap.
    pub fn for_input(out: u32) -> Self {
        Tiling {
            patch: out,
            stride: 1.0,
            ground_size_m: None,
            edge: Edge::Shift,
            out,
        }
    }

    /// The default tiling for `encoder`: windows of its input size, no overlap, and on
    /// georeferenced scenes windows of the ground size it was trained at, when it says.
    pub fn for_encoder(encoder: &dyn nadir_clip::Encoder) -> Self {
        Tiling {
            ground_size_m: encoder.ground_size_m(),
            ..Tiling::for_input(encoder.input_size())
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if self.patch < 2 || self.out < 2 {
            return Err(Error::Invalid(format!("patch size {} is too small", self.patch)));
        }
        if !(self.stride > 0.0 && self.stride <= 4.0) {
            return Err(Error::Invalid(format!(
                "stride {} must be in (0, 4] window sides",
                self.stride
            )));
        }
        if let Some(g) = self.ground_size_m {
            if !(g.is_finite() && g > 0.0) {
                return Err(Error::Invalid(format!("ground size {g} m must be positive")));
            }
        }
        Ok(())
    }

    /// The window side in source pixels for a scene with this pixel size.
    pub fn window_px(&self, pixel_size_m: Option<f64>) -> u32 {
        match (self.ground_size_m, pixel_size_m) {
            (Some(g), Some(p)) if p > 0.0 => ((g / p).round() as u32).max(2),
            _ => self.patch,
        }
    }

    /// The windows of a `width` x `height` scene, row by row. `pixel_size_m` is `None` for a
    /// scene without georeference.
    pub fn windows(&self, width: u32, height: u32, pixel_size_m: Option<f64>) -> Vec<Window> {
        let side = self.window_px(pixel_size_m);
        let chip = pixel_size_m.is_none() && width < 2 * side && height < 2 * side;
        if chip || width < side || height < side {
            let s = width.min(height);
            return vec![Window {
                x: (width - s) / 2,
                y: (height - s) / 2,
                width: s,
                height: s,
            }];
        }
        let step = ((f64::from(side) * self.stride).round() as u32).max(1);
        let xs = starts(width, side, step, self.edge);
        let ys = starts(height, side, step, self.edge);
        ys.iter()
            .flat_map(|&y| {
                xs.iter().map(move |&x| Window {
                    x,
                    y,
                    width: side,
                    height: side,
                })
            })
            .collect()
    }
}

fn starts(len: u32, side: u32, step: u32, edge: Edge) -> Vec<u32> {
    let mut out: Vec<u32> = (0..).map(|i| i * step).take_while(|&s| s + side <= len).collect();
    let last_end = out.last().map_or(0, |&s| s + side);
    if last_end < len {
        match edge {
            Edge::Shift => out.push(len - side),
            Edge::Pad => out.push(out.last().map_or(0, |&s| s + step)),
            Edge::Drop => {}
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_ends_at_the_edge_and_covers_everything() {
        let t = Tiling::for_input(224);
        let w = t.windows(500, 224, Some(1.0));
        let xs: Vec<u32> = w.iter().map(|w| w.x).collect();
        assert_eq!(xs, vec![0, 224, 276]);
        assert!(w.iter().all(|w| w.x + w.width <= 500 && w.y == 0));
    }

    #[test]
    fn drop_and_pad() {
        let mut t = Tiling::for_input(100);
        t.edge = Edge::Drop;
        assert_eq!(t.windows(250, 100, Some(1.0)).len(), 2);
        t.edge = Edge::Pad;
        let w = t.windows(250, 100, Some(1.0));
        assert_eq!(w.len(), 3);
        assert_eq!(w[2].x, 200);
    }

    #[test]
    fn overlap_and_ground_size() {
        let t = Tiling {
            stride: 0.5,
            ..Tiling::for_input(100)
        };
        assert_eq!(t.windows(300, 100, Some(1.0)).len(), 5);
        let g = Tiling {
            ground_size_m: Some(50.0),
            ..Tiling::for_input(224)
        };
        assert_eq!(g.window_px(Some(0.5)), 100);
        assert_eq!(g.windows(1000, 1000, Some(0.5)).len(), 100);
    }

    #[test]
    fn small_scene_is_its_centred_square() {
        let t = Tiling::for_input(224);
        assert_eq!(
            t.windows(256, 200, None),
            vec![Window {
                x: 28,
                y: 0,
                width: 200,
                height: 200
            }]
        );
        assert_eq!(t.windows(256, 256, None).len(), 1);
        assert_eq!(t.windows(256, 256, Some(0.3)).len(), 4);
    }

    /// A model that records the ground size of its training views.
    struct Trained(Option<f64>);

    impl nadir_clip::Encoder for Trained {
        fn model_id(&self) -> nadir_clip::Result<nadir_clip::ModelId> {
            Ok(nadir_clip::ModelId {
                name: "trained".into(),
                sha256: "0".repeat(64),
            })
        }
        fn dim(&self) -> usize {
            2
        }
        fn input_size(&self) -> u32 {
            224
        }
        fn ground_size_m(&self) -> Option<f64> {
            self.0
        }
        fn embed_images(&self, images: &[image::RgbImage]) -> nadir_clip::Result<Vec<Vec<f32>>> {
            Ok(vec![vec![1.0, 0.0]; images.len()])
        }
        fn embed_texts(&self, texts: &[&str]) -> nadir_clip::Result<Vec<Vec<f32>>> {
            Ok(vec![vec![1.0, 0.0]; texts.len()])
        }
    }

    #[test]
    fn default_windows_follow_the_models_training_ground_size() {
        // 0.1 m drone imagery and a model trained on 80 m views: 800 px windows, resampled to
        // the 224 px input; a chip without georeference keeps the input size.
        let t = Tiling::for_encoder(&Trained(Some(80.0)));
        assert_eq!(
            (t.out, t.window_px(Some(0.1)), t.window_px(None)),
            (224, 800, 224)
        );
        assert_eq!(t.windows(2048, 2048, Some(0.1)).len(), 9);
        let plain = Tiling::for_encoder(&Trained(None));
        assert_eq!(plain.window_px(Some(0.1)), 224);
    }
}
