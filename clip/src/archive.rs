//! Whole scene sets embedded with the `nadir-lite` model (every split, one row per image), read
//! through the feature cache: the archives the active-learning benchmark searches.

use std::path::PathBuf;

use candle_core::Module;

use crate::adapter::Adapters;
use crate::error::{Error, Result};
use crate::lite::LiteTowers;
use crate::training::{image_features, DataSet, FeatureCache};

/// The embeddings of every image of some scene sets.
#[derive(Debug, Clone)]
pub struct SceneSetEmbeddings {
    pub dim: usize,
    /// Row-major, `dim` per image, L2-normalised.
    pub vectors: Vec<f32>,
    /// Per image: its data set's name (`ucm`, `rsicd`, `eurosat`).
    pub dataset: Vec<String>,
    /// Per image: its class as the set names it.
    pub class: Vec<String>,
    /// Per image: its file.
    pub image: Vec<PathBuf>,
}

impl SceneSetEmbeddings {
    pub fn len(&self) -> usize {
        self.class.len()
    }

    pub fn is_empty(&self) -> bool {
        self.class.is_empty()
    }
}

/// Embeds every image of `datasets`, split by split (the splits' tower features come from the
/// cache in `cache_dir` when training or `nadir bench retrieval` computed them), then the
/// adapters.
pub fn embed_scene_sets(
    towers: &LiteTowers,
    adapters: &Adapters,
    datasets: &[DataSet],
    cache_dir: &std::path::Path,
) -> Result<SceneSetEmbeddings> {
    let cache = FeatureCache::new(cache_dir, &towers.files_sha256)?;
    let trunk = adapters.config.image_pre.is_some();
    let mut out = SceneSetEmbeddings {
        dim: 0,
        vectors: Vec::new(),
        dataset: Vec::new(),
        class: Vec::new(),
        image: Vec::new(),
    };
    for ds in datasets {
        let (records, _) = ds.read()?;
        if records.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{}: no images",
                ds.root.join("captions.csv").display()
            )));
        }
        let mut splits: Vec<&str> = records.iter().map(|r| r.split.as_str()).collect();
        splits.sort_unstable();
        splits.dedup();
        for split in splits {
            let recs: Vec<_> = records.iter().filter(|r| r.split == split).cloned().collect();
            tracing::info!(
                dataset = ds.name,
                split,
                images = recs.len(),
                "embedding scene set"
            );
            let z = adapters
                .image
                .forward(&image_features(towers, &cache, &recs, 0, 1, trunk)?)?;
            let rows: Vec<Vec<f32>> = z.to_vec2()?;
            for (r, mut v) in recs.iter().zip(rows) {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
                out.dim = v.len();
                out.vectors.extend_from_slice(&v);
                out.dataset.push(ds.name.clone());
                out.class.push(r.class.clone());
                out.image.push(r.image.clone());
            }
        }
    }
    Ok(out)
}
