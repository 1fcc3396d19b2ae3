//! `nadir bench index`: indexing throughput on one scene, the whole pipeline against the model
//! alone on the same patches, with the pipeline's time split by stage.

use std::path::Path;
use std::time::{Duration, Instant};

use nadir_clip::image::RgbImage;
use nadir_clip::Encoder;

use crate::error::Result;
use crate::pipeline::{add, AddOptions, Timings};
use crate::raster::Scene;

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct IndexBench {
    pub patches: usize,
    /// The whole `add` run: read, embed, annotate, write, graph and text index.
    pub pipeline: Duration,
    pub timings: Timings,
    /// The image tower alone over the same patches (already read), same batch size.
    pub model_only: Duration,
}

/// Indexes `scene` into a temporary folder, then times the model alone on its patches.
pub fn bench_index(encoder: &dyn Encoder, scene: &Path, opts: &AddOptions) -> Result<IndexBench> {
    let dir = std::env::temp_dir().join(format!("nadir-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let report = add(&dir, encoder, &[scene.to_path_buf()], opts);
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    if let Some((path, why)) = report.failed.first() {
        return Err(crate::Error::input(path, why.clone()));
    }
    let tiling = opts
        .tiling
        .clone()
        .unwrap_or_else(|| crate::Tiling::for_encoder(encoder));
    let opened = Scene::open(scene, &opts.raster.clone().unwrap_or_default())?;
    let (w, h) = opened.size();
    let pixel = opened.georef().map(|g| g.pixel_size_m(w, h)).transpose()?;
    let mut images: Vec<RgbImage> = Vec::new();
    for win in tiling.windows(w, h, pixel) {
        if let Some(img) = opened.read_window(win, tiling.out)? {
            images.push(img);
        }
    }
    let start = Instant::now();
    for chunk in images.chunks(opts.batch.max(1)) {
        encoder.embed_images(chunk)?;
    }
    Ok(IndexBench {
        patches: report.patches,
        pipeline: report.elapsed,
        timings: report.timings,
        model_only: start.elapsed(),
    })
}
