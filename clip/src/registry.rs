//! Choosing an encoder from what the user typed: the one place that knows every model family.
//! No model named means `nadir-lite`, the offline default.

use std::path::PathBuf;

use crate::config::Activation;
use crate::encoder::{ClipEncoder, ClipSpec, Encoder};
use crate::error::Result;
use crate::lite::{models_dir, NadirLite, NADIR_LITE};

/// A model choice.
#[derive(Debug, Clone, Default)]
pub struct ModelSpec {
    /// `nadir-lite` (default), a known CLIP name, a CLIP weights file, or a nadir-lite adapters
    /// file.
    pub model: Option<String>,
    /// CLIP: a config file overriding the one found next to the weights.
    pub config: Option<PathBuf>,
    /// CLIP: overrides the activation.
    pub activation: Option<Activation>,
    /// nadir-lite: an adapters file instead of the bundled one.
    pub adapters: Option<PathBuf>,
    /// nadir-lite without `adapters`: the model id (sha256) an index recorded, so that the
    /// bundled adapters version that built it is loaded (a newer build still bundles it).
    pub sha256: Option<String>,
}

impl ModelSpec {
    /// The name this spec resolves to, for messages.
    pub fn name(&self) -> &str {
        self.model.as_deref().unwrap_or(NADIR_LITE)
    }
}

/// Loads the encoder a spec names.
pub fn load_encoder(spec: &ModelSpec) -> Result<Box<dyn Encoder>> {
    match spec.model.as_deref() {
        // A nadir-lite adapters file (as an index built with `--adapters` records it).
        Some(model) if crate::adapter::Adapters::is_adapters_file(std::path::Path::new(model)) => Ok(
            Box::new(NadirLite::load(&models_dir(), Some(std::path::Path::new(model)))?),
        ),
        Some(model) if !model.eq_ignore_ascii_case(NADIR_LITE) => {
            Ok(Box::new(ClipEncoder::load(&ClipSpec {
                model: model.to_string(),
                config: spec.config.clone(),
                activation: spec.activation,
            })?))
        }
        _ => {
            if let (None, Some(sha)) = (&spec.adapters, &spec.sha256) {
                if let Some(model) = NadirLite::load_bundled_matching(&models_dir(), sha)? {
                    return Ok(Box::new(model));
                }
            }
            Ok(Box::new(NadirLite::load(
                &models_dir(),
                spec.adapters.as_deref(),
            )?))
        }
    }
}
