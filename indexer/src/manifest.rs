//! `manifest.json`: the one commit point of an index. It names the format version, the model, the
//! patch parameters, every scene with its checksum, the part files that hold the rows and the
//! derived structures (HNSW, text index) built from them. A file the manifest does not name is
//! garbage from an interrupted run; replacing the manifest (temp file + rename) commits a change.
//!
//! Scene paths below the index folder are stored relative to it (an index moved together with
//! its scenes keeps working); in memory every scene path is absolute.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::raster::RasterOptions;
use crate::tiling::Tiling;

/// The format this crate writes. Version 2 replaced version 1's hnsw_rs dump with Nadir's own
/// graph file ([`crate::ann`]). Version 3 puts the GeoParquet `geo` metadata in the parquet footer
/// of every part (version 2 had it only inside the serialised arrow schema), records the size
/// and sha256 of every file at commit (parts, thumbnail packs, graph, text index) and stores
/// scene paths below the index folder relative to it.
pub const FORMAT_VERSION: u32 = 3;
/// Older versions this crate still opens, read-only: a version 1 manifest loads without its
/// derived structures, so search falls back to exact scans. The first writer (`nadir index add`
/// or `nadir index upgrade`) rewrites the parts, records checksums, rebuilds what is missing and
/// saves the manifest as the current version.
pub const READS_VERSIONS: std::ops::RangeInclusive<u32> = 1..=FORMAT_VERSION;
/// The name of the manifest file inside an index directory.
pub const MANIFEST: &str = "manifest.json";
const FORMAT_NAME: &str = "nadir-index";

/// `dir` as an absolute path, without resolving links (the folder may not exist yet).
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The model whose vectors an index holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The encoder's name (`nadir-lite`, `remoteclip-vit-b-32`, `clay-v0`...).
    pub name: String,
    /// The checksum of its weights (or of the imported source).
    pub sha256: String,
    /// The embedding dimension.
    pub dim: usize,
    /// Whether the model can encode text (imported embeddings cannot).
    pub text: bool,
    /// Where the weights were loaded from when not a known name (a canonical file path), so a
    /// query can load the same model without being told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ModelInfo {
    /// The id the `clip` crate compares.
    pub fn id(&self) -> nadir_clip::ModelId {
        nadir_clip::ModelId {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

/// One indexed scene (a raster or a plain image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneEntry {
    /// Stable id: file stem plus a hash of the canonical path.
    pub id: String,
    /// The canonical path it was read from (on disk: relative to the index folder when below it).
    pub path: PathBuf,
    /// sha256 of the file's bytes: an unchanged scene is skipped, a changed one replaced.
    pub sha256: String,
    /// The part holding its rows.
    pub part: String,
    /// Patches kept.
    pub patches: usize,
    /// Windows skipped as nodata or empty.
    pub skipped: usize,
    pub width: u32,
    pub height: u32,
    /// EPSG code of the source CRS, when it has one.
    pub epsg: Option<u32>,
    /// Whether the scene is georeferenced (rows have footprints and H3 cells).
    pub georeferenced: bool,
    /// Ground size of a source pixel in metres.
    pub pixel_size_m: Option<f64>,
    /// Tags given when it was added.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The size and checksum of a file, recorded when it was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub bytes: u64,
    pub sha256: String,
}

impl FileSum {
    /// Sums the file at `path` (reads it whole).
    pub fn of(path: &Path) -> Result<Self> {
        let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        let sha256 = nadir_clip::encoder::sha256_file(path)?;
        Ok(FileSum { bytes, sha256 })
    }
}

/// A part: one parquet file of rows plus the pack of their thumbnails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartEntry {
    pub id: String,
    pub rows: usize,
    /// The parquet file's sum (format 3 on; `None` in older indexes until upgraded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<FileSum>,
    /// The thumbnail pack's sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbs: Option<FileSum>,
}

impl PartEntry {
    /// The parquet file of this part, relative to the index directory.
    pub fn table_file(&self) -> PathBuf {
        Path::new("parts").join(format!("{}.parquet", self.id))
    }
    /// The thumbnail pack of this part, relative to the index directory.
    pub fn thumbs_file(&self) -> PathBuf {
        Path::new("parts").join(format!("{}.thumbs", self.id))
    }
}

/// Structures derived from the rows, valid for one generation of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derived {
    /// The generation of rows they were built from.
    pub generation: u64,
    /// Rows they cover (the sum of the parts' rows).
    pub rows: usize,
    /// Folder of the HNSW dump, relative to the index directory.
    pub hnsw: Option<String>,
    /// Folder of the tantivy index.
    pub text: String,
    /// Every file of both folders (path relative to the index folder, `/`-separated) with its
    /// sum (format 3 on).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub files: std::collections::BTreeMap<String, FileSum>,
}

/// The manifest of an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub model: ModelInfo,
    pub tiling: Tiling,
    pub raster: RasterOptions,
    /// Bumped by every commit that changes rows.
    pub generation: u64,
    pub scenes: Vec<SceneEntry>,
    pub parts: Vec<PartEntry>,
    pub derived: Option<Derived>,
}

