//! Model configuration: the open_clip ViT hyper-parameters, named presets, and reading open_clip
//! and Hugging Face config files.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The MLP activation of every residual block (both towers).
///
/// OpenAI CLIP was trained with QuickGELU (`x * sigmoid(1.702 x)`); open_clip's plain `ViT-B-32`
/// config uses exact (erf) GELU unless `quick_gelu` is set, and `pretrained='openai'` forces
/// QuickGELU. A checkpoint must be run with the activation it was trained with: the two differ by up
/// to 1e-2 on the same weights (see `../shared/notes/clip-on-candle.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    QuickGelu,
    Gelu,
}

/// The vision tower: a ViT over square patches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
}

/// The text tower: a causal transformer over CLIP BPE tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    pub context_length: usize,
    pub vocab_size: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
}

/// A whole CLIP model: two towers projected into one `embed_dim` space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub embed_dim: usize,
    pub activation: Activation,
    pub vision: VisionConfig,
    pub text: TextConfig,
}

impl ClipConfig {
    /// ViT-B/32 at 224 px (RemoteCLIP-ViT-B-32, OpenAI ViT-B/32): 512-d embeddings.
    pub fn vit_b_32() -> Self {
        Self {
            embed_dim: 512,
            activation: Activation::QuickGelu,
            vision: VisionConfig {
                image_size: 224,
                patch_size: 32,
                width: 768,
                layers: 12,
                heads: 12,
                mlp_width: 3072,
            },
            text: TextConfig::openai(512, 8),
        }
    }

    /// ViT-L/14 at 224 px (RemoteCLIP-ViT-L-14, OpenAI ViT-L/14): 768-d embeddings.
    pub fn vit_l_14() -> Self {
        Self {
            embed_dim: 768,
            activation: Activation::QuickGelu,
            vision: VisionConfig {
                image_size: 224,
                patch_size: 14,
                width: 1024,
                layers: 24,
                heads: 16,
                mlp_width: 4096,
            },
            text: TextConfig::openai(768, 12),
        }
    }

    /// A named preset: `ViT-B-32` or `ViT-L-14` (open_clip's names, case-insensitive).
    pub fn preset(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace(['/', '_'], "-").as_str() {
            "vit-b-32" => Some(Self::vit_b_32()),
            "vit-l-14" => Some(Self::vit_l_14()),
            _ => None,
        }
    }

