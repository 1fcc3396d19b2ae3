//! The index maintenance commands through the real CLI: `index check` finds a truncated part
//! that `index info` names and `index add` refuses to build on, `index repair` drops its scene and
//! prints the command that indexes it again; `index relocate` points an index at moved scenes.

use std::path::Path;
use std::process::Output;

use anyhow::{ensure, Result};

use crate::common::{nadir, root, tiny_index_add};

fn run(args: &[&str], index: &Path, extra: &[&Path]) -> Result<Output> {
    let mut cmd = nadir()?;
    cmd.args(args).arg("--index").arg(index).args(extra);
    Ok(cmd.output()?)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_repair_and_relocate_through_the_cli() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let scenes = tmp.path().join("scenes");
    std::fs::create_dir_all(&scenes)?;
    for name in ["grassland.tif", "neon-osbs-forest.tif"] {
        std::fs::copy(root().join("data/scenes").join(name), scenes.join(name))?;
    }
    let index = tmp.path().join("index");
    let add =
        |paths: &[&Path]| -> Result<Output> { Ok(tiny_index_add(&index, 512, 1000)?.args(paths).output()?) };
    let first = root().join("data/scenes/manila-pasig-river.tif");
    let o = add(&[&first, &scenes.join("grassland.tif")])?;
    ensure!(o.status.success(), "{}", text(&o));
    let o = add(&[&scenes.join("neon-osbs-forest.tif")])?;
    ensure!(o.status.success(), "{}", text(&o));
    let o = run(&["index", "check"], &index, &[])?;
    ensure!(
        o.status.success() && text(&o).contains("0 damaged"),
        "{}",
        text(&o)
    );

    // Truncate the second part (the forest scene's).
    let m = nadir_indexer::Manifest::load(&index)?;
    ensure!(m.parts.len() == 2, "two commits, two parts");
    let part = index.join(m.parts[1].table_file());
    let f = std::fs::OpenOptions::new().write(true).open(&part)?;
    f.set_len(f.metadata()?.len() / 2)?;
    drop(f);
    let o = run(&["index", "info"], &index, &[])?;
    ensure!(
        text(&o).contains("damaged: parts/"),
        "info names the damage: {}",
        text(&o)
    );
    let o = add(&[&scenes.join("neon-osbs-forest.tif")])?;
    ensure!(
        !o.status.success() && text(&o).contains("damaged") && text(&o).contains("repair"),
        "add refuses a damaged index: {}",
        text(&o)
    );
    let o = run(&["index", "check"], &index, &[])?;
    ensure!(
        o.status.code() == Some(1) && text(&o).contains("1 damaged"),
        "{}",
        text(&o)
    );
    let o = run(&["index", "repair"], &index, &[])?;
    ensure!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    ensure!(
        out.contains("1 scenes dropped") && out.contains("index them again with: nadir index add"),
        "{out}"
    );
    ensure!(
        out.contains("neon-osbs-forest.tif"),
        "names the dropped scene: {out}"
    );
    let o = add(&[&scenes.join("neon-osbs-forest.tif")])?;
    ensure!(
        o.status.success() && text(&o).contains("1 scenes added"),
        "{}",
        text(&o)
    );
    let o = run(&["index", "check"], &index, &[])?;
    ensure!(o.status.success(), "{}", text(&o));

    // The scenes folder moves: check names the missing files, relocate fixes them.
    let moved = tmp.path().join("moved");
    std::fs::rename(&scenes, &moved)?;
    let o = run(&["index", "check", "--quick"], &index, &[])?;
    ensure!(
        o.status.success()
            && text(&o).contains("2 scene files missing")
            && text(&o).contains("nadir index relocate"),
        "{}",
        text(&o)
    );
    let mut cmd = nadir()?;
    let o = cmd
        .args(["index", "relocate", "--verify", "--index"])
        .arg(&index)
        .arg("--from")
        .arg(&scenes)
        .arg("--to")
        .arg(&moved)
        .output()?;
    ensure!(
        o.status.success() && text(&o).contains("2 scenes relocated"),
        "{}",
        text(&o)
    );
    let o = run(&["index", "check", "--quick"], &index, &[])?;
    ensure!(text(&o).contains("0 scene files missing"), "{}", text(&o));
    Ok(())
}
