//! Image and text encoders for Nadir: CLIP ViTs (RemoteCLIP, OpenAI CLIP, any open_clip ViT
//! checkpoint) in candle, numerically equal to the PyTorch reference (open_clip), with the CLIP
//! BPE tokenizer and the CLIP image transform.
//!
//! ```no_run
//! use nadir_clip::{ClipEncoder, ClipSpec, Encoder};
//! let enc = ClipEncoder::load(&ClipSpec { model: "remoteclip-vit-b-32".into(), ..Default::default() })?;
//! let v = enc.embed_texts(&["dense residential near the coast"])?;
//! assert_eq!(v[0].len(), enc.dim());
//! # Ok::<(), nadir_clip::Error>(())
//! ```

pub mod adapter;
pub mod archive;
mod atomic;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod efficientnet;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod hub;
pub mod legacy_pickle;
pub mod lite;
pub mod minilm;
pub mod model;
pub mod preprocess;
pub mod registry;
pub mod resample;
pub mod retrieval;
pub mod text;
pub mod tokenizer;
pub mod training;
mod transformer;
pub mod ucm;
pub mod vision;

pub use config::{Activation, ClipConfig, TextConfig, VisionConfig};
pub use encoder::{ClipEncoder, ClipSpec, Encoder, ModelId};
pub use error::{Error, Result};
/// The `image` crate, whose `RgbImage` the encoder API takes.
pub use image;
pub use preprocess::{load_rgb, Preprocessor};
pub use tokenizer::ClipTokenizer;
