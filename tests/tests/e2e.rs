//! End-to-end tests of Nadir, one binary: the `nadir` CLI as a user runs it, the real HTTP router
//! on an index built from the demo scenes, labels and active learning, and crash safety of
//! indexing and of labelling under `kill -9`, fine-tuning and predicting a map.

#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/crash.rs"]
mod crash;
#[path = "e2e/integrity.rs"]
mod integrity;
#[path = "e2e/labels.rs"]
mod labels;
#[path = "e2e/segment.rs"]
mod segment;
#[path = "e2e/service.rs"]
mod service;
#[path = "e2e/sessions.rs"]
mod sessions;