    /// Builds a config from an open_clip model config (the JSON in `open_clip/model_configs/`, or
    /// the `model_cfg` of a hub repo's `open_clip_config.json`).
    pub fn from_open_clip_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let cfg = value.get("model_cfg").unwrap_or(value);
        let embed_dim = get_usize(cfg, "embed_dim")?;
        let quick_gelu = cfg.get("quick_gelu").and_then(|v| v.as_bool()).unwrap_or(false);
        let v = cfg.get("vision_cfg").ok_or("missing field `vision_cfg`")?;
        let t = cfg.get("text_cfg").ok_or("missing field `text_cfg`")?;
        let vwidth = get_usize(v, "width")?;
        let head_width = opt_usize(v, "head_width")?.unwrap_or(64);
        let vmlp = v.get("mlp_ratio").and_then(|x| x.as_f64()).unwrap_or(4.0);
        let twidth = get_usize(t, "width")?;
        let tmlp = t.get("mlp_ratio").and_then(|x| x.as_f64()).unwrap_or(4.0);
        if v.get("layers").is_some_and(|l| !l.is_u64()) {
            return Err("`vision_cfg.layers` is not an integer: ResNet towers are not supported".into());
        }
        Ok(Self {
            embed_dim,
            activation: if quick_gelu {
                Activation::QuickGelu
            } else {
                Activation::Gelu
            },
            vision: VisionConfig {
                image_size: get_usize(v, "image_size")?,
                patch_size: get_usize(v, "patch_size")?,
                width: vwidth,
                layers: get_usize(v, "layers")?,
                heads: vwidth / head_width,
                mlp_width: (vwidth as f64 * vmlp) as usize,
            },
            text: TextConfig {
                context_length: opt_usize(t, "context_length")?.unwrap_or(77),
                vocab_size: opt_usize(t, "vocab_size")?.unwrap_or(49408),
                width: twidth,
                layers: get_usize(t, "layers")?,
                heads: opt_usize(t, "heads")?.unwrap_or(8),
                mlp_width: (twidth as f64 * tmlp) as usize,
            },
        })
    }

    /// Builds a config from a Hugging Face `transformers` `CLIPConfig` (`config.json`).
    pub fn from_hf_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let v = value
            .get("vision_config")
            .ok_or("missing field `vision_config`")?;
        let t = value.get("text_config").ok_or("missing field `text_config`")?;
        let act = |c: &serde_json::Value| {
            c.get("hidden_act")
                .and_then(|a| a.as_str())
                .unwrap_or("quick_gelu")
                .to_string()
        };
        let activation = match act(v).as_str() {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            other => return Err(format!("unsupported `hidden_act` {other:?}")),
        };
        if act(t) != act(v) {
            return Err("the text and vision towers use different activations".into());
        }
        Ok(Self {
            embed_dim: opt_usize(value, "projection_dim")?.unwrap_or(512),
            activation,
            vision: VisionConfig {
                image_size: get_usize(v, "image_size")?,
                patch_size: get_usize(v, "patch_size")?,
                width: get_usize(v, "hidden_size")?,
                layers: get_usize(v, "num_hidden_layers")?,
                heads: get_usize(v, "num_attention_heads")?,
                mlp_width: get_usize(v, "intermediate_size")?,
            },
            text: TextConfig {
                context_length: opt_usize(t, "max_position_embeddings")?.unwrap_or(77),
                vocab_size: opt_usize(t, "vocab_size")?.unwrap_or(49408),
                width: get_usize(t, "hidden_size")?,
                layers: get_usize(t, "num_hidden_layers")?,
                heads: get_usize(t, "num_attention_heads")?,
                mlp_width: get_usize(t, "intermediate_size")?,
            },
        })
    }

    /// Reads a config file, open_clip or Hugging Face format (told apart by their fields).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let parsed = if value.get("vision_config").is_some() {
            Self::from_hf_json(&value)
        } else {
            Self::from_open_clip_json(&value)
        };
        parsed.map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Number of patch tokens plus the class token.
    pub fn vision_tokens(&self) -> usize {
        let grid = self.vision.image_size / self.vision.patch_size;
        grid * grid + 1
    }
}

impl TextConfig {
    /// OpenAI's text tower: 77 tokens, 49,408 BPE entries, 12 layers, MLP ratio 4.
    fn openai(width: usize, heads: usize) -> Self {
        Self {
            context_length: 77,
            vocab_size: 49408,
            width,
            layers: 12,
            heads,
            mlp_width: 4 * width,
        }
    }
}

fn opt_usize(v: &serde_json::Value, key: &str) -> std::result::Result<Option<usize>, String> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| format!("field `{key}` is not a non-negative integer")),
    }
}

fn get_usize(v: &serde_json::Value, key: &str) -> std::result::Result<usize, String> {
    opt_usize(v, key)?.ok_or_else(|| format!("missing field `{key}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_clip_vit_b_32_json_matches_preset() {
        // open_clip/model_configs/ViT-B-32-quickgelu.json
        let json = serde_json::json!({
            "embed_dim": 512, "quick_gelu": true,
            "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}
        });
        assert_eq!(
            ClipConfig::from_open_clip_json(&json).unwrap(),
            ClipConfig::vit_b_32()
        );
    }

    #[test]
    fn open_clip_json_without_quick_gelu_is_gelu() {
        let json = serde_json::json!({
            "embed_dim": 768,
            "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}
        });
        let cfg = ClipConfig::from_open_clip_json(&json).unwrap();
        assert_eq!(cfg.activation, Activation::Gelu);
        assert_eq!(
            ClipConfig {
                activation: Activation::QuickGelu,
                ..cfg
            },
            ClipConfig::vit_l_14()
        );
    }

    #[test]
    fn resnet_configs_are_rejected() {
        let json = serde_json::json!({
            "embed_dim": 1024,
            "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64},
            "text_cfg": {"width": 512, "layers": 12}
        });
        let err = ClipConfig::from_open_clip_json(&json).unwrap_err();
        assert!(err.contains("ResNet"), "{err}");
    }

    #[test]
    fn presets_by_name() {
        assert_eq!(ClipConfig::preset("ViT-B/32"), Some(ClipConfig::vit_b_32()));
        assert_eq!(ClipConfig::preset("vit_l_14"), Some(ClipConfig::vit_l_14()));
        assert_eq!(ClipConfig::preset("RN50"), None);
        assert_eq!(ClipConfig::vit_b_32().vision_tokens(), 50);
    }
}
