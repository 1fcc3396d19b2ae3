//! Crash safety with a real `kill -9`: indexing is killed at many moments (mid-scene, mid-commit,
//! mid-graph build), the folder is checked (it opens, or holds no index yet; no duplicated patch;
//! each committed scene has all its rows), then the run is repeated to completion and must give
//! exactly the patches of an uninterrupted run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Result};
use nadir_indexer::{Index, Manifest};

use crate::common::{root, tiny_index_add};

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
    let mut cmd = tiny_index_add(index, 96, 24)?;
    cmd.args(scenes)
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

/// One traced system call that matters for durability.
#[derive(Debug)]
enum Call {
    /// A file opened for writing (created or truncated).
    Create(String),
    /// fsync or fdatasync of a file or folder.
    Sync(String),
    /// A file removed.
    Remove(String),
    Rename(String, String),
}

/// The durability calls of an `strace -f -y` log, in order, for paths under `root`.
fn durability_calls(log: &str, root: &str) -> Vec<Call> {
    let quoted = |s: &str| -> Vec<String> { s.split('"').skip(1).step_by(2).map(str::to_string).collect() };
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((_, call)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let call = call.trim_start();
        if call.contains("= -1 ") || call.starts_with("<...") {
            continue;
        }
        if call.starts_with("openat(") && call.contains("O_CREAT") {
            if let Some(p) = quoted(call).into_iter().next().filter(|p| p.starts_with(root)) {
                out.push(Call::Create(p));
            }
        } else if call.starts_with("fsync(") || call.starts_with("fdatasync(") {
            let path = call
                .split_once('<')
                .and_then(|(_, r)| r.split_once('>'))
                .map(|(p, _)| p);
            if let Some(p) = path.filter(|p| p.starts_with(root)) {
                out.push(Call::Sync(p.to_string()));
            }
        } else if call.starts_with("unlink") {
            if let Some(p) = quoted(call).into_iter().next().filter(|p| p.starts_with(root)) {
                out.push(Call::Remove(p));
            }
        } else if call.starts_with("rename") {
            let q = quoted(call);
            if q.len() == 2 && q[1].starts_with(root) {
                out.push(Call::Rename(q[0].clone(), q[1].clone()));
            }
        }
    }
    out
}

/// Checks the ordering that makes a power cut at any moment leave the last committed index:
/// a file's bytes are synced before its name appears (rename), a folder is published only after
/// every file in it is synced, every name the manifest will point at is durable (its folder
/// synced) before the manifest is replaced, and the folder holding the manifest is synced after.
/// Unsynced data is exactly what a power cut loses, so with this order the files a surviving
/// manifest names are whole (the kill -9 test above covers what the process itself leaves).
fn check_power_cut_order(calls: &[Call], root: &str) -> Result<()> {
    use std::collections::{HashMap, HashSet};
    let parent = |p: &str| p.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string());
    // Files written and not yet synced since; names renamed into the index and not yet made
    // durable by a sync of their folder.
    let mut dirty: HashSet<String> = HashSet::new();
    let mut pending_names: HashMap<String, String> = HashMap::new();
    let manifest = format!("{root}/manifest.json");
    let mut commits = 0;
    let mut synced_after_last_commit = true;
    for c in calls {
        match c {
            Call::Create(p) => {
                dirty.insert(p.clone());
            }
            Call::Remove(p) => {
                dirty.remove(p);
            }
            Call::Sync(p) => {
                dirty.remove(p);
                pending_names.retain(|_, dir| dir != p);
                if *p == root {
                    synced_after_last_commit = true;
                }
            }
            Call::Rename(src, dst) => {
                let inside: Vec<&String> = dirty
                    .iter()
                    .filter(|d| *d == src || d.starts_with(&format!("{src}/")))
                    .collect();
                ensure!(
                    inside.is_empty(),
                    "{src} renamed to {dst} before its bytes were synced: {inside:?}"
                );
                if *dst == manifest {
                    ensure!(
                        pending_names.is_empty(),
                        "the manifest was replaced while these names were not durable: {:?}",
                        pending_names.keys().collect::<Vec<_>>()
                    );
                    commits += 1;
                    synced_after_last_commit = false;
                }
                // Renames inside a folder being built are published with the folder.
                if !parent(dst).contains(".tmp-") {
                    pending_names.insert(dst.clone(), parent(dst));
                }
                dirty.remove(src);
            }
        }
    }
    ensure!(commits > 0, "no manifest commit in the trace");
    ensure!(
        synced_after_last_commit,
        "the index folder was not synced after the last commit"
    );
    Ok(())
}

#[test]
fn every_commit_is_ordered_for_power_cuts() -> Result<()> {
    let usable = std::process::Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!(
            "every_commit_is_ordered_for_power_cuts skipped: strace is missing or may not trace here (scripts/setup.sh installs it)"
        );
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().canonicalize()?.join("index");
    let log = tmp.path().join("trace.txt");
    let root_str = index.display().to_string();
    let run = |scenes: &[PathBuf]| -> Result<()> {
        let cmd = add_cmd(&index, scenes)?;
        let status = std::process::Command::new("strace")
            .args([
                "-f",
                "-y",
                "-qq",
                "-e",
                "trace=openat,rename,renameat,renameat2,fsync,fdatasync,unlink,unlinkat",
                "-o",
            ])
            .arg(&log)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .current_dir(root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        ensure!(status.success(), "traced index add failed");
        let calls = durability_calls(&std::fs::read_to_string(&log)?, &root_str);
        check_power_cut_order(&calls, &root_str)
    };
    let all = scenes();
    // A first build (several commits, the graph and text index), then a replacement of changed
    // bytes (parts rewritten), each traced.
    run(&all[..3])?;
    let changed = tmp.path().join("changed.tif");
    std::fs::copy(&all[3], &changed)?;
    run(std::slice::from_ref(&changed))?;
    let mut bytes = std::fs::read(&changed)?;
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&changed, bytes)?;
    run(&[changed])?;

    // The check itself is not vacuous: the same calls with one sync dropped fail.
    let calls = durability_calls(&std::fs::read_to_string(&log)?, &root_str);
    let first_sync = calls
        .iter()
        .position(|c| matches!(c, Call::Sync(p) if p.contains(".tmp-")))
        .expect("a file sync");
    let mut broken: Vec<Call> = calls;
    broken.remove(first_sync);
    ensure!(
        check_power_cut_order(&broken, &root_str).is_err(),
        "a missing sync went unnoticed"
    );
    Ok(())
}
