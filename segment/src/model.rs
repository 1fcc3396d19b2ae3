//! A segmentation model: frozen encoder + trained decoder, and its folder on disk.
//!
//! ```text
//! MODEL_DIR/config.json           SegmenterConfig (format version, encoder, classes, chip, stretch)
//! MODEL_DIR/decoder.safetensors   the decoder's weights (`lateral.N`, `smooth`, `classify`)
//! MODEL_DIR/report.json           how it was trained: data, class weights, epochs, val scores, time
//! MODEL_DIR/README.md             the model card (Hugging Face front matter), see [`crate::card`]
//! ```
//!
//! The encoder's weights are not copied: the pretrained one is named by its sha256 (and loaded
//! from the models folder), the random baseline by its seed. A folder is written whole under a
//! temporary name, synced and renamed into place (`nadir_indexer::fsutil::publish_dir`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::RgbImage;
use rand::{Rng, SeedableRng};

use crate::config::{SegmenterConfig, MODEL_FORMAT_VERSION};
use crate::decoder::FpnDecoder;
use crate::encoder::FrozenEncoder;
use crate::error::{Error, Result};

/// A model ready to train or predict.
pub struct Segmenter {
    config: SegmenterConfig,
    encoder: FrozenEncoder,
    decoder: FpnDecoder,
    varmap: VarMap,
}

impl Segmenter {
    /// A model with a fresh decoder (PyTorch's default convolution init, drawn from `seed`).
    pub fn new(config: SegmenterConfig, seed: u64) -> Result<Self> {
        config.validate().map_err(Error::Invalid)?;
        let encoder = FrozenEncoder::load(&config.encoder)?;
        check_input_size(&config, &encoder)?;
        let varmap = VarMap::new();
        let decoder = build_decoder(&config, &encoder, &varmap)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let data = varmap.data().lock().expect("varmap lock");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let dims = var.as_tensor().dims().to_vec();
            let values: Vec<f32> = if dims.len() >= 2 {
                let bound = 1.0 / (dims[1..].iter().product::<usize>() as f32).sqrt();
                (0..var.as_tensor().elem_count())
                    .map(|_| rng.random_range(-bound..bound))
                    .collect()
            } else {
                vec![0.0; var.as_tensor().elem_count()]
            };
            var.set(&Tensor::from_vec(values, dims, encoder.device())?)?;
        }
        drop(data);
        Ok(Self {
            config,
            encoder,
            decoder,
            varmap,
        })
    }

    /// Opens a model folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let bytes = std::fs::read(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: SegmenterConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(&cfg_path, format!("not a segmentation model config: {e}")))?;
        if config.format_version != MODEL_FORMAT_VERSION {
            return Err(Error::input(
                &cfg_path,
                format!(
                    "model format version {} (this build reads {MODEL_FORMAT_VERSION})",
                    config.format_version
                ),
            ));
        }
        config.validate().map_err(|m| Error::input(&cfg_path, m))?;
        let encoder = FrozenEncoder::load(&config.encoder)?;
        check_input_size(&config, &encoder).map_err(|e| Error::input(&cfg_path, e))?;
        let varmap = VarMap::new();
        let decoder = build_decoder(&config, &encoder, &varmap)?;
        let weights = dir.join("decoder.safetensors");
        let tensors = candle_core::safetensors::load(&weights, encoder.device())
            .map_err(|e| Error::input(&weights, format!("cannot read the decoder weights: {e}")))?;
        {
            let data = varmap.data().lock().expect("varmap lock");
            for (name, var) in data.iter() {
                let t = tensors
                    .get(name)
                    .ok_or_else(|| Error::input(&weights, format!("missing tensor {name}")))?;
                if t.dims() != var.as_tensor().dims() {
                    return Err(Error::input(
                        &weights,
                        format!(
                            "tensor {name} is {:?}, the config needs {:?}",
                            t.dims(),
                            var.as_tensor().dims()
                        ),
                    ));
                }
                var.set(t)?;
            }
        }
        Ok(Self {
            config,
            encoder,
            decoder,
            varmap,
        })
    }

    /// Writes the model folder `dir` (which must not exist, or be empty) atomically.
    pub fn save(&self, dir: &Path, report: &serde_json::Value) -> Result<()> {
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .next()
                .is_some()
        {
            return Err(Error::input(dir, "the model folder exists and is not empty"));
        }
        let tmp = tmp_dir(dir);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
            let p = tmp.join(name);
            let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::input(&p, e))?;
            std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))
        };
        let cfg = serde_json::to_value(&self.config).map_err(|e| Error::input(dir, e))?;
        write_json("config.json", &cfg)?;
        write_json("report.json", report)?;
        let name = dir.file_name().map_or_else(
            || "segmentation model".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let card = tmp.join(crate::card::CARD_FILE);
        std::fs::write(&card, crate::card::model_card(&name, &self.config, report))
            .map_err(|e| Error::io(&card, e))?;
        let weights = tmp.join("decoder.safetensors");
        self.varmap
            .save(&weights)
            .map_err(|e| Error::input(&weights, format!("cannot write: {e}")))?;
        if dir.exists() {
            std::fs::remove_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(nadir_indexer::fsutil::publish_dir(&tmp, dir)?)
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    pub fn encoder(&self) -> &FrozenEncoder {
        &self.encoder
    }

    /// The trainable weights.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    pub fn device(&self) -> &Device {
        self.encoder.device()
    }

    /// Logits `[B, K, H, W]` from encoder maps of chips of `hw` pixels.
    pub fn logits(&self, maps: &[Tensor], hw: (usize, usize)) -> Result<Tensor> {
        self.decoder.forward(maps, hw)
    }

    /// Logits at stride 4 (what the training loss upsamples itself).
    pub fn coarse_logits(&self, maps: &[Tensor]) -> Result<Tensor> {
        self.decoder.forward_coarse(maps)
    }

    /// Class probabilities `[B, K, H, W]` of equally sized chips.
    pub fn probabilities(&self, chips: &[RgbImage]) -> Result<Tensor> {
        let maps = self.encoder.features(chips)?;
        let (w, h) = chips[0].dimensions();
        let logits = self.logits(&maps, (h as usize, w as usize))?;
        Ok(candle_nn::ops::softmax(&logits, 1)?)
    }
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("config", &self.config)
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

/// A ViT takes one input size: the chip must be it.
fn check_input_size(config: &SegmenterConfig, encoder: &FrozenEncoder) -> Result<()> {
    match encoder.input_size() {
        Some(s) if s != config.chip => Err(Error::Invalid(format!(
            "the encoder takes {s} px inputs only: the chip must be {s}, not {}",
            config.chip
        ))),
        _ => Ok(()),
    }
}

fn build_decoder(config: &SegmenterConfig, encoder: &FrozenEncoder, varmap: &VarMap) -> Result<FpnDecoder> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, encoder.device());
    FpnDecoder::new(
        vb,
        encoder.channels(),
        config.decoder_channels,
        config.num_classes(),
    )
}

fn tmp_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    dir.with_file_name(name)
}
