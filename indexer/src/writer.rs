//! The write side of the index. A writer holds the folder's lock, buffers finished scenes and
//! commits them as a new part: thumbnails pack, parquet table, then the manifest (each an atomic
//! replace). A scene added again with other bytes replaces its rows in the same commit. After the
//! rows, the derived structures (HNSW, text index) are rebuilt for the new generation and the
//! manifest is committed again. Killed at any point, the folder holds the last committed
//! manifest and files it names; the next writer removes the rest.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fsutil::{self, WriterLock};
use crate::manifest::{Derived, Manifest, ModelInfo, PartEntry, SceneEntry};
use crate::raster::RasterOptions;
use crate::reader::Rows;
use crate::table::{self, PatchRecord};
use crate::thumbs::{Pack, PackBuilder};
use crate::tiling::Tiling;
use crate::{ann, text};

/// By default, commit when this many rows are buffered...
pub const COMMIT_ROWS: usize = 4096;
/// ...or when the oldest buffered scene waited this long.
const FLUSH_AFTER: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
struct Pending {
    scenes: Vec<SceneEntry>,
    rows: Vec<PatchRecord>,
    vectors: Vec<f32>,
    pack: PackBuilder,
}

/// A finished scene, ready to be committed.
#[derive(Debug)]
pub struct SceneRows {
    /// Its manifest entry (`part` and `patches` are filled in by the writer).
    pub entry: SceneEntry,
    /// Its rows (`thumb` is filled in by the writer).
    pub rows: Vec<PatchRecord>,
    /// Row-major embeddings.
    pub vectors: Vec<f32>,
    /// One JPEG thumbnail per row.
    pub thumbnails: Vec<Vec<u8>>,
}

/// The single writer of an index folder.
#[derive(Debug)]
pub struct IndexWriter {
    dir: PathBuf,
    manifest: Manifest,
    pending: Pending,
    oldest_pending: Option<Instant>,
    commit_rows: usize,
    _lock: WriterLock,
}

impl IndexWriter {
    /// Opens the index in `dir` for writing, or prepares a new one there. An existing index must
    /// have been built by the same model with the same tiling and raster options.
    pub fn open(dir: &Path, model: ModelInfo, tiling: Tiling, raster: RasterOptions) -> Result<Self> {
        tiling.validate()?;
        let lock = WriterLock::acquire(dir)?;
        let manifest = if Manifest::exists(dir) {
            let m = Manifest::load(dir)?;
            if m.model.id() != model.id() {
                return Err(Error::Invalid(format!(
                    "index {} was built with `{}` (sha256 {}); adding with `{}` (sha256 {}) would mix two \
                     vector spaces: pass the index's model, or use a new index",
                    dir.display(),
                    m.model.name,
                    &m.model.sha256[..m.model.sha256.len().min(12)],
                    model.name,
                    &model.sha256[..model.sha256.len().min(12)],
                )));
            }
            if m.tiling != tiling || m.raster != raster {
                return Err(Error::Invalid(format!(
                    "index {} was built with other patch settings ({}); use the same ones or a new index",
                    dir.display(),
                    serde_json::to_string(&(&m.tiling, &m.raster)).unwrap_or_default()
                )));
            }
            m
        } else {
            Manifest::new(model, tiling, raster)
        };
        let removed = fsutil::collect_garbage(dir, &manifest.live_paths())?;
        if removed > 0 {
            tracing::info!(removed, "removed files of an interrupted run");
        }
        Ok(IndexWriter {
            dir: dir.to_path_buf(),
            manifest,
            pending: Pending::default(),
            oldest_pending: None,
            commit_rows: COMMIT_ROWS,
            _lock: lock,
        })
    }

    /// Commits whenever this many rows are buffered (smaller: less work lost to a crash, more
    /// part files).
    pub fn set_commit_rows(&mut self, rows: usize) {
        self.commit_rows = rows.max(1);
    }

    /// The last committed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a scene with this id and checksum is already indexed (or buffered).
    pub fn has_scene(&self, id: &str, sha256: &str) -> bool {
        self.manifest.scene(id).is_some_and(|s| s.sha256 == sha256)
            || self
                .pending
                .scenes
                .iter()
                .any(|s| s.id == id && s.sha256 == sha256)
    }

    /// Buffers a finished scene; commits when enough is buffered.
    pub fn add_scene(&mut self, scene: SceneRows) -> Result<()> {
        let SceneRows {
            mut entry,
            mut rows,
            vectors,
            thumbnails,
        } = scene;
        assert_eq!(rows.len(), thumbnails.len(), "one thumbnail per row");
        assert_eq!(
            vectors.len(),
            rows.len() * self.manifest.model.dim,
            "one embedding per row"
        );
        if let Some(i) = self.pending.scenes.iter().position(|s| s.id == entry.id) {
            // The same scene twice in one batch: keep the newer.
            self.pending.scenes.remove(i);
            self.drop_pending_rows(&entry.id);
        }
        for (r, jpeg) in rows.iter_mut().zip(&thumbnails) {
            r.thumb = self.pending.pack.push(jpeg);
        }
        entry.patches = rows.len();
        self.pending.scenes.push(entry);
        self.pending.rows.extend(rows);
        self.pending.vectors.extend(vectors);
        self.oldest_pending.get_or_insert_with(Instant::now);
        if self.pending.rows.len() >= self.commit_rows
            || self.oldest_pending.is_some_and(|t| t.elapsed() >= FLUSH_AFTER)
        {
            self.commit()?;
        }
        Ok(())
    }

