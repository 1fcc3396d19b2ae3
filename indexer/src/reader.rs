//! The read side of the index: opens a committed manifest and everything it names: the rows and
//! embeddings of every part (in manifest order: a row's number is its place in that order, the id
//! the HNSW graph and the text index use), the graph, the text index and the thumbnail packs.
//! A reader never sees a half-written change: it reads only what one manifest names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ann::Ann;
use crate::embeddings::Embeddings;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ModelInfo, SceneEntry};
use crate::table::{self, PatchId, PatchRecord};
use crate::text::TextIndex;
use crate::thumbs::Pack;

/// The rows and embeddings of an index, without the derived structures.
#[derive(Debug, Default)]
pub struct Rows {
    pub records: Vec<PatchRecord>,
    /// Row-major embeddings, `dim` per row.
    pub vectors: Embeddings,
    /// The part each row comes from (index into the manifest's parts).
    pub part_of: Vec<u32>,
}

impl Rows {
    /// Reads every part the manifest names, in order.
    pub fn read(dir: &Path, manifest: &Manifest) -> Result<Self> {
        let dim = manifest.model.dim;
        let total: usize = manifest.parts.iter().map(|p| p.rows).sum();
        let mut rows = Rows {
            vectors: Embeddings::zeroed(total * dim).map_err(|e| Error::io(dir, e))?,
            ..Rows::default()
        };
        let mut at = 0;
        for (i, part) in manifest.parts.iter().enumerate() {
            let path = dir.join(part.table_file());
            let (records, vectors) = table::read_part(&path, dim)?;
            if records.len() != part.rows {
                return Err(Error::format(
                    &path,
                    format!("holds {} rows, the manifest says {}", records.len(), part.rows),
                ));
            }
            rows.part_of.extend(std::iter::repeat_n(i as u32, records.len()));
            rows.records.extend(records);
            rows.vectors[at..at + vectors.len()].copy_from_slice(&vectors);
            at += vectors.len();
        }
        Ok(rows)
    }
}

/// An opened index, ready to search.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    manifest: Manifest,
    rows: Rows,
    by_id: HashMap<PatchId, u32>,
    ann: Option<Ann>,
    text: Option<TextIndex>,
    packs: Vec<Pack>,
}

impl Index {
    /// Opens the index in `dir`. When the derived structures lag behind the rows (a run was
    /// interrupted before rebuilding them), the index still opens: search falls back to exact
    /// scans and keyword filters are refused until `nadir index add` finishes the job.
    ///
    /// A writer may commit meanwhile and remove files of the manifest this reader started from;
    /// the reader then starts again from the new manifest (a few times at most).
    pub fn open(dir: &Path) -> Result<Self> {
        if !Manifest::exists(dir) {
            return Err(Error::format(
                dir,
                "no index here (no manifest.json); build one with `nadir index add`",
            ));
        }
        let mut attempts = 0;
        loop {
            let manifest = Manifest::load(dir)?;
            match Self::open_manifest(dir, manifest.clone()) {
                Err(Error::Io { .. } | Error::Format { .. })
                    if attempts < 3 && Manifest::load(dir)? != manifest =>
                {
                    attempts += 1
                }
                other => return other,
            }
        }
    }

