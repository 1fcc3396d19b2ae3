//! Few-label segmentation: from an exported training set to a map.
//!
//! A frozen pretrained encoder (ImageNet EfficientNet-Lite0, the image tower of `nadir-lite`; or
//! the same network randomly initialised, as a baseline) gives multi-scale feature maps; a light
//! FPN decoder is trained on them from dense masks or a few clicks per image (partial
//! cross-entropy); a scene is predicted in overlapping, blended windows into a class GeoTIFF and
//! GeoJSON polygons.
//!
//! Stages, in order: [`dataset`] (image/mask pairs, chips, clicks) -> [`train`] (decoder fit,
//! early stopping) -> [`model`] (the model folder) -> [`predict`] (streaming scene prediction) ->
//! [`geojson`] (polygons). [`eval`] measures it all on held-out images.

pub mod card;
pub mod config;
pub mod dataset;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod finetune;
pub mod geojson;
pub mod grid;
pub mod interactive;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod sam;
pub mod train;
pub mod vectorize;

pub use config::{ClassInfo, ClassList, EncoderSpec, SegmenterConfig, IGNORE};
pub use error::{Error, Result};
pub use finetune::{finetune, FinetuneOptions};
pub use model::Segmenter;
pub use predict::{predict_scene, PredictOptions, PredictReport};
pub use train::{TrainOptions, TrainReport};
