//! Zero-shot land-cover labels: each patch gets up to 3 classes of a fixed vocabulary, scored
//! with the model's text tower against a prompt ensemble ("an aerial photo of {class}.", ...) and
//! calibrated with a softmax; a class is kept only when its probability clears [`MIN_PROBABILITY`],
//! so an ambiguous patch gets no label rather than a wrong one. They feed the keyword index.

use nadir_clip::Encoder;

use crate::error::Result;

/// The land-cover vocabulary: (label stored in the index, phrase in the prompt).
pub const VOCABULARY: &[(&str, &str)] = &[
    ("agricultural", "agricultural fields"),
    ("airplane", "airplanes at an airport"),
    ("baseball-diamond", "a baseball diamond"),
    ("beach", "a beach"),
    ("buildings", "buildings"),
    ("harbor", "a harbor with boats"),
    ("intersection", "a road intersection"),
    ("medium-residential", "a medium density residential area"),
    ("dense-residential", "a dense residential area"),
    ("sparse-residential", "a sparse residential area"),
    ("mobile-home-park", "a mobile home park"),
    ("overpass", "an overpass"),
    ("parking-lot", "a parking lot"),
    ("river", "a river"),
    ("runway", "a runway"),
    ("storage-tanks", "storage tanks"),
    ("tennis-court", "a tennis court"),
    ("forest", "a forest"),
    ("grassland", "grassland"),
    ("bare-soil", "bare soil"),
    ("water", "open water"),
    ("road", "a road"),
    ("bridge", "a bridge"),
    ("industrial", "an industrial area"),
];

/// How many labels each patch keeps at most.
pub const TOP: usize = 3;

/// The prompt templates whose text embeddings are averaged per class (those the default model's
/// adapters were trained with).
pub const TEMPLATES: &[&str] = nadir_clip::training::PROMPTS;

/// Logit scale of the softmax over classes: CLIP's (and the default model's) cap, 100.
pub const LOGIT_SCALE: f32 = 100.0;

/// A class becomes a label only when its softmax probability over the vocabulary is at least
/// this: with 24 classes it must clearly beat the others, not just come first.
pub const MIN_PROBABILITY: f32 = 0.2;

/// The vocabulary's text embeddings, ready to score patches.
#[derive(Debug)]
pub struct LandCover {
    vectors: Vec<Vec<f32>>,
}

impl LandCover {
    /// Encodes the vocabulary with `encoder`'s text tower: per class, the normalised mean of
    /// its prompts' embeddings.
    pub fn new(encoder: &dyn Encoder) -> Result<Self> {
        let prompts: Vec<String> = VOCABULARY
            .iter()
            .flat_map(|(_, phrase)| TEMPLATES.iter().map(move |t| t.replace("{}", phrase)))
            .collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let embedded = encoder.embed_texts(&refs)?;
        let vectors = embedded
            .chunks(TEMPLATES.len())
            .map(|per_class| {
                let mut mean = vec![0f32; per_class[0].len()];
                for v in per_class {
                    mean.iter_mut().zip(v).for_each(|(m, x)| *m += x);
                }
                let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                mean.iter_mut().for_each(|m| *m /= norm);
                mean
            })
            .collect();
        Ok(LandCover { vectors })
    }

    /// The probability of each vocabulary class for one image embedding (a softmax of the
    /// scaled cosine similarities), in [`VOCABULARY`] order.
    pub fn probabilities(&self, embedding: &[f32]) -> Vec<f32> {
        let logits: Vec<f32> = self
            .vectors
            .iter()
            .map(|t| LOGIT_SCALE * t.iter().zip(embedding).map(|(a, b)| a * b).sum::<f32>())
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    }

    /// The labels of one image embedding, most probable first: at most [`TOP`], each with a
    /// probability of at least [`MIN_PROBABILITY`] (none for an ambiguous patch).
    pub fn labels(&self, embedding: &[f32]) -> Vec<String> {
        let mut scored: Vec<(f32, usize)> = self
            .probabilities(embedding)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .iter()
            .take(TOP)
            .filter(|&&(p, _)| p >= MIN_PROBABILITY)
            .map(|&(_, i)| VOCABULARY[i].0.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// One axis per class, so class `i`'s text vector is the unit vector `e_i`.
    fn axes() -> LandCover {
        let n = VOCABULARY.len();
        LandCover {
            vectors: (0..n)
                .map(|i| (0..n).map(|j| f32::from(i == j)).collect())
                .collect(),
        }
    }

    #[test]
    fn a_clear_patch_gets_its_class_and_an_ambiguous_one_gets_none() {
        let lc = axes();
        let n = VOCABULARY.len();
        let river = VOCABULARY.iter().position(|(l, _)| *l == "river").unwrap();
        let mut clear = vec![0.0; n];
        clear[river] = 1.0;
        assert_eq!(lc.labels(&clear), vec!["river".to_string()]);
        // Equally close to every class: no class clears the bar.
        assert!(lc.labels(&unit(vec![1.0; n])).is_empty());
        // Two classes tied well above the rest: both, and nothing else.
        let bridge = VOCABULARY.iter().position(|(l, _)| *l == "bridge").unwrap();
        let mut two = vec![0.0; n];
        two[river] = 1.0;
        two[bridge] = 1.0;
        let mut got = lc.labels(&unit(two));
        got.sort();
        assert_eq!(got, vec!["bridge".to_string(), "river".to_string()]);
    }

    #[test]
    fn probabilities_sum_to_one_and_follow_the_scores() {
        let lc = axes();
        let n = VOCABULARY.len();
        let v = unit((0..n).map(|i| i as f32).collect());
        let p = lc.probabilities(&v);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(p.windows(2).all(|w| w[0] <= w[1]));
        assert!(lc.labels(&v).len() <= TOP);
    }
}
