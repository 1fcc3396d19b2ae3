//! Nadir's query engine and HTTP service, on the index format `nadir-indexer` owns.
//!
//! A query goes through explicit stages: parse ([`request`]), plan (text and examples to one
//! vector, geofilter to H3 cells then exact containment, keywords, time: [`plan`]), filtered ANN
//! search or exact scan, rerank and top-k ([`search`]); [`engine`] ties them to a loaded index and
//! [`service`] serves them over HTTP.

pub mod acquisition;
pub mod bench;
pub mod cancel;
pub mod cells;
pub mod engine;
pub mod error;
pub mod export;
pub mod geofilter;
pub mod hit;
pub mod labels;
pub mod labels_api;
pub mod learn;
pub mod learn_bench;
pub mod live;
pub mod plan;
pub mod request;
pub mod search;
pub mod server;
pub mod service;
pub(crate) mod shapes;

pub use engine::{Engine, IndexInfo};
pub use error::{Error, Result};
pub use geofilter::GeoFilter;
pub use hit::{Hit, SearchResponse};
pub use labels::{Label, LabelSource, LabelStore, NewLabel};
pub use live::LiveEngine;
pub use request::{Example, SearchRequest, TimeRange};
