//! Crash-safe file operations: atomic replace (temp file, fsync, rename, fsync of the folder), the
//! writer lock, and removal of files no manifest names (leftovers of an interrupted run).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Replaces `path` with `bytes`: a reader sees the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Replaces `path` with what `fill` writes, atomically.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = temp_name(path);
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Moves a fully written folder into place (`to` must not exist) and syncs the parent.
pub fn publish_dir(from: &Path, to: &Path) -> Result<()> {
    sync_tree(from).map_err(|e| Error::io(from, e))?;
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    sync_dir(parent(to)).map_err(|e| Error::io(to, e))
}

fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// fsync a folder so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The exclusive writer lock of an index folder; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the lock, failing at once if another writer holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(WriterLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Invalid(format!(
                "index {} is being written by another process",
                dir.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Removes the index's own files (`parts/*`, `hnsw-*`, `text-*`, temp files) that are not in `live`:
/// files of uncommitted or superseded generations. Other files in `dir` are left alone. Call only while holding the writer lock.
pub fn collect_garbage(dir: &Path, live: &[PathBuf]) -> Result<usize> {
    let mut removed = 0;
    for sub in [Path::new(""), Path::new("parts")] {
        let folder = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let rel = sub.join(entry.file_name());
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = sub != Path::new("")
                || name.starts_with("hnsw-")
                || name.starts_with("text-")
                || (name.starts_with('.') && name.contains(".tmp-"));
            if !ours || rel == Path::new("parts") || live.contains(&rel) {
                continue;
            }
            let path = entry.path();
            let res = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            res.map_err(|e| Error::io(&path, e))?;
            tracing::debug!(path = %path.display(), "removed unreferenced file");
            removed += 1;
        }
    }
    Ok(removed)
}
