//! Crash safety with a real `kill -9`: indexing is killed at many moments (mid-scene, mid-commit,
//! mid-graph build), the folder is checked (it opens, or holds no index yet; no duplicated patch;
//! each committed scene has all its rows), then the run is repeated to completion and must give
//! exactly the patches of an uninterrupted run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Result};
use nadir_indexer::{Index, Manifest};

use crate::common::{nadir, root};

fn scenes() -> Vec<PathBuf> {
    let data = root().join("../shared/data/scenes");
    if !data.is_dir() {
        eprintln!("crash test: ../shared/data is absent; using the demo scenes only");
    }
    let mut v = vec![
        root().join("data/scenes/manila-pasig-river.tif"),
        root().join("data/scenes/grassland.tif"),
        root().join("data/scenes/neon-osbs-forest.tif"),
        root().join("data/scenes/spacenet-atlanta-pan.tif"),
    ];
    if data.is_dir() {
        v.push(data.join("spacenet/road_mask_input.tif"));
        v.push(data.join("spacenet/preproc_tutorial/ms1.tif"));
    }
    v
}

fn add_cmd(index: &Path, scenes: &[PathBuf]) -> Result<std::process::Command> {
    let mut cmd = nadir()?;
    cmd.args([
        "index",
        "add",
        "--quiet",
        "--patch",
        "96",
        "--commit-every",
        "24",
        "--model",
    ])
    .arg(root().join("clip/tests/fixtures/tiny-quickgelu.safetensors"))
    .arg("--index")
    .arg(index)
    .args(scenes)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    Ok(cmd)
}

fn patch_ids(index: &Path) -> Result<BTreeSet<String>> {
    let ix = Index::open(index)?;
    let ids: BTreeSet<String> = ix.records().iter().map(|r| r.id.to_string()).collect();
    ensure!(ids.len() == ix.len(), "duplicated patches after a crash");
    for s in &ix.manifest().scenes {
        let rows = ix.records().iter().filter(|r| r.scene == s.id).count();
        ensure!(
            rows == s.patches,
            "scene {} has {rows} rows, the manifest says {}",
            s.id,
            s.patches
        );
    }
    Ok(ids)
}

#[test]
fn kill_9_at_any_moment_loses_and_duplicates_nothing() -> Result<()> {
    let scenes = scenes();
    let reference = tempfile::tempdir()?;
    let start = Instant::now();
    ensure!(
        add_cmd(reference.path(), &scenes)?.status()?.success(),
        "reference run failed"
    );
    let full = start.elapsed();
    let want = patch_ids(reference.path())?;
    ensure!(
        want.len() > 500,
        "too few patches ({}) to catch a run mid-way",
        want.len()
    );

    // Each kill point on a fresh folder (a resumed run has less left to do, so kill points
    // measured on the full run would land after its end), then a second kill of the resumed run.
    let mut kills = 0;
    let mut last = None;
    for fraction in [0.08, 0.3, 0.55, 0.8, 0.97] {
        let dir = tempfile::tempdir()?;
        for delay in [full.mul_f64(fraction), full.mul_f64(0.25)] {
            let mut child = add_cmd(dir.path(), &scenes)?.spawn()?;
            std::thread::sleep(delay);
            if child.try_wait()?.is_none() {
                child.kill()?; // SIGKILL
                kills += 1;
            }
            child.wait()?;
            if Manifest::exists(dir.path()) {
                let ids = patch_ids(dir.path())?;
                ensure!(
                    ids.is_subset(&want),
                    "a crash produced patches a clean run does not have"
                );
            }
        }
        ensure!(
            add_cmd(dir.path(), &scenes)?.status()?.success(),
            "the resumed run failed"
        );
        ensure!(
            patch_ids(dir.path())? == want,
            "after resuming, the patches differ from a clean run"
        );
        last = Some(dir);
    }
    ensure!(kills >= 5, "only {kills} of 10 runs were killed mid-way");
    let dir = last.expect("five runs");
    let m = Manifest::load(dir.path())?;
    ensure!(m.derived_current(), "graph and text index rebuilt");
    // No leftovers: every file in parts/ is named by the manifest.
    let live: BTreeSet<PathBuf> = m.live_paths().into_iter().collect();
    for e in std::fs::read_dir(dir.path().join("parts"))? {
        let rel = Path::new("parts").join(e?.file_name());
        ensure!(live.contains(&rel), "{} left behind", rel.display());
    }
    Ok(())
}
