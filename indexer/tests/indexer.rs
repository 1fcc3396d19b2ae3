//! Integration tests of nadir-indexer, one binary.

#[path = "indexer/common.rs"]
mod common;
#[path = "indexer/format.rs"]
mod format;
#[path = "indexer/pipeline.rs"]
mod pipeline;