    fn drop_pending_rows(&mut self, scene: &str) {
        let dim = self.manifest.model.dim;
        let keep: Vec<bool> = self.pending.rows.iter().map(|r| r.scene != scene).collect();
        let mut i = 0;
        self.pending.rows.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let vectors = std::mem::take(&mut self.pending.vectors);
        self.pending.vectors = vectors
            .chunks_exact(dim)
            .zip(&keep)
            .filter(|(_, k)| **k)
            .flat_map(|(v, _)| v.to_vec())
            .collect();
    }

    fn new_part_id(&self, generation: u64) -> String {
        use sha2::{Digest, Sha256};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let h = Sha256::digest(format!("{}-{}-{:?}", std::process::id(), generation, nanos));
        format!("{generation:06}-{}", hex::encode(&h[..4]))
    }

    fn write_part(
        &self,
        id: &str,
        rows: &[PatchRecord],
        vectors: &[f32],
        pack: &PackBuilder,
    ) -> Result<PartEntry> {
        let part = PartEntry {
            id: id.to_string(),
            rows: rows.len(),
        };
        pack.write(&self.dir.join(part.thumbs_file()))?;
        table::write_part(
            &self.dir.join(part.table_file()),
            rows,
            vectors,
            self.manifest.model.dim,
        )?;
        Ok(part)
    }

    /// Commits the buffered scenes as one new part (no-op when nothing is buffered).
    pub fn commit(&mut self) -> Result<()> {
        if self.pending.scenes.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.oldest_pending = None;
        let generation = self.manifest.generation + 1;
        let mut next = self.manifest.clone();
        let replaced: HashSet<&str> = pending
            .scenes
            .iter()
            .filter(|s| self.manifest.scene(&s.id).is_some())
            .map(|s| s.id.as_str())
            .collect();
        // Rewrite the parts holding rows of replaced scenes without them.
        let affected: HashSet<&str> = self
            .manifest
            .scenes
            .iter()
            .filter(|s| replaced.contains(s.id.as_str()))
            .map(|s| s.part.as_str())
            .collect();
        let mut parts = Vec::with_capacity(next.parts.len() + 1);
        for part in &self.manifest.parts {
            if !affected.contains(part.id.as_str()) {
                parts.push(part.clone());
                continue;
            }
            let (rows, vectors) = table::read_part(&self.dir.join(part.table_file()), next.model.dim)?;
            let old_pack = Pack::open(&self.dir.join(part.thumbs_file()))?;
            let dim = next.model.dim;
            let (mut kept, mut kept_vectors, mut pack) = (Vec::new(), Vec::new(), PackBuilder::default());
            for (mut r, v) in rows.into_iter().zip(vectors.chunks_exact(dim)) {
                if replaced.contains(r.scene.as_str()) {
                    continue;
                }
                r.thumb = pack.push(&old_pack.get(r.thumb)?);
                kept.push(r);
                kept_vectors.extend_from_slice(v);
            }
            if kept.is_empty() {
                continue;
            }
            let id = self.new_part_id(generation);
            parts.push(self.write_part(&id, &kept, &kept_vectors, &pack)?);
            for s in next.scenes.iter_mut().filter(|s| s.part == part.id) {
                s.part = id.clone();
            }
        }
        let id = self.new_part_id(generation);
        parts.push(self.write_part(&id, &pending.rows, &pending.vectors, &pending.pack)?);
        next.parts = parts;
        next.scenes.retain(|s| !replaced.contains(s.id.as_str()));
        next.scenes.extend(pending.scenes.into_iter().map(|mut s| {
            s.part = id.clone();
            s
        }));
        next.generation = generation;
        next.save(&self.dir)?;
        tracing::info!(generation, rows = next.rows(), "committed");
        self.manifest = next;
        Ok(())
    }

    /// Rebuilds the HNSW graph and the text index when they lag behind the rows, then commits
    /// them and removes superseded files.
    pub fn rebuild_derived(&mut self) -> Result<()> {
        self.commit()?;
        if self.manifest.derived_current()
            || (self.manifest.generation == 0 && self.manifest.parts.is_empty())
        {
            return Ok(());
        }
        let generation = self.manifest.generation;
        let rows = Rows::read(&self.dir, &self.manifest)?;
        let pid = std::process::id();
        let hnsw = if rows.records.is_empty() {
            None
        } else {
            let name = format!("hnsw-{generation:06}");
            let tmp = self.dir.join(format!("{name}.tmp-{pid}"));
            ann::build(&tmp, &rows.vectors, self.manifest.model.dim)?;
            fsutil::publish_dir(&tmp, &self.dir.join(&name))?;
            Some(name)
        };
        let text_name = format!("text-{generation:06}");
        let tmp = self.dir.join(format!("{text_name}.tmp-{pid}"));
        let names = |scene: &str| -> String {
            let m = &self.manifest;
            m.scene(scene)
                .and_then(|s| s.path.file_stem().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| scene.to_string())
        };
        text::build(&tmp, &rows.records, &names)?;
        fsutil::publish_dir(&tmp, &self.dir.join(&text_name))?;
        self.manifest.derived = Some(Derived {
            generation,
            rows: rows.records.len(),
            hnsw,
            text: text_name,
        });
        self.manifest.save(&self.dir)?;
        fsutil::collect_garbage(&self.dir, &self.manifest.live_paths())?;
        Ok(())
    }

    /// Commits what is buffered and brings the derived structures up to date.
    pub fn finish(mut self) -> Result<Manifest> {
        self.rebuild_derived()?;
        Ok(self.manifest)
    }
}
