//! Named models and where their weights come from: a local file, the local Hugging Face cache,
//! or a download from the hub when a network exists.

use std::path::PathBuf;

use crate::config::ClipConfig;
use crate::error::{Error, Result};

/// A model Nadir knows by name.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    /// The name users type (`--model remoteclip-vit-b-32`).
    pub name: &'static str,
    /// Hugging Face hub repository.
    pub repo: &'static str,
    /// The weights file in that repository.
    pub file: &'static str,
    /// The architecture preset.
    pub preset: fn() -> ClipConfig,
}

/// The models that resolve by name.
///
/// RemoteCLIP's activation is QuickGELU. Evidence: RemoteCLIP's ViTs were fine-tuned from OpenAI
/// CLIP weights, which were trained with QuickGELU; the authors' own evaluation script
/// (`remoteclip_retrieval.py` in `ChenDelong1999/RemoteCLIP`, `get_model`) builds the model with
/// `open_clip.create_model_and_transforms(model_name, pretrained='openai')` before loading the
/// RemoteCLIP state dict, and open_clip forces `quick_gelu=True` whenever `pretrained='openai'`
/// (`open_clip/factory.py`, `create_model`). Only the README's short snippet builds the plain
/// `ViT-B-32` config (exact GELU in open_clip >= 2), which runs the same weights with the wrong
/// activation. `--activation gelu` is there for checkpoints trained otherwise.
pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "remoteclip-vit-b-32",
        repo: "chendelong/RemoteCLIP",
        file: "RemoteCLIP-ViT-B-32.pt",
        preset: ClipConfig::vit_b_32,
    },
    KnownModel {
        name: "remoteclip-vit-l-14",
        repo: "chendelong/RemoteCLIP",
        file: "RemoteCLIP-ViT-L-14.pt",
        preset: ClipConfig::vit_l_14,
    },
    KnownModel {
        name: "openai-vit-b-32",
        repo: "openai/clip-vit-base-patch32",
        file: "model.safetensors",
        preset: ClipConfig::vit_b_32,
    },
];

impl KnownModel {
    /// Looks a name up (case-insensitive).
    pub fn find(name: &str) -> Option<&'static KnownModel> {
        KNOWN_MODELS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// The weights file: from the local Hugging Face cache (`HF_HOME`, default
    /// `~/.cache/huggingface`), else downloaded unless `HF_HUB_OFFLINE` is set.
    pub fn resolve(&self) -> Result<PathBuf> {
        let cache = hf_hub::Cache::from_env();
        if let Some(path) = cache.model(self.repo.to_string()).get(self.file) {
            return Ok(path);
        }
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
        let why = if offline {
            "HF_HUB_OFFLINE is set".to_string()
        } else {
            tracing::info!(repo = self.repo, file = self.file, "downloading model weights");
            match hf_hub::api::sync::Api::new()
                .and_then(|api| api.model(self.repo.to_string()).get(self.file))
            {
                Ok(path) => return Ok(path),
                Err(e) => format!("the download failed: {e}"),
            }
        };
        Err(Error::ModelNotFound(format!(
            "model `{name}` is not in the local Hugging Face cache ({cache}) and {why}.\n\
             Download `{file}` from https://huggingface.co/{repo} on a machine with a network and either\n\
             pass it directly with `--model /path/to/{file}`, or put it in the cache with\n\
             `huggingface-cli download {repo} {file}` (then copy {cache} to this machine).",
            name = self.name,
            cache = cache.path().display(),
            file = self.file,
            repo = self.repo,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_presets() {
        let m = KnownModel::find("RemoteCLIP-ViT-L-14").unwrap();
        assert_eq!((m.preset)().embed_dim, 768);
        assert!(KnownModel::find("nope").is_none());
    }
}
