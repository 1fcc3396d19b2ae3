//! `nadir finetune` and `nadir predict` as a user runs them: a folder of plain aerial photos with
//! colour masks (Dubai, from `../shared/data`) and the committed `classes.json` -> a model folder
//! -> a class map and polygons of a photo; and the clear errors of bad input.

use std::ffi::OsStr;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::common::{nadir, root};

#[test]
fn finetune_then_predict_a_photo() -> Result<()> {
    let dubai = root().join("../shared/data/segmentation/dubai/tile1");
    if !dubai.is_dir() {
        eprintln!(
            "finetune_then_predict_a_photo skipped: {} is absent",
            dubai.display()
        );
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let set = tmp.path().join("set");
    std::fs::create_dir_all(set.join("images"))?;
    std::fs::create_dir_all(set.join("masks"))?;
    for part in ["001", "002", "003"] {
        let name = format!("image_part_{part}");
        std::fs::copy(
            dubai.join(format!("images/{name}.jpg")),
            set.join(format!("images/{name}.jpg")),
        )?;
        std::fs::copy(
            dubai.join(format!("masks/{name}.png")),
            set.join(format!("masks/{name}.png")),
        )?;
    }
    let model = tmp.path().join("model");
    let classes = root().join("data/segmentation/dubai-classes.json");
    // The random encoder needs no weights file; two short epochs on 128 px chips.
    let out = {
        let mut cmd = nadir()?;
        cmd.args([
            "finetune",
            "--encoder",
            "random",
            "--chip",
            "128",
            "--epochs",
            "2",
            "--train",
        ])
        .arg(&set)
        .arg("--out")
        .arg(&model)
        .arg("--classes")
        .arg(&classes);
        cmd.output()?
    };
    ensure!(
        out.status.success(),
        "finetune failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(stdout.contains("val mIoU"), "{stdout}");
    for f in ["config.json", "decoder.safetensors", "report.json"] {
        ensure!(model.join(f).is_file(), "model folder lacks {f}");
    }
    let report: Value = serde_json::from_slice(&std::fs::read(model.join("report.json"))?)?;
    ensure!(
        report["train_images"].as_array().map(Vec::len) == Some(2),
        "{report}"
    );
    ensure!(
        report["val_images"].as_array().map(Vec::len) == Some(1),
        "one image held out: {report}"
    );

    // Predict a photo it has not seen.
    let photo = dubai.join("images/image_part_004.jpg");
    let map = tmp.path().join("map.tif");
    let geojson = tmp.path().join("map.geojson");
    let out = {
        let mut cmd = nadir()?;
        cmd.arg("predict")
            .arg("--model")
            .arg(&model)
            .arg(&photo)
            .arg("--out")
            .arg(&map)
            .arg("--geojson")
            .arg(&geojson);
        cmd.output()?
    };
    ensure!(
        out.status.success(),
        "predict failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = nadir_clip::image::open(&photo)?;
    let ds = gdal::Dataset::open(&map)?;
    let (w, h) = ds.raster_size();
    ensure!(
        (w, h) == (img.width() as usize, img.height() as usize),
        "map {w}x{h} vs the photo"
    );
    let values = ds.rasterband(1)?.read_as::<u8>((0, 0), (w, h), (w, h), None)?;
    ensure!(
        values.data().iter().all(|&v| v < 5),
        "a class (of 5) for every pixel"
    );
    let fc: Value = serde_json::from_slice(&std::fs::read(&geojson)?)?;
    ensure!(fc["type"] == "FeatureCollection");
    ensure!(
        fc["nadir:coordinates"]
            .as_str()
            .is_some_and(|s| s.starts_with("pixel")),
        "plain photo: pixel coordinates"
    );
    let n = fc["features"].as_array().context("features")?.len();
    ensure!(n > 0, "no polygons");

    // Bad input: a model folder that is not empty, a missing model, a folder without pairs.
    let err = run_failing(&[
        os("finetune"),
        os("--encoder"),
        os("random"),
        os("--train"),
        set.as_os_str(),
        os("--out"),
        model.as_os_str(),
        os("--classes"),
        classes.as_os_str(),
    ])?;
    ensure!(err.contains("not empty") && err.contains("model"), "{err}");
    let nope = tmp.path().join("nope");
    let err = run_failing(&[
        os("predict"),
        os("--model"),
        nope.as_os_str(),
        photo.as_os_str(),
        os("--out"),
        map.as_os_str(),
    ])?;
    ensure!(err.contains("nope") && err.contains("config.json"), "{err}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty)?;
    let m2 = tmp.path().join("m2");
    let err = run_failing(&[
        os("finetune"),
        os("--train"),
        empty.as_os_str(),
        os("--out"),
        m2.as_os_str(),
    ])?;
    ensure!(err.contains("no image/mask pairs"), "{err}");
    // Colour masks without colours for the classes.
    let m3 = tmp.path().join("m3");
    let err = run_failing(&[
        os("finetune"),
        os("--train"),
        set.as_os_str(),
        os("--out"),
        m3.as_os_str(),
    ])?;
    ensure!(
        err.contains("image_part_001.png") && err.contains("classes.json"),
        "{err}"
    );
    Ok(())
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Runs `nadir` with `args`; it must fail. Returns its stderr.
fn run_failing(args: &[&OsStr]) -> Result<String> {
    let out = nadir()?.args(args).output()?;
    ensure!(!out.status.success(), "nadir {args:?} succeeded");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}
