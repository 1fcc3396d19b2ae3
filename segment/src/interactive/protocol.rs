//! The interactive benchmark's protocol (`nadir bench interactive`): for every labelled image and
//! every class present in it (one binary target each), a fresh head and the simulated analyst of
//! [`super::annotator`] clicking up to N times; IoU after each click, the clicks needed to reach
//! 80/85/90 % IoU (NoC, N when never reached), and the time of each update.

use std::time::Instant;

use image::RgbImage;
use nadir_indexer::raster::{Scene, Window};
use serde::Serialize;

use super::annotator::{binary_iou, next_click};
use super::{Input, Session, SessionOptions};
use crate::config::{ClassInfo, ClassList, IGNORE};
use crate::dataset::open_scene;
use crate::encoder::FrozenEncoder;
use crate::error::Result;
use crate::eval::EvalImage;
use crate::model::Segmenter;
use crate::sam::MobileSam;
use std::sync::Arc;

/// How to run the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolOptions {
    /// Clicks per target.
    pub clicks: usize,
    /// Classes covering fewer labelled pixels of an image are not a target there.
    pub min_target_pixels: u64,
    /// Only these classes are targets (None: every class).
    pub targets: Option<Vec<String>>,
    pub session: SessionOptions,
    /// Write each target's masks here (PNG after 1, 5 and the last click: white target, grey
    /// truth, black none), to look at.
    pub dump: Option<std::path::PathBuf>,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        Self {
            clicks: 20,
            min_target_pixels: 100,
            targets: None,
            session: SessionOptions::default(),
            dump: None,
        }
    }
}

/// One target: a class in an image, and its IoU before any click (`iou[0]`) and after each.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRun {
    pub image: String,
    pub class: String,
    pub pixels: u64,
    pub iou: Vec<f64>,
    /// Milliseconds of each update (fit, predict, refine).
    pub update_ms: Vec<f64>,
    pub positive_clicks: usize,
}

impl TargetRun {
    /// Clicks needed to reach `threshold` IoU; the click budget when never reached.
    pub fn noc(&self, threshold: f64) -> usize {
        (1..self.iou.len())
            .find(|&k| self.iou[k] >= threshold)
            .unwrap_or(self.iou.len() - 1)
    }
}

/// One image: how long its features took, and what the session held.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRun {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub features_ms: f64,
    pub memory_bytes: usize,
}

/// Everything the protocol measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolReport {
    pub targets: Vec<TargetRun>,
    pub images: Vec<ImageRun>,
}

/// Mean IoU after each of these click counts in summaries.
pub const REPORTED_CLICKS: [usize; 6] = [0, 1, 3, 5, 10, 20];

impl ProtocolReport {
    /// Mean IoU over targets after `k` clicks (the last value for shorter runs).
    pub fn mean_iou(&self, k: usize, class: Option<&str>) -> f64 {
        let runs: Vec<&TargetRun> = self
            .targets
            .iter()
            .filter(|t| class.is_none_or(|c| t.class == c))
            .collect();
        if runs.is_empty() {
            return f64::NAN;
        }
        runs.iter().map(|t| t.iou[k.min(t.iou.len() - 1)]).sum::<f64>() / runs.len() as f64
    }

    /// Mean NoC at `threshold` over targets.
    pub fn mean_noc(&self, threshold: f64, class: Option<&str>) -> f64 {
        let runs: Vec<&TargetRun> = self
            .targets
            .iter()
            .filter(|t| class.is_none_or(|c| t.class == c))
            .collect();
        runs.iter().map(|t| t.noc(threshold) as f64).sum::<f64>() / runs.len().max(1) as f64
    }

    /// The `q` quantile (0..1) of update times over all clicks.
    pub fn update_ms_quantile(&self, q: f64) -> f64 {
        let mut all: Vec<f64> = self
            .targets
            .iter()
            .flat_map(|t| t.update_ms.iter().copied())
            .collect();
        if all.is_empty() {
            return f64::NAN;
        }
        all.sort_by(f64::total_cmp);
        all[((all.len() - 1) as f64 * q).round() as usize]
    }

    /// The classes that were targets, in first-seen order.
    pub fn classes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.targets {
            if !out.contains(&t.class) {
                out.push(t.class.clone());
            }
        }
        out
    }
}

