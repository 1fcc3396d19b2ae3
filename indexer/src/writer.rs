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
use crate::manifest::{Derived, FileSum, Manifest, ModelInfo, PartEntry, SceneEntry, FORMAT_VERSION};
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
        Self::with_lock(dir, manifest, lock, true)
    }

    /// Opens an existing index for writing with its own model and settings (maintenance: upgrade,
    /// repair).
    pub fn open_existing(dir: &Path) -> Result<Self> {
        Self::lock_existing(dir, true)
    }

    /// Like [`IndexWriter::open_existing`], without refusing damage or upgrading: repair does
    /// both after dropping what is damaged.
    pub(crate) fn open_for_repair(dir: &Path) -> Result<Self> {
        Self::lock_existing(dir, false)
    }

    fn lock_existing(dir: &Path, verify: bool) -> Result<Self> {
        let lock = WriterLock::acquire(dir)?;
        if !Manifest::exists(dir) {
            return Err(Error::format(dir, "no index here (no manifest.json)"));
        }
        let manifest = Manifest::load(dir)?;
        Self::with_lock(dir, manifest, lock, verify)
    }

    /// Upgrades what repair left (when of an older format) and rebuilds the derived structures.
    pub(crate) fn finish_repair(mut self) -> Result<Manifest> {
        if self.manifest.needs_upgrade() {
            self.upgrade()?;
        }
        self.finish()
    }

    fn with_lock(dir: &Path, manifest: Manifest, lock: WriterLock, verify: bool) -> Result<Self> {
        let removed = fsutil::collect_garbage(dir, &manifest.live_paths())?;
        if removed > 0 {
            tracing::info!(removed, "removed files of an interrupted run");
        }
        let mut writer = IndexWriter {
            dir: dir.to_path_buf(),
            manifest,
            pending: Pending::default(),
            oldest_pending: None,
            commit_rows: COMMIT_ROWS,
            _lock: lock,
        };
        if !verify {
            return Ok(writer);
        }
        let damaged = crate::check::quick(dir, &writer.manifest).damaged;
        if !damaged.is_empty() {
            return Err(Error::format(
                dir,
                format!(
                    "damaged: {}; `nadir index check` says more, `nadir index repair` rebuilds or drops what is damaged",
                    crate::check::describe(&damaged)
                ),
            ));
        }
        if writer.manifest.needs_upgrade() {
            writer.upgrade()?;
        }
        Ok(writer)
    }

    /// Brings an index of an older format to the current one: every part is rewritten in place
    /// with the same rows (footer `geo` metadata) and both its files summed; the derived
    /// structures are summed, or dropped for a rebuild when their format changed (version 1).
    /// Rewriting a part under its own name is safe: the new file has the same rows, and a reader
    /// that opened the old one keeps reading it.
    fn upgrade(&mut self) -> Result<()> {
        let from = self.manifest.version;
        let mut next = self.manifest.clone();
        let dim = next.model.dim;
        for part in &mut next.parts {
            let path = self.dir.join(part.table_file());
            let (rows, vectors) = table::read_part(&path, dim)?;
            if rows.len() != part.rows {
                return Err(Error::format(
                    &path,
                    format!("holds {} rows, the manifest says {}", rows.len(), part.rows),
                ));
            }
            part.table = Some(table::write_part(&path, &rows, &vectors, dim)?);
            part.thumbs = Some(FileSum::of(&self.dir.join(part.thumbs_file()))?);
        }
        if let Some(d) = &mut next.derived {
            d.files = derived_sums(&self.dir, d)?;
        }
        next.version = FORMAT_VERSION;
        next.save(&self.dir)?;
        tracing::info!(
            from,
            to = FORMAT_VERSION,
            parts = next.parts.len(),
            "upgraded the index format"
        );
        self.manifest = next;
        Ok(())
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
        let mut part = PartEntry {
            id: id.to_string(),
            rows: rows.len(),
            table: None,
            thumbs: None,
        };
        let thumbs = self.dir.join(part.thumbs_file());
        pack.write(&thumbs)?;
        part.thumbs = Some(FileSum::of(&thumbs)?);
        part.table = Some(table::write_part(
            &self.dir.join(part.table_file()),
            rows,
            vectors,
            self.manifest.model.dim,
        )?);
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
        let mut derived = Derived {
            generation,
            rows: rows.records.len(),
            hnsw,
            text: text_name,
            files: Default::default(),
        };
        derived.files = derived_sums(&self.dir, &derived)?;
        self.manifest.derived = Some(derived);
        self.manifest.save(&self.dir)?;
        fsutil::collect_garbage(&self.dir, &self.manifest.live_paths())?;
        Ok(())
    }

    /// Commits new scene entries (same ids, other paths) without touching rows.
    pub(crate) fn replace_scenes(&mut self, scenes: Vec<SceneEntry>) -> Result<()> {
        let mut next = self.manifest.clone();
        next.scenes = scenes;
        next.save(&self.dir)?;
        self.manifest = next;
        Ok(())
    }

    /// Drops parts (and the scenes whose rows they hold) and the derived structures when asked,
    /// as one commit; `rebuild_derived` then rebuilds what is missing. Used by repair.
    pub(crate) fn drop_damaged(&mut self, parts: &HashSet<String>, derived: bool) -> Result<Vec<SceneEntry>> {
        let mut next = self.manifest.clone();
        let dropped: Vec<SceneEntry> = next
            .scenes
            .iter()
            .filter(|s| parts.contains(&s.part))
            .cloned()
            .collect();
        next.scenes.retain(|s| !parts.contains(&s.part));
        next.parts.retain(|p| !parts.contains(&p.id));
        if !parts.is_empty() {
            next.generation += 1;
        }
        if derived || !parts.is_empty() {
            next.derived = None;
        }
        next.save(&self.dir)?;
        self.manifest = next;
        fsutil::collect_garbage(&self.dir, &self.manifest.live_paths())?;
        Ok(dropped)
    }

    /// Commits what is buffered and brings the derived structures up to date.
    pub fn finish(mut self) -> Result<Manifest> {
        self.rebuild_derived()?;
        Ok(self.manifest)
    }
}

/// Sums every file of the derived folders, keyed by their `/`-separated path in the index.
pub(crate) fn derived_sums(dir: &Path, d: &Derived) -> Result<std::collections::BTreeMap<String, FileSum>> {
    let mut out = std::collections::BTreeMap::new();
    for folder in d.hnsw.iter().chain(std::iter::once(&d.text)) {
        let mut stack = vec![PathBuf::from(folder)];
        while let Some(rel) = stack.pop() {
            let abs = dir.join(&rel);
            for entry in std::fs::read_dir(&abs).map_err(|e| Error::io(&abs, e))? {
                let entry = entry.map_err(|e| Error::io(&abs, e))?;
                let child = rel.join(entry.file_name());
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().map_err(|e| Error::io(&abs, e))?.is_dir() {
                    stack.push(child);
                } else if !(name.starts_with(".tantivy-") && name.ends_with(".lock")) {
                    // (tantivy's empty lock files are not content)
                    let key = child
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.insert(key, FileSum::of(&dir.join(&child))?);
                }
            }
        }
    }
    Ok(out)
}
