//! Integration tests of the `clip` crate: parity with the PyTorch reference (open_clip) on the
//! committed fixtures, made by `scripts/make_clip_fixtures.py` (see `fixtures/VERSIONS.txt`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use nadir_clip::checkpoint::{Checkpoint, FileFormat};
use nadir_clip::{Activation, ClipConfig, ClipEncoder, ClipSpec, ClipTokenizer, Encoder, Preprocessor};
#[path = "clip/efficientnet.rs"]
mod efficientnet;
#[path = "clip/lite.rs"]
mod lite;
#[path = "clip/minilm.rs"]
mod minilm;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load_reference(name: &str) -> Result<HashMap<String, Tensor>> {
    let path = fixtures().join(name);
    candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| path.display().to_string())
}

fn max_abs_diff(a: &[Vec<f32>], b: &Tensor) -> Result<f32> {
    let b: Vec<Vec<f32>> = b.to_dtype(DType::F32)?.to_vec2()?;
    assert_eq!(a.len(), b.len(), "row count");
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len(), "dimension");
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs());
        }
    }
    Ok(worst)
}

/// Tokenizes every `(text, expected ids)` case and fails listing the first mismatches.
fn assert_same_tokens<'a>(
    cases: impl Iterator<Item = (&'a str, &'a [u32])>,
    tokenize: impl Fn(&str) -> Result<Vec<u32>>,
) -> Result<()> {
    let mut failures = Vec::new();
    let mut n = 0;
    for (text, want) in cases {
        n += 1;
        let got = tokenize(text)?;
        if got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    Ok(())
}

fn texts() -> Result<Vec<String>> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        fixtures().join("texts.json"),
    )?)?)
}

fn load(model: &str, activation: Option<Activation>) -> Result<ClipEncoder> {
    Ok(ClipEncoder::load(&ClipSpec {
        model: fixtures().join(model).display().to_string(),
        config: None,
        activation,
    })?)
}

mod tokenizer {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        ids: Vec<u32>,
    }

    /// Every case of `tokenizer_cases.json` (open_clip's own output) must match exactly.
    #[test]
    fn matches_open_clip_on_all_cases() -> Result<()> {
        let cases: Vec<Case> =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join("tokenizer_cases.json"))?)?;
        assert!(cases.len() >= 500, "only {} cases", cases.len());
        let tok = ClipTokenizer::new(77)?;
        assert_same_tokens(cases.iter().map(|c| (c.text.as_str(), c.ids.as_slice())), |t| {
            Ok(tok.tokenize(t)?)
        })?;
        Ok(())
    }
}

mod preprocess {
    use super::*;

    /// PNG inputs decode to the same bytes in Rust and Pillow, and the Pillow resampler is ported
    /// exactly, so the only difference left is f32 rounding: 1e-5 is generous.
    const PNG_TOLERANCE: f32 = 1e-5;
    /// JPEG decoders differ (IDCT and chroma upsampling): libjpeg-turbo in Pillow and zune-jpeg
    /// in `image` disagree by a few levels on some pixels; a level is 1/255/0.26 = 0.015 after
    /// normalisation. 4 levels.
    const JPEG_TOLERANCE: f32 = 4.0 / 255.0 / 0.26;

    #[test]
    fn matches_open_clip_on_real_images() -> Result<()> {
        let reference = load_reference("preprocess_reference.safetensors")?;
        assert!(reference.len() >= 5);
        let p = Preprocessor::clip(224);
        for (name, want) in &reference {
            let img = nadir_clip::load_rgb(&fixtures().join("images").join(name))?;
            let got = Tensor::from_vec(p.preprocess(&img), (3, 224, 224), &Device::Cpu)?;
            let diff = (got - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            let tol = if name.ends_with(".png") {
                PNG_TOLERANCE
            } else {
                JPEG_TOLERANCE
            };
            eprintln!("{name}: max abs diff {diff:.2e} (tolerance {tol:.2e})");
            assert!(diff <= tol, "{name}: max abs diff {diff} > {tol}");
        }
        Ok(())
    }
}

mod model {
    use super::*;

    const TOLERANCE: f32 = 1e-4;