impl Manifest {
    /// A new, empty manifest.
    pub fn new(model: ModelInfo, tiling: Tiling, raster: RasterOptions) -> Self {
        Manifest {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            model,
            tiling,
            raster,
            generation: 0,
            scenes: Vec::new(),
            parts: Vec::new(),
            derived: None,
        }
    }

    /// Reads `dir/manifest.json`, refusing other formats and versions.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::format(&path, format!("not valid JSON: {e}")))?;
        let format = value.get("format").and_then(|v| v.as_str()).unwrap_or_default();
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or_default();
        if format != FORMAT_NAME {
            return Err(Error::format(&path, "not a Nadir index manifest"));
        }
        let readable = u32::try_from(version).is_ok_and(|v| READS_VERSIONS.contains(&v));
        if !readable {
            return Err(Error::format(
                &path,
                format!(
                    "format version {version}; this build reads versions {} to {FORMAT_VERSION}",
                    READS_VERSIONS.start()
                ),
            ));
        }
        let mut manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| Error::format(&path, format!("malformed manifest: {e}")))?;
        manifest.validate_names(&path)?;
        if manifest.version < FORMAT_VERSION {
            tracing::warn!(
                manifest = %path.display(),
                version = manifest.version,
                "an index of an older format, opened read-only as it is; `nadir index upgrade` (or the next `nadir index add`) brings it to version {FORMAT_VERSION}"
            );
        }
        if manifest.version < 2 {
            // Version 1's graph was an hnsw_rs dump this build does not read.
            manifest.derived = None;
        }
        let root = absolute(dir);
        for s in &mut manifest.scenes {
            if s.path.is_relative() {
                s.path = root.join(&s.path);
            }
        }
        Ok(manifest)
    }

    /// Part ids and derived folder names become paths inside the index folder: refuse any that
    /// could point elsewhere (`..`, separators) before anything joins them.
    fn validate_names(&self, path: &Path) -> Result<()> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        for p in &self.parts {
            if !plain(&p.id) {
                return Err(Error::format(
                    path,
                    format!("part id {:?} is not a plain name", p.id),
                ));
            }
        }
        for s in &self.scenes {
            if !plain(&s.part) {
                return Err(Error::format(
                    path,
                    format!("scene {:?} names part {:?}, not a plain name", s.id, s.part),
                ));
            }
        }
        if let Some(d) = &self.derived {
            for name in d.hnsw.iter().chain(std::iter::once(&d.text)) {
                if !plain(name) {
                    return Err(Error::format(
                        path,
                        format!("derived folder {name:?} is not a plain name"),
                    ));
                }
            }
            for f in d.files.keys() {
                let ok = f.split('/').all(|c| !c.is_empty() && c != ".." && c != ".")
                    && !f.starts_with('/')
                    && !f.contains('\\');
                if !ok {
                    return Err(Error::format(
                        path,
                        format!("derived file {f:?} is not inside the index"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the index is of an older format than this build writes.
    pub fn needs_upgrade(&self) -> bool {
        self.version < FORMAT_VERSION
    }

    /// Whether `dir` holds a manifest.
    pub fn exists(dir: &Path) -> bool {
        dir.join(MANIFEST).is_file()
    }

    /// Commits this manifest: atomic replace of `dir/manifest.json`. Scene paths below `dir` are
    /// written relative to it.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut on_disk = self.clone();
        let roots = [
            absolute(dir),
            dir.canonicalize().unwrap_or_else(|_| absolute(dir)),
        ];
        for s in &mut on_disk.scenes {
            if let Some(rel) = roots.iter().find_map(|r| s.path.strip_prefix(r).ok()) {
                s.path = rel.to_path_buf();
            }
        }
        let bytes = serde_json::to_vec_pretty(&on_disk).expect("a manifest serialises");
        fsutil::write_atomic(&dir.join(MANIFEST), &bytes)
    }

    /// Scenes whose file is not where the manifest says (moved or deleted): their tiles and
    /// exports cannot be read. `nadir index relocate` points them at their new place.
    pub fn missing_scenes(&self) -> Vec<&SceneEntry> {
        self.scenes
            .iter()
            .filter(|s| !crate::vsi::is_virtual(&s.path) && !s.path.exists())
            .collect()
    }

    /// Rows in the index.
    pub fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }

    /// The scene with this id.
    pub fn scene(&self, id: &str) -> Option<&SceneEntry> {
        self.scenes.iter().find(|s| s.id == id)
    }

    /// Whether the derived structures match the rows.
    pub fn derived_current(&self) -> bool {
        self.derived
            .as_ref()
            .is_some_and(|d| d.generation == self.generation && d.rows == self.rows())
    }

    /// Every file or folder (relative) the manifest refers to.
    pub fn live_paths(&self) -> Vec<PathBuf> {
        let mut out = vec![PathBuf::from(MANIFEST)];
        for p in &self.parts {
            out.push(p.table_file());
            out.push(p.thumbs_file());
        }
        if let Some(d) = &self.derived {
            if let Some(h) = &d.hnsw {
                out.push(PathBuf::from(h));
            }
            out.push(PathBuf::from(&d.text));
        }
        out
    }
}
