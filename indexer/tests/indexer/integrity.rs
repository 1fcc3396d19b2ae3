//! Damage and moves: checksums recorded at commit find torn and altered files, repair rebuilds or
//! drops what is damaged, a damaged graph falls back to exact scans, manifests cannot point
//! outside the index, and an index keeps its scenes when moved or relocated.

use std::path::{Path, PathBuf};

use nadir_indexer::check::{self, Depth, Owner};
use nadir_indexer::{Index, IndexWriter, Manifest};

use crate::common::{quick, tiny_model};

fn demo_scene(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/scenes")
        .join(name)
}

/// An index of two demo scenes (copied below `root/scenes`) in `root/index`.
fn small_index(root: &Path) -> PathBuf {
    let scenes = root.join("scenes");
    std::fs::create_dir_all(&scenes).unwrap();
    for name in ["grassland.tif", "manila-pasig-river.tif"] {
        std::fs::copy(demo_scene(name), scenes.join(name)).unwrap();
    }
    let index = root.join("index");
    let mut opts = quick(1024);
    opts.commit_rows = 4; // one part per scene
    nadir_indexer::add(&index, &tiny_model(), &[scenes], &opts).unwrap();
    index
}

fn truncate(path: &Path, by: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - by).unwrap();
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_truncated_part_is_named_refused_and_repaired_by_dropping_its_scene() {
    let root = tempfile::tempdir().unwrap();
    let dir = small_index(root.path());
    let m = Manifest::load(&dir).unwrap();
    assert_eq!(m.parts.len(), 2);
    let total = m.rows();
    let victim = m.parts[0].clone();
    truncate(&dir.join(victim.table_file()), 100);

    let found = check::quick(&dir, &m);
    assert_eq!(found.damaged.len(), 1, "{:?}", found.damaged);
    assert_eq!(found.damaged[0].owner, Owner::Part(victim.id.clone()));
    assert!(
        found.damaged[0].to_string().contains("bytes"),
        "{}",
        found.damaged[0]
    );
    let e = Index::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("damaged") && e.contains(&victim.id) && e.contains("repair"),
        "{e}"
    );
    // A writer refuses too: `index add` must not report "unchanged" over a damaged part.
    let e = IndexWriter::open_existing(&dir).unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");

    let r = check::repair(&dir, &mut |_, _| {}).unwrap();
    assert_eq!(r.found.len(), 1);
    assert_eq!(r.dropped_scenes.len(), 1);
    assert!(r.rebuilt_derived);
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.len(), total - victim.rows);
    assert!(index.ann().is_some(), "graph rebuilt for the rows left");
    assert!(check::check(&dir, index.manifest(), Depth::Full, &mut |_, _| {}).ok());
    // The dropped scene indexes again, and the index is whole.
    let dropped = r.dropped_scenes[0].path.clone();
    nadir_indexer::add(&dir, &tiny_model(), &[dropped], &quick(1024)).unwrap();
    assert_eq!(Index::open(&dir).unwrap().len(), total);
}

#[test]
fn a_damaged_graph_falls_back_to_exact_scans_and_is_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let dir = small_index(root.path());
    let m = Manifest::load(&dir).unwrap();
    let graph = dir
        .join(m.derived.as_ref().unwrap().hnsw.as_ref().unwrap())
        .join("graph.bin");

    // Same size, one byte changed: only the checksum sees it.
    flip_byte(&graph, 40);
    assert!(check::quick(&dir, &m).ok());
    let full = check::check(&dir, &m, Depth::Full, &mut |_, _| {});
    assert_eq!(full.damaged.len(), 1, "{:?}", full.damaged);
    assert_eq!(full.damaged[0].owner, Owner::Derived);
    assert!(full.damaged[0].to_string().contains("checksum"));

    // Truncated: the index opens without its graph (exact scans), not refused.
    truncate(&graph, 8);
    let index = Index::open(&dir).unwrap();
    assert!(index.ann().is_none() && index.len() == m.rows());
    drop(index);
    let r = check::repair(&dir, &mut |_, _| {}).unwrap();
    assert!(r.dropped_scenes.is_empty() && r.rebuilt_derived);
    let index = Index::open(&dir).unwrap();
    assert!(index.ann().is_some() && index.text().is_some());
    // A sound index is left alone.
    drop(index);
    let again = check::repair(&dir, &mut |_, _| {}).unwrap();
    assert!(again.found.is_empty() && !again.rebuilt_derived);
}

