//! Integration tests of `nadir-segment`: streamed, blended prediction equals the whole-scene
//! computation; the GeoTIFF it writes carries the scene's grid; a model folder round-trips.

use std::path::Path;

use gdal::raster::Buffer;
use gdal::{Dataset, DriverManager};
use nadir_segment::predict::{open_for, predict_labels, PredictOptions};
use nadir_segment::{grid, ClassInfo, EncoderSpec, Segmenter, SegmenterConfig, IGNORE};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Classes with these names and no colours.
fn classes(names: &[&str]) -> Vec<ClassInfo> {
    names
        .iter()
        .map(|n| ClassInfo {
            name: (*n).into(),
            color: None,
        })
        .collect()
}

fn model(chip: u32) -> Segmenter {
    let mut cfg = SegmenterConfig::lite0_fpn(classes(&["a", "b", "c"]));
    cfg.encoder = EncoderSpec::RandomLite0 { seed: 3 };
    cfg.chip = chip;
    cfg.decoder_channels = 16;
    Segmenter::new(cfg, 5).unwrap()
}

/// A 150 x 100 px crop of the demo SpaceNet scene, with its georeference moved to the crop.
fn crop(dir: &Path) -> std::path::PathBuf {
    crop_with_hole(dir, false)
}

/// [`crop`], with nodata 0 declared and, when `hole`, a 40 x 30 px block of nodata at (20, 10).
fn crop_with_hole(dir: &Path, hole: bool) -> std::path::PathBuf {
    let src = Dataset::open(Path::new(ROOT).join("data/scenes/spacenet-atlanta-pan.tif")).unwrap();
    let (x0, y0, w, h) = (300usize, 400usize, 150usize, 100usize);
    let band = src.rasterband(1).unwrap();
    let mut buf: Buffer<u16> = band
        .read_as((x0 as isize, y0 as isize), (w, h), (w, h), None)
        .unwrap();
    for v in buf.data_mut().iter_mut() {
        *v = (*v).max(1);
    }
    if hole {
        for y in 10..40 {
            for x in 20..60 {
                buf.data_mut()[y * w + x] = 0;
            }
        }
    }
    let path = dir.join(if hole { "hole.tif" } else { "crop.tif" });
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = driver.create_with_band_type::<u16, _>(&path, w, h, 1).unwrap();
    let gt = src.geo_transform().unwrap();
    let moved = [
        gt[0] + x0 as f64 * gt[1],
        gt[1],
        gt[2],
        gt[3] + y0 as f64 * gt[5],
        gt[4],
        gt[5],
    ];
    ds.set_geo_transform(&moved).unwrap();
    ds.set_projection(&src.projection()).unwrap();
    let mut out = ds.rasterband(1).unwrap();
    out.set_no_data_value(Some(0.0)).unwrap();
    out.write((0, 0), (w, h), &mut buf).unwrap();
    path
}

#[test]
fn nodata_gets_no_prediction_and_16_bit_scenes_are_stretched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = crop_with_hole(tmp.path(), true);
    let m = model(64);
    assert_eq!(m.config().stretch, [None; 3], "a model of 8-bit images");
    let scene = open_for(&m, &path).unwrap();
    // The file's own stretch: not saturated.
    let img = scene
        .read_window(nadir_indexer::raster::Window::new(64, 40, 64, 64), 64)
        .unwrap()
        .unwrap();
    let bright = img.pixels().filter(|p| p.0[0] == 255).count();
    assert!(bright < 64 * 64 / 10, "{bright} saturated pixels");
    let labels = predict_labels(&m, &scene, &PredictOptions::default()).unwrap();
    let (w, h) = scene.size();
    for y in 0..h as usize {
        for x in 0..w as usize {
            let hole = (10..40).contains(&y) && (20..60).contains(&x);
            assert_eq!(labels[y * w as usize + x] == IGNORE, hole, "pixel {x},{y}");
        }
    }
}

#[test]
fn streamed_prediction_equals_blending_the_whole_scene_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = crop(tmp.path());
    let m = model(64);
    let scene = open_for(&m, &path).unwrap();
    let (w, h) = scene.size();
    let opts = PredictOptions {
        overlap: 0.5,
        batch_size: 3,
        ..PredictOptions::default()
    };
    let streamed = predict_labels(&m, &scene, &opts).unwrap();

    // The whole scene's weighted probabilities in memory, window by window in the same order.
    let (side, k) = (64usize, 3usize);
    let weights = grid::blend_weights(64);
    let (mut acc, mut wsum) = (vec![0f32; k * (w * h) as usize], vec![0f32; (w * h) as usize]);
    for win in grid::windows(w, h, 64, 32) {
        let img = scene.read_window(win, 64).unwrap().unwrap();
        let p: Vec<f32> = m
            .probabilities(&[img])
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for yy in 0..side.min((h - win.y) as usize) {
            for xx in 0..side.min((w - win.x) as usize) {
                let (x, y) = (win.x as usize + xx, win.y as usize + yy);
                let wt = weights[yy * side + xx];
                wsum[y * w as usize + x] += wt;
                for c in 0..k {
                    acc[c * (w * h) as usize + y * w as usize + x] +=
                        wt * p[c * side * side + yy * side + xx];
                }
            }
        }
    }
    let whole: Vec<u8> = (0..(w * h) as usize)
        .map(|i| {
            assert!(wsum[i] > 0.0);
            (0..k)
                .max_by(|&a, &b| acc[a * (w * h) as usize + i].total_cmp(&acc[b * (w * h) as usize + i]))
                .unwrap() as u8
        })
        .collect();
    let differ = streamed.iter().zip(&whole).filter(|(a, b)| a != b).count();
    assert_eq!(streamed.len(), whole.len());
    // Float sums in a different association order may flip an exact tie; nothing more.
    assert!(differ <= 2, "{differ} pixels differ");
}

