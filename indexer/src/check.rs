//! Verifying an index against what its manifest recorded at commit, and repairing it: every
//! file the manifest names (parts, thumbnail packs, graph, text index) is checked for presence and
//! size (quick) or checksum and readability (full); repair rebuilds the derived structures from the
//! parts and drops the scenes whose part is damaged, so they can be indexed again.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::manifest::{FileSum, Manifest, SceneEntry};
use crate::writer::IndexWriter;

/// What a damaged file belongs to, which decides what repair can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A part (its parquet table or thumbnail pack): its scenes' rows are lost.
    Part(String),
    /// The HNSW graph or the text index: rebuilt from the parts.
    Derived,
}

/// One damaged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Relative to the index folder.
    pub file: PathBuf,
    pub owner: Owner,
    /// What is wrong (missing, size, checksum, unreadable).
    pub what: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.what)
    }
}

/// Damaged files as one line for a message (`file: what; file: what`).
pub fn describe<'a>(damage: impl IntoIterator<Item = &'a Damage>) -> String {
    damage
        .into_iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The outcome of a check.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Files checked.
    pub files: usize,
    /// Bytes read to verify checksums (0 for a quick check).
    pub bytes_read: u64,
    pub damaged: Vec<Damage>,
    /// Files with no recorded sum (an index of format 2 or older): only presence was checked.
    pub unsummed: usize,
    /// Scenes whose source file is not where the manifest says.
    pub missing_scenes: Vec<SceneEntry>,
}

impl CheckReport {
    /// Whether nothing is damaged (missing scene files are reported apart: the index still
    /// searches without them).
    pub fn ok(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// How deep to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Presence and sizes only: a `stat` per file, cheap enough for every open.
    Quick,
    /// Checksums of every byte, and each part's rows read back.
    Full,
}

/// Presence and sizes of every file the manifest names.
pub fn quick(dir: &Path, manifest: &Manifest) -> CheckReport {
    check(dir, manifest, Depth::Quick, &mut |_, _| {})
}

/// Checks every file the manifest names; `progress(done, total)` is called after each file.
pub fn check(
    dir: &Path,
    manifest: &Manifest,
    depth: Depth,
    progress: &mut dyn FnMut(usize, usize),
) -> CheckReport {
    let mut files: Vec<(PathBuf, Owner, Option<&FileSum>)> = Vec::new();
    for p in &manifest.parts {
        files.push((p.table_file(), Owner::Part(p.id.clone()), p.table.as_ref()));
        files.push((p.thumbs_file(), Owner::Part(p.id.clone()), p.thumbs.as_ref()));
    }
    if let Some(d) = manifest.derived.as_ref().filter(|_| manifest.derived_current()) {
        if d.files.is_empty() {
            for folder in d.hnsw.iter().chain(std::iter::once(&d.text)) {
                files.push((PathBuf::from(folder), Owner::Derived, None));
            }
        }
        for (f, sum) in &d.files {
            files.push((PathBuf::from(f), Owner::Derived, Some(sum)));
        }
    }
    let mut report = CheckReport::default();
    let total = files.len();
    for (i, (rel, owner, sum)) in files.into_iter().enumerate() {
        let path = dir.join(&rel);
        let damage = |what: String| Damage {
            file: rel.clone(),
            owner: owner.clone(),
            what,
        };
        report.files += 1;
        match std::fs::metadata(&path) {
            Err(e) => report.damaged.push(damage(format!("missing ({e})"))),
            Ok(meta) => match sum {
                None => report.unsummed += 1,
                Some(sum) if meta.len() != sum.bytes => report.damaged.push(damage(format!(
                    "{} bytes, {} when committed",
                    meta.len(),
                    sum.bytes
                ))),
                Some(sum) if depth == Depth::Full => {
                    report.bytes_read += meta.len();
                    match FileSum::of(&path) {
                        Ok(now) if now.sha256 == sum.sha256 => {}
                        Ok(_) => report
                            .damaged
                            .push(damage("checksum differs from the one committed".into())),
                        Err(e) => report.damaged.push(damage(format!("unreadable: {e}"))),
                    }
                }
                Some(_) => {}
            },
        }
        progress(i + 1, total);
    }
    if depth == Depth::Full {
        // Parts of older formats have no sums: read them back to find torn files.
        let dim = manifest.model.dim;
        for p in manifest.parts.iter().filter(|p| p.table.is_none()) {
            let damaged = report
                .damaged
                .iter()
                .any(|d| d.owner == Owner::Part(p.id.clone()));
            if damaged {
                continue;
            }
            match crate::table::read_part(&dir.join(p.table_file()), dim) {
                Ok((rows, _)) if rows.len() == p.rows => {}
                Ok((rows, _)) => report.damaged.push(Damage {
                    file: p.table_file(),
                    owner: Owner::Part(p.id.clone()),
                    what: format!("holds {} rows, the manifest says {}", rows.len(), p.rows),
                }),
                Err(e) => report.damaged.push(Damage {
                    file: p.table_file(),
                    owner: Owner::Part(p.id.clone()),
                    what: format!("unreadable: {e}"),
                }),
            }
        }
    }
    report.missing_scenes = manifest.missing_scenes().into_iter().cloned().collect();
    report
}

/// What a repair did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// What the full check found before repairing.
    pub found: Vec<Damage>,
    /// Scenes dropped with their damaged parts (index them again to get their rows back).
    pub dropped_scenes: Vec<SceneEntry>,
    /// Whether the graph and text index were rebuilt.
    pub rebuilt_derived: bool,
}

/// Repairs the index in `dir` (taking the writer lock): a full check, then damaged parts and the
/// scenes in them are dropped and damaged derived structures rebuilt from the parts, as one
/// commit. A sound index is left as it is.
pub fn repair(dir: &Path, progress: &mut dyn FnMut(usize, usize)) -> Result<RepairReport> {
    // Not `IndexWriter::open_existing`: that refuses a damaged index, which is why we are here.
    let mut writer = IndexWriter::open_for_repair(dir)?;
    let report = check(dir, writer.manifest(), Depth::Full, progress);
    let parts: HashSet<String> = report
        .damaged
        .iter()
        .filter_map(|d| match &d.owner {
            Owner::Part(id) => Some(id.clone()),
            Owner::Derived => None,
        })
        .collect();
    let derived = report.damaged.iter().any(|d| d.owner == Owner::Derived);
    let mut out = RepairReport {
        found: report.damaged,
        ..RepairReport::default()
    };
    if parts.is_empty()
        && !derived
        && writer.manifest().derived_current()
        && !writer.manifest().needs_upgrade()
    {
        return Ok(out);
    }
    out.dropped_scenes = writer.drop_damaged(&parts, derived)?;
    out.rebuilt_derived = !writer.manifest().derived_current();
    writer.finish_repair()?;
    Ok(out)
}
