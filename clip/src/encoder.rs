//! The encoder API the rest of Nadir uses: images and texts in, L2-normalised vectors out, and a
//! model id that an index records.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::checkpoint::{clip_ignored, load_strict, Checkpoint};
use crate::config::{Activation, ClipConfig};
use crate::error::{Error, Result};
use crate::hub::KnownModel;
use crate::model::Clip;
use crate::preprocess::Preprocessor;
use crate::tokenizer::ClipTokenizer;

/// What identifies the model that made a vector: vectors from different models never mix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelId {
    /// A readable name (`remoteclip-vit-b-32`, or the weights' file name).
    pub name: String,
    /// sha256 of the weights file, hex.
    pub sha256: String,
}

impl ModelId {
    /// Fails unless `other` is the same model (same name and weights checksum). Vectors of two
    /// models live in unrelated spaces: comparing them returns confident nonsense.
    pub fn ensure_same(&self, other: &ModelId) -> Result<()> {
        if self == other {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "model mismatch: the index was built with `{}` (sha256 {}), but the query is encoded with `{}` \
             (sha256 {}); use the index's model (`--model {}`)",
            self.name,
            short(&self.sha256),
            other.name,
            short(&other.sha256),
            self.name
        )))
    }
}

fn short(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

/// Something that embeds images and texts into one space.
pub trait Encoder: Send + Sync {
    /// The id to record next to the vectors this encoder makes.
    fn model_id(&self) -> Result<ModelId>;
    /// The embedding dimension.
    fn dim(&self) -> usize;
    /// The square input side in pixels (a patch of this size is not resized).
    fn input_size(&self) -> u32;

    /// The ground side in metres of the views the model was trained on, when it says: the
    /// default window of georeferenced scenes, so that a patch shows what the model learnt to
    /// describe whatever the scene's resolution.
    fn ground_size_m(&self) -> Option<f64> {
        None
    }

    /// One L2-normalised vector per image.
    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>>;
    /// One L2-normalised vector per text.
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// Where to get a CLIP model and how to configure it.
#[derive(Debug, Clone, Default)]
pub struct ClipSpec {
    /// A weights file, or a known model name (see [`crate::hub::KNOWN_MODELS`]).
    pub model: String,
    /// A config file (open_clip or Hugging Face JSON) that overrides the one found next to the
    /// weights.
    pub config: Option<PathBuf>,
    /// Overrides the configured activation.
    pub activation: Option<Activation>,
}

/// A CLIP ViT encoder (RemoteCLIP, OpenAI CLIP, any open_clip ViT) on the CPU.
#[derive(Debug)]
pub struct ClipEncoder {
    model: Clip,
    config: ClipConfig,
    tokenizer: ClipTokenizer,
    preprocessor: Preprocessor,
    weights: PathBuf,
    name: String,
    sha256: OnceLock<String>,
    device: Device,
    /// Images or texts per forward pass.
    pub batch_size: usize,
}

impl ClipEncoder {
    /// Loads a model by path or name.
    pub fn load(spec: &ClipSpec) -> Result<Self> {
        let as_path = Path::new(&spec.model);
        let (weights, known) = if as_path.exists() {
            (as_path.to_path_buf(), None)
        } else if let Some(known) = KnownModel::find(&spec.model) {
            (known.resolve()?, Some(known))
        } else {
            let names: Vec<_> = crate::hub::KNOWN_MODELS.iter().map(|m| m.name).collect();
            return Err(Error::ModelNotFound(format!(
                "`{}` is neither a file nor a known model name ({})",
                spec.model,
                names.join(", ")
            )));
        };
        let checkpoint = Checkpoint::load(&weights)?;
        let mut config = match (&spec.config, find_config_file(&weights), known) {
            (Some(path), _, _) => ClipConfig::from_file(path)?,
            (None, Some(path), _) => ClipConfig::from_file(&path)?,
            (None, None, Some(known)) => (known.preset)(),
            (None, None, None) => checkpoint.infer_config()?,
        };
        if let Some(act) = spec.activation {
            config.activation = act;
        }
        Self::from_checkpoint(
            checkpoint,
            config,
            known.map_or_else(|| file_name(&weights), |k| k.name.to_string()),
        )
    }

    /// Builds the encoder from a loaded checkpoint and a config; fails on any shape mismatch and on
    /// tensors the model does not use.
    pub fn from_checkpoint(checkpoint: Checkpoint, config: ClipConfig, name: String) -> Result<Self> {
        let device = Device::Cpu;
        let weights = checkpoint.path().to_path_buf();
        let model = load_strict(&weights, checkpoint.into_tensors(), &device, clip_ignored, |vb| {
            Clip::new(vb, &config)
        })?;
        tracing::debug!(?config, weights = %weights.display(), "loaded CLIP model");
        Ok(Self {
            tokenizer: ClipTokenizer::new(config.text.context_length)?,
            preprocessor: Preprocessor::clip(config.vision.image_size as u32),
            model,
            config,
            weights,
            name,
            sha256: OnceLock::new(),
            device,
            batch_size: 16,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The candle model.
    pub fn model(&self) -> &Clip {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The image transform.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// Embeds already preprocessed pixels [B, 3, S, S].
    pub fn embed_pixels(&self, pixels: &Tensor) -> Result<Vec<Vec<f32>>> {
        Ok(self.model.encode_image(pixels)?.to_vec2()?)
    }

    /// Embeds already tokenized rows.
    pub fn embed_tokens(&self, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let t = rows[0].len();
        let flat: Vec<u32> = rows.iter().flatten().copied().collect();
        let tokens = Tensor::from_vec(flat, (rows.len(), t), &self.device)?;
        Ok(self.model.encode_text(&tokens)?.to_vec2()?)
    }
}

impl Encoder for ClipEncoder {
    fn model_id(&self) -> Result<ModelId> {
        if self.sha256.get().is_none() {
            let digest = sha256_file(&self.weights)?;
            let _ = self.sha256.set(digest);
        }
        Ok(ModelId {
            name: self.name.clone(),
            sha256: self.sha256.get().cloned().unwrap_or_default(),
        })
    }

    fn dim(&self) -> usize {
        self.config.embed_dim
    }

    fn input_size(&self) -> u32 {
        self.preprocessor.image_size
    }

    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.batch_size.max(1)) {
            let pixels = self.preprocessor.batch(chunk, &self.device)?;
            out.extend(self.embed_pixels(&pixels.to_dtype(DType::F32)?)?);
        }
        Ok(out)
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size.max(1)) {
            out.extend(self.embed_tokens(&self.tokenizer.tokenize_batch(chunk)?)?);
        }
        Ok(out)
    }
}

/// A config file next to the weights: `<stem>.json`, `<stem>.config.json`,
/// `open_clip_config.json` or `config.json`.
fn find_config_file(weights: &Path) -> Option<PathBuf> {
    let dir = weights.parent()?;
    let stem = weights.file_stem()?.to_string_lossy();
    [
        format!("{stem}.json"),
        format!("{stem}.config.json"),
        "open_clip_config.json".to_string(),
        "config.json".to_string(),
    ]
    .into_iter()
    .map(|name| dir.join(name))
    .find(|p| p.is_file())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_mismatch_names_both_models() {
        let a = ModelId {
            name: "nadir-lite".into(),
            sha256: "a".repeat(64),
        };
        let b = ModelId {
            name: "remoteclip-vit-b-32".into(),
            sha256: "b".repeat(64),
        };
        assert!(a.ensure_same(&a.clone()).is_ok());
        let err = a.ensure_same(&b).unwrap_err().to_string();
        assert!(
            err.contains("nadir-lite") && err.contains("remoteclip-vit-b-32"),
            "{err}"
        );
        let same_name = ModelId {
            sha256: "c".repeat(64),
            ..a.clone()
        };
        assert!(a.ensure_same(&same_name).is_err(), "same name, other weights");
    }
}
