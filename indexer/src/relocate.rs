//! Pointing an index at scenes that moved: every scene path under one folder is rewritten to the
//! same place under another, as one commit, once the files are found there.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::writer::IndexWriter;

/// What a relocation did (or would do, for a dry run).
#[derive(Debug, Default)]
pub struct RelocateReport {
    /// Scenes whose path was under `from`, with their new path.
    pub moved: Vec<(String, PathBuf)>,
    /// Scenes still missing after the move (neither the old nor the new path exists).
    pub still_missing: Vec<(String, PathBuf)>,
    /// Whether the manifest was written.
    pub committed: bool,
}

/// Rewrites the path of every scene under `from` to the same place under `to`. Refuses when one
/// of them is not found at its new place (nothing is written), or, with `verify`, when its bytes
/// differ from the indexed ones (checksum). With `dry_run` nothing is written.
pub fn relocate(dir: &Path, from: &Path, to: &Path, verify: bool, dry_run: bool) -> Result<RelocateReport> {
    let mut writer = IndexWriter::open_existing(dir)?;
    let mut manifest = writer.manifest().clone();
    let from = std::path::absolute(from).map_err(|e| Error::io(from, e))?;
    let to = std::path::absolute(to).map_err(|e| Error::io(to, e))?;
    let mut report = RelocateReport::default();
    let mut absent = Vec::new();
    for s in &mut manifest.scenes {
        let Ok(rest) = s.path.strip_prefix(&from) else {
            if !s.path.exists() {
                report.still_missing.push((s.id.clone(), s.path.clone()));
            }
            continue;
        };
        let new = to.join(rest);
        if !new.is_file() {
            absent.push(format!("{} ({})", s.id, new.display()));
            continue;
        }
        if verify {
            let sha = nadir_clip::encoder::sha256_file(&new)?;
            if sha != s.sha256 {
                return Err(Error::input(
                    &new,
                    format!("is not the file scene {} was indexed from (other bytes)", s.id),
                ));
            }
        }
        s.path = new.clone();
        report.moved.push((s.id.clone(), new));
    }
    if !absent.is_empty() {
        return Err(Error::Invalid(format!(
            "{} scenes are not at their new place, nothing changed: {}",
            absent.len(),
            absent.join(", ")
        )));
    }
    if report.moved.is_empty() {
        return Err(Error::Invalid(format!(
            "no scene of index {} lies under {}; scene folders: {}",
            dir.display(),
            from.display(),
            scene_folders(&manifest.scenes).join(", ")
        )));
    }
    if !dry_run {
        writer.replace_scenes(manifest.scenes)?;
        report.committed = true;
    }
    Ok(report)
}

/// The distinct folders the scenes live in (for messages).
fn scene_folders(scenes: &[crate::manifest::SceneEntry]) -> Vec<String> {
    let mut out: Vec<String> = scenes
        .iter()
        .filter_map(|s| s.path.parent().map(|p| p.display().to_string()))
        .collect();
    out.sort();
    out.dedup();
    out.truncate(10);
    out
}