    fn check(model: &str, reference: &str) -> Result<()> {
        let enc = load(model, None)?;
        let r = load_reference(reference)?;
        let img = enc.embed_pixels(&r["pixel_values"])?;
        let d = max_abs_diff(&img, &r["image_embeds"])?;
        assert!(d <= TOLERANCE, "{model}: image embeddings differ by {d}");

        let texts = texts()?;
        let rows = enc.tokenizer().tokenize_batch(&texts)?;
        let want_tokens: Vec<Vec<i64>> = r["text_tokens"].to_vec2()?;
        for (i, (got, want)) in rows.iter().zip(&want_tokens).enumerate() {
            let want: Vec<u32> = want.iter().map(|&x| x as u32).collect();
            assert_eq!(got, &want, "tokens of text {i} {:?}", texts[i]);
        }
        let txt = enc.embed_tokens(&rows)?;
        let d = max_abs_diff(&txt, &r["text_embeds"])?;
        assert!(d <= TOLERANCE, "{model}: text embeddings differ by {d}");

        // Through the public API: texts from strings, images from the PNG files.
        let api = enc.embed_texts(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        let d = max_abs_diff(&api, &r["text_embeds"])?;
        assert!(d <= TOLERANCE, "{model}: embed_texts differs by {d}");

        let to_t = |v: &[Vec<f32>]| Tensor::new(v.to_vec(), &Device::Cpu);
        let logits = enc.model().logits(&to_t(&img)?, &to_t(&txt)?)?;
        let d = max_abs_diff(&logits.to_vec2()?, &r["logits_per_image"])?;
        // Logits are cosine similarities times exp(logit_scale) ~ 14.3.
        assert!(d <= TOLERANCE * 15.0, "{model}: logits differ by {d}");
        assert_eq!(enc.dim(), 32);
        Ok(())
    }

    #[test]
    fn quickgelu_pt() -> Result<()> {
        check("tiny-quickgelu.pt", "tiny-quickgelu-reference.safetensors")
    }

    #[test]
    fn quickgelu_safetensors() -> Result<()> {
        check(
            "tiny-quickgelu.safetensors",
            "tiny-quickgelu-reference.safetensors",
        )
    }

    #[test]
    fn quickgelu_hugging_face_layout() -> Result<()> {
        check(
            "tiny-quickgelu-hf.safetensors",
            "tiny-quickgelu-reference.safetensors",
        )
    }

    #[test]
    fn gelu_pt() -> Result<()> {
        check("tiny-gelu.pt", "tiny-gelu-reference.safetensors")
    }

    #[test]
    fn gelu_safetensors() -> Result<()> {
        check("tiny-gelu.safetensors", "tiny-gelu-reference.safetensors")
    }

    #[test]
    fn gelu_hugging_face_layout() -> Result<()> {
        check("tiny-gelu-hf.safetensors", "tiny-gelu-reference.safetensors")
    }

    /// The activation matters: running a GELU checkpoint with QuickGELU is measurably wrong, so the
    /// parity tests above would catch a config that ignored it.
    #[test]
    fn wrong_activation_is_detected() -> Result<()> {
        let enc = load("tiny-gelu.safetensors", Some(Activation::QuickGelu))?;
        let r = load_reference("tiny-gelu-reference.safetensors")?;
        let d = max_abs_diff(&enc.embed_pixels(&r["pixel_values"])?, &r["image_embeds"])?;
        assert!(
            d > 10.0 * TOLERANCE,
            "QuickGELU on a GELU model only differs by {d}"
        );
        Ok(())
    }

    /// End to end from image files: preprocessing at the model's 64 px, then the model.
    #[test]
    fn embed_images_from_files() -> Result<()> {
        let enc = load("tiny-quickgelu.pt", None)?;
        let r = load_reference("tiny-quickgelu-reference.safetensors")?;
        let names: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join("images.json"))?)?;
        let imgs = names
            .iter()
            .map(|n| nadir_clip::load_rgb(&fixtures().join("images").join(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let d = max_abs_diff(&enc.embed_images(&imgs)?, &r["image_embeds"])?;
        assert!(d <= TOLERANCE, "embed_images differs by {d}");
        Ok(())
    }

    #[test]
    fn model_id_is_name_and_checksum() -> Result<()> {
        let enc = load("tiny-quickgelu.safetensors", None)?;
        let id = enc.model_id()?;
        assert_eq!(id.name, "tiny-quickgelu.safetensors");
        assert_eq!(id.sha256.len(), 64);
        let other = load("tiny-gelu.safetensors", None)?.model_id()?;
        assert_ne!(id.sha256, other.sha256);
        Ok(())
    }
}

mod architecture {
    use super::*;

    /// Zero tensors under every key and shape of the real open_clip state dict.
    fn real_layout(arch: &str) -> Result<Vec<(String, Tensor)>> {
        let path = fixtures().join(format!("openclip-keys-{arch}.json"));
        let keys: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        keys.into_iter()
            .map(|(k, shape)| {
                let shape: Vec<usize> = serde_json::from_value(shape)?;
                Ok((k, Tensor::zeros(shape, DType::F32, &Device::Cpu)?))
            })
            .collect()
    }

    /// Every tensor of the real checkpoint layout is consumed by the preset with the right shape,
    /// and a forward pass gives the embedding dimension.
    fn check(arch: &str, cfg: ClipConfig, dim: usize) -> Result<()> {
        let tensors = real_layout(arch)?;
        let ckpt = Checkpoint::from_tensors(Path::new(arch), FileFormat::TorchZip, tensors)?;
        assert_eq!(
            ckpt.infer_config()?,
            cfg,
            "config inferred from the real key shapes"
        );
        let enc = ClipEncoder::from_checkpoint(ckpt, cfg.clone(), arch.into())?;
        let s = cfg.vision.image_size;
        let pixels = Tensor::zeros((1, 3, s, s), DType::F32, &Device::Cpu)?;
        use candle_core::Module;
        assert_eq!(enc.model().vision.forward(&pixels)?.dims(), &[1, dim]);
        let tokens = Tensor::new(enc.tokenizer().tokenize("a harbor")?, &Device::Cpu)?.unsqueeze(0)?;
        assert_eq!(enc.model().text.forward(&tokens)?.dims(), &[1, dim]);
        Ok(())
    }

    #[test]
    fn vit_b_32_loads_the_real_layout() -> Result<()> {
        check("ViT-B-32", ClipConfig::vit_b_32(), 512)
    }

    #[test]
    fn vit_l_14_loads_the_real_layout() -> Result<()> {
        check("ViT-L-14", ClipConfig::vit_l_14(), 768)
    }

    #[test]
    fn extra_or_missing_tensors_are_errors() -> Result<()> {
        let mut tensors = real_layout("ViT-B-32")?;
        tensors.push((
            "visual.extra.weight".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu)?,
        ));
        let ckpt = Checkpoint::from_tensors(Path::new("extra.pt"), FileFormat::TorchZip, tensors)?;
        let err = ClipEncoder::from_checkpoint(ckpt, ClipConfig::vit_b_32(), "x".into()).unwrap_err();
        assert!(err.to_string().contains("visual.extra.weight"), "{err}");

        let tensors: Vec<_> = real_layout("ViT-B-32")?
            .into_iter()
            .filter(|(k, _)| k != "visual.ln_post.bias")
            .collect();
        let ckpt = Checkpoint::from_tensors(Path::new("missing.pt"), FileFormat::TorchZip, tensors)?;
        let err = ClipEncoder::from_checkpoint(ckpt, ClipConfig::vit_b_32(), "x".into()).unwrap_err();
        assert!(err.to_string().contains("visual.ln_post.bias"), "{err}");

        // ViT-B-32 weights under the ViT-L-14 preset: a shape error naming the tensor.
        let ckpt = Checkpoint::from_tensors(
            Path::new("b32.pt"),
            FileFormat::TorchZip,
            real_layout("ViT-B-32")?,
        )?;
        let err = ClipEncoder::from_checkpoint(ckpt, ClipConfig::vit_l_14(), "x".into()).unwrap_err();
        assert!(err.to_string().contains("b32.pt"), "{err}");
        Ok(())
    }
}

mod hub {
    use super::*;