    fn open_manifest(dir: &Path, manifest: Manifest) -> Result<Self> {
        // A stat per file: a torn or truncated part is named here, not as a parquet error later.
        let check = crate::check::quick(dir, &manifest);
        let (parts_damaged, derived_damaged): (Vec<_>, Vec<_>) = check
            .damaged
            .iter()
            .partition(|d| matches!(d.owner, crate::check::Owner::Part(_)));
        if !parts_damaged.is_empty() {
            return Err(Error::format(
                dir,
                format!(
                    "damaged: {}; `nadir index repair` drops the damaged parts' scenes so they can be indexed again",
                    crate::check::describe(parts_damaged.iter().copied())
                ),
            ));
        }
        if !check.missing_scenes.is_empty() {
            let first = &check.missing_scenes[0];
            tracing::warn!(
                index = %dir.display(),
                missing = check.missing_scenes.len(),
                "{} of {} scene files are not where the manifest says (first: {} at {}): search works, their tiles and exports do not; if they moved, `nadir index relocate --index {} --from OLD_FOLDER --to NEW_FOLDER`",
                check.missing_scenes.len(),
                manifest.scenes.len(),
                first.id,
                first.path.display(),
                dir.display(),
            );
        }
        let rows = Rows::read(dir, &manifest)?;
        let mut by_id = HashMap::with_capacity(rows.records.len());
        for (i, r) in rows.records.iter().enumerate() {
            if by_id.insert(r.id, i as u32).is_some() {
                return Err(Error::format(dir, format!("patch {} appears twice", r.id)));
            }
        }
        let packs = manifest
            .parts
            .iter()
            .map(|p| Pack::open(&dir.join(p.thumbs_file())))
            .collect::<Result<Vec<_>>>()?;
        let (ann, text) = match &manifest.derived {
            Some(_) if !derived_damaged.is_empty() => {
                tracing::warn!(
                    index = %dir.display(),
                    "the graph or text index is damaged ({}): exact scans instead, keyword filters refused; `nadir index repair` rebuilds them",
                    crate::check::describe(derived_damaged.iter().copied())
                );
                (None, None)
            }
            Some(d) if manifest.derived_current() => {
                let (n, dim) = (rows.records.len(), manifest.model.dim);
                let ann = d.hnsw.as_ref().and_then(|h| {
                    Ann::load(&dir.join(h), n, dim)
                        .inspect_err(|e| {
                            tracing::warn!(
                                index = %dir.display(),
                                "the graph does not load ({e}): exact scans instead; `nadir index repair` rebuilds it"
                            )
                        })
                        .ok()
                });
                let text = TextIndex::open(&dir.join(&d.text))
                    .inspect_err(|e| {
                        tracing::warn!(
                            index = %dir.display(),
                            "the text index does not open ({e}): keyword filters refused; `nadir index repair` rebuilds it"
                        )
                    })
                    .ok();
                (ann, text)
            }
            _ => {
                tracing::warn!(
                    index = %dir.display(),
                    "the graph and text index are behind the rows; run `nadir index add` to rebuild them"
                );
                (None, None)
            }
        };
        Ok(Index {
            dir: dir.to_path_buf(),
            manifest,
            rows,
            by_id,
            ann,
            text,
            packs,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn model(&self) -> &ModelInfo {
        &self.manifest.model
    }

    pub fn dim(&self) -> usize {
        self.manifest.model.dim
    }

    /// Patches in the index.
    pub fn len(&self) -> usize {
        self.rows.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.records.is_empty()
    }

    /// All rows, in row order.
    pub fn records(&self) -> &[PatchRecord] {
        &self.rows.records
    }

    pub fn record(&self, row: u32) -> &PatchRecord {
        &self.rows.records[row as usize]
    }

    /// All embeddings, row-major.
    pub fn vectors(&self) -> &[f32] {
        &self.rows.vectors
    }

    /// The embedding of a row.
    pub fn vector(&self, row: u32) -> &[f32] {
        let d = self.dim();
        &self.rows.vectors[row as usize * d..(row as usize + 1) * d]
    }

    /// The row of a patch id.
    pub fn row_of(&self, id: PatchId) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    /// The scene a row comes from.
    pub fn scene_of(&self, row: u32) -> Option<&SceneEntry> {
        self.manifest.scene(&self.record(row).scene)
    }

    /// The HNSW graph, when built and current.
    pub fn ann(&self) -> Option<&Ann> {
        self.ann.as_ref()
    }

    /// The keyword index, when built and current.
    pub fn text(&self) -> Option<&TextIndex> {
        self.text.as_ref()
    }

    /// The JPEG thumbnail of a row.
    pub fn thumbnail(&self, row: u32) -> Result<Vec<u8>> {
        let part = self.rows.part_of[row as usize] as usize;
        self.packs[part].get(self.record(row).thumb)
    }
}
