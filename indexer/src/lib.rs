//! Nadir's indexer: reads georeferenced rasters (and plain images), tiles them into patches,
//! embeds them with a `nadir-clip` encoder and writes the index. It owns the on-disk format:
//! writer and reader side by side, versioned by a manifest.
//!
//! An index is one folder:
//! - `manifest.json`: format version, model id and checksum, dimension, tiling, scenes with
//!   their checksums, parts and the derived structures with the size and sha256 of every file
//!   (the commit point, see [`manifest`]; verified and repaired by [`check`]);
//! - `parts/<id>.parquet`: GeoParquet 1.1 patch tables (see [`table`]), `parts/<id>.thumbs`:
//!   their thumbnail packs (see [`thumbs`]);
//! - `hnsw-<generation>/graph.bin`: the HNSW graph (see [`ann`]); `text-<generation>/`: the tantivy
//!   index of patch metadata (see [`text`]).

pub mod ann;
pub mod bench;
pub mod cells;
pub mod check;
pub mod embeddings;
pub mod error;
pub mod fsutil;
pub mod import;
pub mod landcover;
pub mod manifest;
pub mod pipeline;
pub mod raster;
pub mod reader;
pub mod relocate;
pub mod sources;
pub mod stac;
pub mod table;
pub mod text;
pub mod thumbs;
pub mod tiling;
pub mod time;
pub mod vsi;
pub mod wkb;
pub mod writer;

pub use error::{Error, Result};
pub use manifest::{Manifest, ModelInfo};
pub use pipeline::{add, AddOptions, Report};
pub use reader::Index;
pub use table::{PatchId, PatchRecord};
pub use tiling::{Edge, Tiling};
pub use writer::IndexWriter;
