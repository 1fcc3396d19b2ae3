//! The default model `nadir-lite` end to end: real towers (fetched by `scripts/fetch-models.sh`),
//! the bundled adapters, real UCM images from `../shared/data/ucm`. Without the towers or the
//! data each test prints why it is skipped and passes.

use super::*;
use nadir_clip::lite::{models_dir, NadirLite, NADIR_LITE};
use nadir_clip::ucm::{class_phrase, read_ucm};

fn shared_ucm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ucm")
}

fn load_lite(test: &str) -> Result<Option<NadirLite>> {
    match NadirLite::load_default() {
        Ok(m) => Ok(Some(m)),
        Err(nadir_clip::Error::ModelNotFound(why)) => {
            eprintln!("lite::{test} skipped: {why}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[test]
fn missing_towers_explain_how_to_fetch_them() {
    let err = NadirLite::load(Path::new("/nonexistent/models"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("scripts/fetch-models.sh") && err.contains("/nonexistent/models"),
        "{err}"
    );
}

#[test]
fn vectors_are_unit_length_and_the_id_is_stable() -> Result<()> {
    let Some(lite) = load_lite("vectors_are_unit_length_and_the_id_is_stable")? else {
        return Ok(());
    };
    let v = lite.embed_texts(&["dense residential near the coast", ""])?;
    assert_eq!(v.len(), 2);
    for x in &v {
        assert_eq!(x.len(), lite.dim());
        let n = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "norm {n}");
    }
    let id = lite.model_id()?;
    assert_eq!(id.name, NADIR_LITE);
    assert_eq!(
        id,
        NadirLite::load(&models_dir(), None)?.model_id()?,
        "same files, same id"
    );
    Ok(())
}

/// Zero-shot classification of two `val` images per class with "an aerial photo of {class}.":
/// chance is 1/16; the bundled adapters reach about 0.8 on the whole `val` split.
#[test]
fn zero_shot_on_real_ucm_images() -> Result<()> {
    let Some(lite) = load_lite("zero_shot_on_real_ucm_images")? else {
        return Ok(());
    };
    let root = shared_ucm();
    if !root.join("captions.csv").is_file() {
        eprintln!(
            "lite::zero_shot_on_real_ucm_images skipped: {} is absent",
            root.display()
        );
        return Ok(());
    }
    let records = read_ucm(&root)?;
    let mut classes: Vec<String> = records.iter().map(|r| r.class.clone()).collect();
    classes.sort();
    classes.dedup();
    let mut picked = Vec::new();
    for c in &classes {
        picked.extend(
            records
                .iter()
                .filter(|r| r.split == "val" && &r.class == c)
                .take(2),
        );
    }
    let images = picked
        .iter()
        .map(|r| nadir_clip::load_rgb(&r.image))
        .collect::<Result<Vec<_>, _>>()?;
    let zi = lite.embed_images(&images)?;
    let prompts: Vec<String> = classes
        .iter()
        .map(|c| format!("an aerial photo of {}.", class_phrase(c)))
        .collect();
    let zt = lite.embed_texts(&prompts.iter().map(String::as_str).collect::<Vec<_>>())?;
    let mut correct = 0;
    for (img, rec) in zi.iter().zip(&picked) {
        let best = zt
            .iter()
            .enumerate()
            .map(|(j, t)| (j, t.iter().zip(img).map(|(a, b)| a * b).sum::<f32>()))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(j, _)| j);
        if best.map(|j| &classes[j]) == Some(&rec.class) {
            correct += 1;
        }
    }
    let acc = correct as f32 / picked.len() as f32;
    eprintln!("nadir-lite zero-shot on {} val images: {acc:.3}", picked.len());
    assert!(acc >= 0.6, "zero-shot accuracy {acc} on {} images", picked.len());
    Ok(())
}

/// An index records the model id it was built with; a build with newer adapters still loads the
/// earlier bundled version that id names, and nothing for an id it does not bundle.
#[test]
fn bundled_versions_are_found_by_their_id() -> Result<()> {
    let Some(current) = load_lite("bundled_versions_are_found_by_their_id")? else {
        return Ok(());
    };
    let current_id = current.model_id()?;
    let again = NadirLite::load_bundled_matching(&models_dir(), &current_id.sha256)?
        .expect("the current adapters are found by their id");
    assert_eq!(again.model_id()?, current_id);
    assert!(!nadir_clip::lite::EARLIER_ADAPTERS.is_empty());
    for (version, bytes) in nadir_clip::lite::EARLIER_ADAPTERS {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), bytes)?;
        let earlier = NadirLite::load(&models_dir(), Some(file.path()))?;
        let id = earlier.model_id()?;
        assert_ne!(id, current_id, "{version} has its own id");
        let found = NadirLite::load_bundled_matching(&models_dir(), &id.sha256)?
            .unwrap_or_else(|| panic!("{version} is found by its id"));
        assert_eq!(found.model_id()?, id);
        // Same vectors as the version that was asked for, not the current one.
        let q = ["a river with a bridge"];
        assert_eq!(found.embed_texts(&q)?, earlier.embed_texts(&q)?);
        assert_ne!(found.embed_texts(&q)?, current.embed_texts(&q)?);
    }
    assert!(NadirLite::load_bundled_matching(&models_dir(), &"0".repeat(64))?.is_none());
    Ok(())
}

/// Adapters files are told apart from CLIP weights by their header alone; a hostile header
/// length is refused without reading (or allocating) it.
#[test]
fn adapters_files_are_recognised_by_their_header() -> Result<()> {
    use nadir_clip::adapter::{Adapters, MAX_HEADER_BYTES};
    let dir = tempfile::tempdir()?;
    let adapters = dir.path().join("a.safetensors");
    std::fs::write(&adapters, nadir_clip::lite::BUNDLED_ADAPTERS)?;
    assert!(Adapters::is_adapters_file(&adapters));
    let renamed = dir.path().join("a.bin");
    std::fs::write(&renamed, nadir_clip::lite::BUNDLED_ADAPTERS)?;
    assert!(!Adapters::is_adapters_file(&renamed), "only .safetensors files");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-quickgelu.safetensors");
    assert!(clip.is_file());
    assert!(
        !Adapters::is_adapters_file(&clip),
        "CLIP weights are not adapters"
    );
    let hostile = dir.path().join("h.safetensors");
    let mut bytes = (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&hostile, bytes)?;
    assert!(!Adapters::is_adapters_file(&hostile));
    std::fs::write(&hostile, 2u64.to_le_bytes())?;
    assert!(!Adapters::is_adapters_file(&hostile), "a truncated header");
    Ok(())
}
