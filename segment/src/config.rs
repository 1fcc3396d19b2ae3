//! What a segmentation model is: its classes, its encoder, its decoder width, its input chips
//! and pixel normalisation. Serialised as `config.json` in a model folder ([`crate::model`]).

use serde::{Deserialize, Serialize};

/// The label value of an unlabelled pixel: not trained on, not scored, and the nodata value of
/// predicted maps.
pub const IGNORE: u8 = 255;

/// The version of the model folder layout this build writes and reads.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// A linear map (low, high) -> (0, 255) per R, G, B channel; None where 8-bit values are used as
/// they are.
pub type Stretch = [Option<(f64, f64)>; 3];

/// A class the model predicts; its index in [`SegmenterConfig::classes`] is its mask value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub name: String,
    /// The colour of the class in RGB masks, and in predicted maps' colour tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<[u8; 3]>,
}

/// The `classes.json` of a training set: the classes in mask-value order, and for RGB masks the
/// colour of unlabelled pixels.
///
/// ```json
/// {"classes": [{"name": "building", "color": [60, 16, 152]}, {"name": "road"}],
///  "ignore_color": [155, 155, 155]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassList {
    pub classes: Vec<ClassInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_color: Option<[u8; 3]>,
}

/// Which encoder produces the feature maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EncoderSpec {
    /// ImageNet EfficientNet-Lite0, the image tower of `nadir-lite`, identified by the sha256 of
    /// its weights file (loaded from the models folder, see `nadir_clip::lite::models_dir`).
    EfficientnetLite0 { sha256: String },
    /// The same architecture with random weights drawn from `seed` (He-normal convolutions,
    /// identity BatchNorm): the baseline that measures what pretraining brings.
    RandomLite0 { seed: u64 },
    /// The patch tokens of a CLIP ViT's image tower (RemoteCLIP, OpenAI CLIP, any open_clip ViT
    /// checkpoint `nadir_clip` loads), one map at the patch stride; the chip is the ViT's input
    /// size. `weights` is the file (or a known model name), `sha256` pins it.
    ClipVit { weights: String, sha256: String },
}

impl EncoderSpec {
    /// The pretrained encoder (the default).
    pub fn pretrained() -> Self {
        EncoderSpec::EfficientnetLite0 {
            sha256: nadir_clip::lite::EFFICIENTNET_LITE0_SHA256.into(),
        }
    }

    /// A short name for tables and logs.
    pub fn label(&self) -> &'static str {
        match self {
            EncoderSpec::EfficientnetLite0 { .. } => "pretrained",
            EncoderSpec::RandomLite0 { .. } => "random",
            EncoderSpec::ClipVit { .. } => "clip-vit",
        }
    }
}

/// A segmentation model's architecture and input handling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmenterConfig {
    pub format_version: u32,
    pub encoder: EncoderSpec,
    /// Width of the decoder's feature pyramid.
    pub decoder_channels: usize,
    pub classes: Vec<ClassInfo>,
    /// Side in pixels of the square chips the model trains and predicts on.
    pub chip: u32,
    /// 1-based source bands used as R, G, B (None: the indexer's default choice).
    #[serde(default)]
    pub bands: Option<Vec<usize>>,
    /// The linear map (low, high) -> (0, 255) of each channel for non-8-bit data, fixed at
    /// training time (the median over the training images) so that every scene predicted later
    /// goes through the same map; None per channel: 8-bit values used as they are.
    pub stretch: Stretch,
}

impl SegmenterConfig {
    /// The default: frozen ImageNet EfficientNet-Lite0 (strides 4 to 32), an FPN decoder of 64
    /// channels, 256 px chips.
    pub fn lite0_fpn(classes: Vec<ClassInfo>) -> Self {
        SegmenterConfig {
            format_version: MODEL_FORMAT_VERSION,
            encoder: EncoderSpec::pretrained(),
            decoder_channels: 64,
            classes,
            chip: 256,
            bands: None,
            stretch: [None; 3],
        }
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Checks the values a model folder or a caller could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        let k = self.classes.len();
        if !(2..usize::from(IGNORE)).contains(&k) {
            return Err(format!("need 2 to 254 classes, got {k}"));
        }
        if self.chip < 32 || !self.chip.is_multiple_of(32) {
            return Err(format!(
                "chip must be a multiple of 32 of at least 32 px, got {}",
                self.chip
            ));
        }
        if self.decoder_channels == 0 {
            return Err("decoder_channels must be positive".into());
        }
        Ok(())
    }
}
