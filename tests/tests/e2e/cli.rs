//! End-to-end tests of the `nadir` binary as a user runs it.

use crate::common::{lite_towers_present, nadir, root, tiny_index_add};

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};

#[test]
fn embed_text_prints_a_unit_vector_equal_to_open_clip() -> Result<()> {
    let model = root().join("clip/tests/fixtures/tiny-quickgelu.pt");
    let out = nadir()?
        .args(["embed-text", "dense residential near the coast", "--model"])
        .arg(&model)
        .output()?;
    ensure!(
        out.status.success(),
        "nadir failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(lines.len() == 1, "one vector per text, got {stdout}");
    let v: Vec<f32> = serde_json::from_str(lines[0])?;
    ensure!(v.len() == 32, "dimension {}", v.len());
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    ensure!((norm - 1.0).abs() < 1e-4, "norm {norm}");

    // The same text's reference embedding from open_clip.
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(
        root().join("clip/tests/fixtures/texts.json"),
    )?)?;
    let i = texts
        .iter()
        .position(|t| t == "dense residential near the coast")
        .context("text in fixtures")?;
    let reference = candle_core::safetensors::load(
        root().join("clip/tests/fixtures/tiny-quickgelu-reference.safetensors"),
        &candle_core::Device::Cpu,
    )?;
    let reference: Vec<Vec<f32>> = reference["text_embeds"].to_vec2()?;
    let diff = v
        .iter()
        .zip(&reference[i])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    ensure!(diff <= 1e-4, "differs from open_clip by {diff}");
    Ok(())
}

#[test]
fn missing_model_file_is_a_clear_error() -> Result<()> {
    let out = nadir()?
        .args(["embed-text", "x", "--model", "/nonexistent/weights.pt"])
        .output()?;
    ensure!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("/nonexistent/weights.pt"), "{err}");
    Ok(())
}

#[test]
fn embed_image_prints_one_vector_per_file() -> Result<()> {
    let images = root().join("clip/tests/fixtures/images");
    let out = nadir()?
        .args([
            "embed-image",
            "--model",
            "clip/tests/fixtures/tiny-gelu.safetensors",
        ])
        .arg(images.join("manila_wide.png"))
        .arg(images.join("dubai_tall.png"))
        .output()?;
    ensure!(
        out.status.success(),
        "nadir failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let vs: Vec<Vec<f32>> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(vs.len() == 2 && vs.iter().all(|v| v.len() == 32));
    ensure!(vs[0] != vs[1], "two different images gave the same vector");
    Ok(())
}

#[test]
fn default_model_is_nadir_lite() -> Result<()> {
    if !lite_towers_present("default_model_is_nadir_lite") {
        return Ok(());
    }
    let out = nadir()?
        .args(["embed-text", "dense residential near the coast"])
        .output()?;
    ensure!(
        out.status.success(),
        "nadir failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<f32> = serde_json::from_str(String::from_utf8(out.stdout)?.trim())?;
    ensure!(v.len() == 256, "nadir-lite has 256 dimensions, got {}", v.len());
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    ensure!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    Ok(())
}

/// A text query ranks real aerial images: the beach scene comes first for a beach query, the
/// harbour scene for a harbour query.
#[test]
fn rank_finds_the_matching_scene() -> Result<()> {
    if !lite_towers_present("rank_finds_the_matching_scene") {
        return Ok(());
    }
    let images = root().join("clip/tests/fixtures/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&images)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"));
    files.sort();
    for (query, expected) in [
        ("a beach with waves", "ucm_beach.png"),
        ("many boats in a harbor", "ucm_harbor00.jpg"),
    ] {
        let out = nadir()?.arg("rank").arg(query).args(&files).output()?;
        ensure!(
            out.status.success(),
            "nadir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout)?;
        let first = stdout.lines().nth(2).context("a first result row")?;
        ensure!(
            first.contains(expected),
            "{query:?}: expected {expected} first, got\n{stdout}"
        );
    }
    Ok(())
}

/// `nadir serve` picks up what a writer commits while it runs (a new generation, without a
/// restart), and stops on SIGTERM (what `docker stop` and systemd send) as on Ctrl-C, exiting with
/// success.
#[test]
fn serve_follows_new_commits_and_stops_on_sigterm() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("index");
    let out = tiny_index_add(&index, 1024, 4096)?
        .arg(root().join("data/scenes/grassland.tif"))
        .output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = nadir()?
        .arg("serve")
        .arg("--index")
        .arg(&index)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let get = |path: &str| -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.starts_with("HTTP/1.1 200")
            .then(|| text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
    };
    let patches = || -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(&get("/api/info")?).ok()?;
        v["patches"].as_u64()
    };
    let start = std::time::Instant::now();
    while get("/health").is_none() {
        ensure!(start.elapsed().as_secs() < 60, "the server did not come up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let before = patches().context("/api/info")?;
    // A writer commits another scene while the server runs; the server follows.
    let out = nadir()?
        .args(["index", "add", "--quiet", "--index"])
        .arg(&index)
        .arg(root().join("data/scenes/neon-osbs-forest.tif"))
        .output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let start = std::time::Instant::now();
    loop {
        let now = patches().context("/api/info")?;
        if now > before {
            break;
        }
        ensure!(
            start.elapsed().as_secs() < 30,
            "still {now} patches 30 s after a commit (before: {before})"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    ensure!(killed.success());
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed().as_secs() > 30 {
            child.kill()?;
            anyhow::bail!("still running 30 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    ensure!(status.success(), "exit status after SIGTERM: {status}");
    Ok(())
}