    /// No network and no cache: the error says what to download and where to put it.
    #[test]
    fn offline_without_cache_explains_what_to_do() {
        let home = std::env::temp_dir().join(format!("nadir-empty-hf-{}", std::process::id()));
        std::env::set_var("HF_HOME", &home);
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let err = ClipEncoder::load(&ClipSpec {
            model: "remoteclip-vit-b-32".into(),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        for needle in ["RemoteCLIP-ViT-B-32.pt", "chendelong/RemoteCLIP", "--model"] {
            assert!(err.contains(needle), "{needle:?} missing from: {err}");
        }
    }

    #[test]
    fn unknown_name_lists_known_models() {
        let err = ClipEncoder::load(&ClipSpec {
            model: "no-such-model".into(),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("remoteclip-vit-l-14"), "{err}");
    }
}

/// The ViT's patch tokens (the segmentation encoder option) equal open_clip's `output_tokens`
/// (`scripts/make_vit_tokens_fixture.py`).
#[test]
fn patch_tokens_match_open_clip() -> Result<()> {
    let enc = load("tiny-quickgelu.pt", None)?;
    let reference = load_reference("tiny-quickgelu-reference.safetensors")?;
    let want = load_reference("tiny-quickgelu-patch-tokens.safetensors")?;
    let got = enc
        .model()
        .vision
        .patch_tokens(&reference["pixel_values"].to_dtype(DType::F32)?)?;
    assert_eq!(got.dims(), want["patch_tokens"].dims());
    let diff = (got - &want["patch_tokens"])?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert!(diff <= 1e-4, "patch tokens differ from open_clip by {diff}");
    Ok(())
}
