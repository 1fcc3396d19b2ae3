//! Integration tests of nadir-indexer, one binary.

#[path = "indexer/common.rs"]
mod common;
#[path = "indexer/format.rs"]
mod format;
#[path = "indexer/import.rs"]
mod import;
#[path = "indexer/inputs.rs"]
mod inputs;
#[path = "indexer/integrity.rs"]
mod integrity;
#[path = "indexer/pipeline.rs"]
mod pipeline;