#[test]
fn the_map_geotiff_has_the_scene_grid_and_the_streamed_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let path = crop(tmp.path());
    let m = model(64);
    let out = tmp.path().join("map.tif");
    let report = nadir_segment::predict_scene(&m, &path, &out, &PredictOptions::default()).unwrap();
    assert!(report.georeferenced);
    assert!(!tmp.path().join("map.tif.tmp").exists(), "temp file renamed away");
    let (src, ds) = (Dataset::open(&path).unwrap(), Dataset::open(&out).unwrap());
    assert_eq!(ds.raster_size(), src.raster_size());
    assert_eq!(ds.geo_transform().unwrap(), src.geo_transform().unwrap());
    let band = ds.rasterband(1).unwrap();
    assert_eq!(band.no_data_value(), Some(f64::from(IGNORE)));
    assert!(band.color_table().is_some());
    let (w, h) = ds.raster_size();
    let written = band.read_as::<u8>((0, 0), (w, h), (w, h), None).unwrap();
    let labels = predict_labels(&m, &open_for(&m, &path).unwrap(), &PredictOptions::default()).unwrap();
    assert_eq!(written.data(), labels.as_slice());
    assert_eq!(report.class_pixels.iter().sum::<u64>(), (w * h) as u64);
}

#[test]
fn a_model_folder_round_trips_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(64);
    let dir = tmp.path().join("m");
    m.save(&dir, &serde_json::json!({"note": "test"})).unwrap();
    let back = Segmenter::load(&dir).unwrap();
    assert_eq!(back.config(), m.config());
    let img = nadir_clip::image::RgbImage::from_fn(64, 64, |x, y| {
        nadir_clip::image::Rgb([x as u8 * 3, y as u8 * 2, 90])
    });
    let (a, b) = (
        m.probabilities(std::slice::from_ref(&img)).unwrap(),
        back.probabilities(&[img]).unwrap(),
    );
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0);
    let err = m.save(&dir, &serde_json::json!({})).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    // A config from another format version is refused, naming the file.
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 99");
    std::fs::write(&cfg, text).unwrap();
    let err = Segmenter::load(&dir).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("99"), "{err}");
}

/// The ViT option: a CLIP ViT's patch tokens (the tiny open_clip fixture) feed the same decoder,
/// which learns a colour boundary; the chip must be the ViT's input size.
#[test]
fn a_vit_encoder_trains_on_its_patch_tokens() {
    use nadir_segment::dataset::Chip;
    use nadir_segment::encoder::FrozenEncoder;
    use nadir_segment::train::{train, TrainOptions};
    let weights = Path::new(ROOT).join("clip/tests/fixtures/tiny-quickgelu.pt");
    let spec = FrozenEncoder::vit_spec(weights.to_str().unwrap()).unwrap();
    let mut cfg = SegmenterConfig::lite0_fpn(classes(&["red", "blue"]));
    cfg.encoder = spec;
    cfg.decoder_channels = 16;
    cfg.chip = 128;
    let err = Segmenter::new(cfg.clone(), 0).unwrap_err().to_string();
    assert!(err.contains("64 px"), "{err}");
    cfg.chip = 64;
    let m = Segmenter::new(cfg, 0).unwrap();
    let chips: Vec<Chip> = [16u32, 32, 48]
        .iter()
        .flat_map(|&split| {
            let chip = Chip {
                image: nadir_clip::image::RgbImage::from_fn(64, 64, |x, _| {
                    nadir_clip::image::Rgb(if x < split { [200, 30, 30] } else { [30, 30, 200] })
                }),
                mask: nadir_clip::image::GrayImage::from_fn(64, 64, |x, _| {
                    nadir_clip::image::Luma([u8::from(x >= split)])
                }),
            };
            (0..8).map(move |v| chip.dihedral(v))
        })
        .collect();
    let opts = TrainOptions {
        max_epochs: 30,
        patience: 30,
        augment: false,
        learning_rate: 1e-2,
        ..TrainOptions::default()
    };
    let report = train(&m, &chips, &[], &opts).unwrap();
    assert!(
        report.val.miou > 0.9,
        "mIoU {} on the training chips",
        report.val.miou
    );
}
