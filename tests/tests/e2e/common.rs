//! Shared helpers: the workspace root, the built `nadir` binary, the demo index built once.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `nadir` binary of the same build profile as this test (`cargo build` puts it next to the
/// `deps` folder this test runs from).
pub fn nadir() -> Result<Command> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("target dir")?;
    let bin = dir.join(format!("nadir{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        bin.is_file(),
        "{} is missing: build the CLI first (`cargo build --workspace --bins`), as scripts/test.sh does",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.current_dir(root());
    Ok(cmd)
}

/// `nadir index add --quiet --patch PATCH --commit-every COMMIT --model <tiny CLIP> --index INDEX`:
/// a fast real indexing run (the clip crate's random-weight fixture); the caller adds scenes.
pub fn tiny_index_add(index: &Path, patch: u32, commit_every: usize) -> Result<Command> {
    let mut cmd = nadir()?;
    cmd.args(["index", "add", "--quiet", "--patch", &patch.to_string()])
        .args(["--commit-every", &commit_every.to_string(), "--model"])
        .arg(root().join("clip/tests/fixtures/tiny-quickgelu.safetensors"))
        .arg("--index")
        .arg(index);
    Ok(cmd)
}

/// `$NADIR_MODELS` or `~/.cache/nadir/models` has the default model's towers.
pub fn lite_towers_present(test: &str) -> bool {
    let dir = nadir_clip::lite::models_dir();
    let present = dir.join("all-minilm-l6-v2/model.safetensors").is_file()
        && dir
            .join("efficientnet-lite0/efficientnet-lite0-57934424.pth")
            .is_file();
    if !present {
        eprintln!(
            "{test} skipped: nadir-lite towers missing from {} (run scripts/fetch-models.sh)",
            dir.display()
        );
    }
    present
}

/// Sends one request through the router (`tower::ServiceExt::oneshot`): status and body bytes.
pub async fn call(app: Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, bytes.to_vec())
}

/// The same, with the body parsed as JSON (`null` when it is not JSON).
pub async fn json_call(app: Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, bytes) = call(app, method, uri, body).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A small multi-threaded runtime for driving the router.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