/// Reads `win` of `scene` at full resolution as 8-bit RGB (512 px blocks; empty blocks black).
pub fn read_rgb(scene: &Scene, win: Window) -> Result<RgbImage> {
    const BLOCK: u32 = 512;
    let mut out = RgbImage::new(win.width, win.height);
    for by in (0..win.height).step_by(BLOCK as usize) {
        for bx in (0..win.width).step_by(BLOCK as usize) {
            let (bw, bh) = (BLOCK.min(win.width - bx), BLOCK.min(win.height - by));
            let side = bw.max(bh);
            let block = Window {
                x: win.x + bx,
                y: win.y + by,
                width: side,
                height: side,
            };
            if let Some(img) = scene.read_window(block, side)? {
                for y in 0..bh {
                    for x in 0..bw {
                        out.put_pixel(bx + x, by + y, *img.get_pixel(x, y));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Runs the protocol over `images` labelled with `classes`; with a `prior` model, each target's
/// head starts from its prediction for the class of the same name; with `sam`, MobileSAM makes
/// the masks instead of the probe. `progress` is told
/// (targets done, message) after each target.
pub fn run(
    encoder: &FrozenEncoder,
    prior: Option<&Segmenter>,
    sam: Option<&Arc<MobileSam>>,
    images: &[EvalImage],
    classes: &ClassList,
    opts: &ProtocolOptions,
    mut progress: impl FnMut(usize, &str),
) -> Result<ProtocolReport> {
    let mut report = ProtocolReport {
        targets: Vec::new(),
        images: Vec::new(),
    };
    for item in images {
        let scene = match prior {
            Some(m) => crate::predict::open_for(m, &item.image)?,
            None => open_scene(&item.image, None, None)?,
        };
        let (sw, sh) = scene.size();
        let win = item.region.unwrap_or(Window {
            x: 0,
            y: 0,
            width: sw,
            height: sh,
        });
        let image = read_rgb(&scene, win)?;
        let truth: Vec<u8> = (0..win.height)
            .flat_map(|y| {
                let row = ((win.y + y) * sw + win.x) as usize;
                item.mask[row..row + win.width as usize].iter().copied()
            })
            .collect();
        let name = item.image.display().to_string();
        let mut session = match sam {
            Some(m) => Session::new_sam(m.clone(), image, Vec::new(), opts.session.clone())?,
            None => Session::new(encoder, image, Vec::new(), prior, opts.session.clone())?,
        };
        report.images.push(ImageRun {
            image: name.clone(),
            width: win.width,
            height: win.height,
            features_ms: session.info().features_ms,
            memory_bytes: session.info().memory_bytes,
        });
        let (w, h) = (win.width as usize, win.height as usize);
        for (ci, class) in classes.classes.iter().enumerate() {
            if opts.targets.as_ref().is_some_and(|t| !t.contains(&class.name)) {
                continue;
            }
            let c = ci as u8;
            let pixels = truth.iter().filter(|&&t| t == c).count() as u64;
            if pixels < opts.min_target_pixels {
                continue;
            }
            let t0 = Instant::now();
            session.reset(vec![ClassInfo {
                name: class.name.clone(),
                color: class.color,
            }])?;
            let as_truth = |labels: &[u8]| -> Vec<u8> {
                labels.iter().map(|&l| if l == 0 { c } else { IGNORE }).collect()
            };
            let mut run = TargetRun {
                image: name.clone(),
                class: class.name.clone(),
                pixels,
                iou: vec![binary_iou(&truth, &as_truth(session.labels()), c)],
                update_ms: Vec::new(),
                positive_clicks: 0,
            };
            for _ in 0..opts.clicks {
                let pred = as_truth(session.labels());
                let Some((x, y, positive)) = next_click(&truth, &pred, c, w, h) else {
                    // Perfect: every later click would change nothing.
                    let last = *run.iou.last().expect("one entry");
                    run.iou.push(last);
                    continue;
                };
                run.positive_clicks += usize::from(positive);
                let up = session.add(Input::Point {
                    x,
                    y,
                    class: 0,
                    positive,
                })?;
                run.update_ms.push(up.total_ms);
                run.iou.push(binary_iou(&truth, &as_truth(session.labels()), c));
                let k = run.iou.len() - 1;
                if let Some(dir) = opts
                    .dump
                    .as_ref()
                    .filter(|_| k == 1 || k == 5 || k == opts.clicks)
                {
                    let file = dir.join(format!(
                        "{}-{}-{k}.png",
                        short(&name).replace('/', "-"),
                        class.name
                    ));
                    let img = image::GrayImage::from_fn(win.width, win.height, |x, y| {
                        let i = (y * win.width + x) as usize;
                        image::Luma([if session.labels()[i] == 0 {
                            255
                        } else if truth[i] == c {
                            110
                        } else {
                            0
                        }])
                    });
                    img.save(&file)
                        .map_err(|e| crate::Error::Invalid(format!("{}: {e}", file.display())))?;
                }
            }
            tracing::info!(image = %name, class = %class.name, iou = ?run.iou.last(), seconds = t0.elapsed().as_secs_f64(), "target done");
            report.targets.push(run);
            progress(
                report.targets.len(),
                &format!("{} / {}", short(&name), class.name),
            );
        }
    }
    Ok(report)
}

fn short(path: &str) -> String {
    let p = std::path::Path::new(path);
    let parent = p.parent().and_then(|q| q.parent()).and_then(|q| q.file_name());
    match (parent, p.file_name()) {
        (Some(a), Some(b)) => format!("{}/{}", a.to_string_lossy(), b.to_string_lossy()),
        _ => path.to_string(),
    }
}
