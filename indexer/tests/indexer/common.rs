//! Shared test helpers: the real data folder, the tiny CLIP model, small indexing runs.

use std::path::{Path, PathBuf};

use nadir_clip::{ClipEncoder, ClipSpec};
use nadir_indexer::{AddOptions, Edge, Tiling};

/// `../shared/data`, or `None` (with a message) when absent.
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"));
    if p.is_dir() {
        Some(p.to_path_buf())
    } else {
        eprintln!("skipped: ../shared/data is absent (the real scenes live there)");
        None
    }
}

/// The tiny random-weight CLIP of the clip crate's fixtures: 64 px input, 32-d. Fast, and a real
/// encoder through the same code path as any CLIP checkpoint.
pub fn tiny_model() -> ClipEncoder {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../clip/tests/fixtures/tiny-quickgelu.safetensors"
    );
    ClipEncoder::load(&ClipSpec {
        model: path.into(),
        ..Default::default()
    })
    .expect("tiny model loads")
}

/// Options for quick runs: windows of `patch` source pixels resampled to 64.
pub fn quick(patch: u32) -> AddOptions {
    AddOptions {
        tiling: Some(Tiling {
            patch,
            stride: 1.0,
            ground_size_m: None,
            edge: Edge::Shift,
            out: 64,
        }),
        progress: false,
        ..Default::default()
    }
}