#[test]
fn manifest_names_cannot_leave_the_index_folder() {
    let root = tempfile::tempdir().unwrap();
    let dir = small_index(root.path());
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["parts"][0]["id"] = serde_json::json!("../../../etc/passwd");
    std::fs::write(dir.join("manifest.json"), v.to_string()).unwrap();
    let e = Index::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("not a plain name") && e.contains("manifest.json"),
        "{e}"
    );
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["derived"]["hnsw"] = serde_json::json!("/tmp");
    std::fs::write(dir.join("manifest.json"), v.to_string()).unwrap();
    assert!(Index::open(&dir)
        .unwrap_err()
        .to_string()
        .contains("not a plain name"));
}

#[test]
fn an_index_moved_with_its_scenes_keeps_them_and_relocation_finds_moved_ones() {
    let root = tempfile::tempdir().unwrap();
    // Scenes below the index folder are stored relative to it.
    let dir = root.path().join("project");
    let index = small_index(&dir);
    std::fs::rename(dir.join("scenes"), index.join("scenes")).unwrap();
    let outside =
        nadir_indexer::relocate::relocate(&index, &dir.join("scenes"), &index.join("scenes"), true, false)
            .unwrap();
    assert_eq!(outside.moved.len(), 2);
    let raw = std::fs::read_to_string(index.join("manifest.json")).unwrap();
    assert!(raw.contains("\"path\": \"scenes/grassland.tif\""), "{raw}");

    let moved = root.path().join("elsewhere");
    std::fs::rename(&index, &moved).unwrap();
    let m = Manifest::load(&moved).unwrap();
    assert!(m.missing_scenes().is_empty(), "scenes travel with the index");
    assert!(m.scenes.iter().all(|s| s.path.starts_with(&moved)));
    // Adding the same scene from its new place is "unchanged", not a second copy.
    let report = nadir_indexer::add(&moved, &tiny_model(), &[moved.join("scenes")], &quick(1024)).unwrap();
    assert_eq!((report.added, report.unchanged), (0, 2));

    // Scenes outside the index moved elsewhere: named as missing, then relocated.
    let archive = root.path().join("archive");
    std::fs::rename(moved.join("scenes"), &archive).unwrap();
    let m = Manifest::load(&moved).unwrap();
    assert_eq!(m.missing_scenes().len(), 2);
    let e = nadir_indexer::relocate::relocate(
        &moved,
        &moved.join("scenes"),
        &root.path().join("nowhere"),
        false,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("not at their new place") && e.contains("nothing changed"),
        "{e}"
    );
    let dry =
        nadir_indexer::relocate::relocate(&moved, &moved.join("scenes"), &archive, false, true).unwrap();
    assert!(!dry.committed && Manifest::load(&moved).unwrap().missing_scenes().len() == 2);
    std::fs::write(archive.join("grassland.tif"), b"other bytes").unwrap();
    let e = nadir_indexer::relocate::relocate(&moved, &moved.join("scenes"), &archive, true, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("other bytes"), "{e}");
    std::fs::copy(demo_scene("grassland.tif"), archive.join("grassland.tif")).unwrap();
    let r = nadir_indexer::relocate::relocate(&moved, &moved.join("scenes"), &archive, true, false).unwrap();
    assert!(r.committed && r.moved.len() == 2);
    let m = Manifest::load(&moved).unwrap();
    assert!(m.missing_scenes().is_empty());
    let raw = std::fs::read_to_string(moved.join("manifest.json")).unwrap();
    assert!(
        raw.contains(&archive.display().to_string()),
        "outside the index: absolute"
    );
}
