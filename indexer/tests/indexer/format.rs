//! The on-disk format: a small index frozen in `tests/fixtures/frozen-v1` (built by
//! `scripts/make_frozen_index.sh`) must keep opening with the same rows, ids and vectors. A format
//! change that breaks it fails here: bump `FORMAT_VERSION` and regenerate deliberately.

use std::path::Path;

use nadir_indexer::manifest::FORMAT_VERSION;
use nadir_indexer::{Index, Manifest};

fn frozen() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/frozen-v1"))
}

#[test]
fn the_frozen_index_opens_unchanged() {
    let m = Manifest::load(frozen()).unwrap();
    assert_eq!(m.version, FORMAT_VERSION);
    let index = Index::open(frozen()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(frozen().join("../frozen-v1.expected.json")).unwrap())
            .unwrap();
    assert_eq!(index.len(), expected["rows"].as_u64().unwrap() as usize);
    assert_eq!(index.dim(), expected["dim"].as_u64().unwrap() as usize);
    let ids: Vec<String> = index.records().iter().map(|r| r.id.to_string()).collect();
    let want: Vec<String> = serde_json::from_value(expected["ids"].clone()).unwrap();
    assert_eq!(ids, want);
    let first: Vec<f32> = serde_json::from_value(expected["first_vector"].clone()).unwrap();
    assert_eq!(index.vector(0), first.as_slice());
    assert!(
        index.ann().is_some() && index.text().is_some(),
        "derived structures load"
    );
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
