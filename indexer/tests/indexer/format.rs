//! The on-disk format: small indexes frozen in `tests/fixtures/frozen-v<N>` (built by
//! `scripts/make_frozen_index.sh N`) must keep opening with the same rows, ids and vectors. A format
//! change that breaks the current one fails here: bump `FORMAT_VERSION` and add a frozen index
//! deliberately. Older frozen indexes must still open, and upgrade when written to.

use std::path::{Path, PathBuf};

use nadir_indexer::check::{self, Depth};
use nadir_indexer::manifest::FORMAT_VERSION;
use nadir_indexer::{Index, IndexWriter, Manifest};

fn frozen_v(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/frozen-v{version}"))
}

fn frozen() -> PathBuf {
    frozen_v(FORMAT_VERSION)
}

fn expected(version: u32) -> serde_json::Value {
    let path = frozen_v(version).join(format!("../frozen-v{version}.expected.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Rows, ids and first vector as recorded when the frozen index was made.
fn assert_rows(index: &Index, expected: &serde_json::Value) {
    assert_eq!(index.len(), expected["rows"].as_u64().unwrap() as usize);
    assert_eq!(index.dim(), expected["dim"].as_u64().unwrap() as usize);
    let ids: Vec<String> = index.records().iter().map(|r| r.id.to_string()).collect();
    let want: Vec<String> = serde_json::from_value(expected["ids"].clone()).unwrap();
    assert_eq!(ids, want);
    let first: Vec<f32> = serde_json::from_value(expected["first_vector"].clone()).unwrap();
    assert_eq!(index.vector(0), first.as_slice());
}

#[test]
fn a_version_1_index_opens_without_its_graph_and_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&frozen_v(1), dir.path());
    let index = Index::open(dir.path()).unwrap();
    assert_rows(&index, &expected(1));
    assert!(
        index.ann().is_none() && index.text().is_none(),
        "the v1 graph is not read"
    );
    // Exact scans still answer.
    assert!(index.vector(1).iter().any(|x| *x != 0.0));
    drop(index);
    let m = Manifest::load(dir.path()).unwrap();
    IndexWriter::open(dir.path(), m.model.clone(), m.tiling.clone(), m.raster.clone())
        .unwrap()
        .finish()
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved["version"], serde_json::json!(FORMAT_VERSION));
    let index = Index::open(dir.path()).unwrap();
    assert_rows(&index, &expected(1));
    assert!(index.ann().is_some() && index.text().is_some(), "rebuilt");
    let hits = index
        .ann()
        .unwrap()
        .search(index.vectors(), index.vector(3), 1, 16, None);
    assert_eq!(hits[0].0, 3);
    assert!(
        !dir.path().join("hnsw-000001/hnsw.hnsw.graph").exists(),
        "the old dump is collected"
    );
}

/// The key-value metadata of a parquet file's footer, as footer readers (DuckDB, GDAL) see it.
pub fn footer_keys(path: &Path) -> Vec<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let meta = reader.metadata().file_metadata();
    meta.key_value_metadata()
        .map(|kv| kv.iter().map(|k| k.key.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn a_version_2_index_opens_as_it_is_and_upgrades_its_footers() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&frozen_v(2), dir.path());
    let part = |m: &Manifest| dir.path().join(m.parts[0].table_file());
    let m = Manifest::load(dir.path()).unwrap();
    assert_eq!(m.version, 2, "loaded as it is on disk");
    assert!(m.needs_upgrade());
    assert_eq!(
        footer_keys(&part(&m)),
        vec!["ARROW:schema"],
        "version 2 parts have `geo` only inside the arrow schema (the defect version 3 fixes)"
    );
    let index = Index::open(dir.path()).unwrap();
    assert_rows(&index, &expected(2));
    assert!(
        index.ann().is_some() && index.text().is_some(),
        "a v2 graph is current"
    );
    drop(index);
    let raw = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    assert!(
        raw.contains("\"version\": 2"),
        "opening for reading writes nothing"
    );

    let m = IndexWriter::open_existing(dir.path()).unwrap().finish().unwrap();
    assert_eq!(m.version, FORMAT_VERSION);
    assert!(footer_keys(&part(&m)).contains(&"geo".to_string()));
    assert!(m.parts.iter().all(|p| p.table.is_some() && p.thumbs.is_some()));
    assert!(
        !m.derived.as_ref().unwrap().files.is_empty(),
        "graph and text index summed"
    );
    let r = check::check(dir.path(), &m, Depth::Full, &mut |_, _| {});
    assert!(r.ok() && r.unsummed == 0, "{:?}", r.damaged);
    let index = Index::open(dir.path()).unwrap();
    assert_rows(&index, &expected(2));
    assert!(index.ann().is_some(), "the v2 graph is kept, not rebuilt");
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_frozen_index_opens_unchanged() {
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(frozen().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        raw["version"],
        serde_json::json!(FORMAT_VERSION),
        "a frozen index of the current format"
    );
    let m = Manifest::load(&frozen()).unwrap();
    assert_eq!(m.version, FORMAT_VERSION);
    let index = Index::open(&frozen()).unwrap();
    let expected = expected(FORMAT_VERSION);
    assert_rows(&index, &expected);
    assert!(
        index.ann().is_some() && index.text().is_some(),
        "derived structures load"
    );
    for p in &m.parts {
        assert!(
            footer_keys(&frozen().join(p.table_file())).contains(&"geo".to_string()),
            "GeoParquet metadata in the parquet footer"
        );
    }
    let r = check::check(&frozen(), &m, Depth::Full, &mut |_, _| {});
    assert!(r.ok() && r.unsummed == 0 && r.files > 4, "{:?}", r.damaged);
    let thumb = index.thumbnail(0).unwrap();
    assert_eq!(&thumb[..2], &[0xFF, 0xD8], "a JPEG");
    let label = &index.records()[0].labels[0];
    assert!(index.text().unwrap().matching_rows(label).unwrap().contains(&0));
}

#[test]
fn other_versions_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(frozen().join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut older = v.clone();
    older["version"] = serde_json::json!(0);
    std::fs::write(dir.path().join("manifest.json"), older.to_string()).unwrap();
    let e = Index::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("format version 0"), "{e}");
    let mut newer = v.clone();
    newer["version"] = serde_json::json!(FORMAT_VERSION + 1);
    std::fs::write(dir.path().join("manifest.json"), newer.to_string()).unwrap();
    let e = Index::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("format version") && e.contains("manifest.json"), "{e}");
    std::fs::write(dir.path().join("manifest.json"), "{ not json").unwrap();
    assert!(Index::open(dir.path())
        .unwrap_err()
        .to_string()
        .contains("not valid JSON"));
    let e = Index::open(&dir.path().join("nowhere")).unwrap_err().to_string();
    assert!(e.contains("no index here"), "{e}");
}
