//! Zero-shot land-cover labels: each patch gets the top 3 classes of a fixed prompt vocabulary,
//! scored with the model's text tower ("an aerial photo of {class}"). They feed the keyword index.

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

/// How many labels each patch keeps.
pub const TOP: usize = 3;

/// The vocabulary's text embeddings, ready to score patches.
#[derive(Debug)]
pub struct LandCover {
    vectors: Vec<Vec<f32>>,
}

impl LandCover {
    /// Encodes the vocabulary with `encoder`'s text tower.
    pub fn new(encoder: &dyn Encoder) -> Result<Self> {
        let prompts: Vec<String> = VOCABULARY
            .iter()
            .map(|(_, phrase)| format!("an aerial photo of {phrase}"))
            .collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        Ok(LandCover {
            vectors: encoder.embed_texts(&refs)?,
        })
    }

    /// The top labels of one image embedding, best first.
    pub fn labels(&self, embedding: &[f32]) -> Vec<String> {
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.iter().zip(embedding).map(|(a, b)| a * b).sum(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .iter()
            .take(TOP)
            .map(|&(_, i)| VOCABULARY[i].0.to_string())
            .collect()
    }
}
