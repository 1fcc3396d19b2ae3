//! What a caller asks: a search request (text, positive and negative examples, geofilter,
//! keywords, time range, k, minimum score) as the API and the CLI send it, before validation.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::geofilter::GeoFilter;

/// Largest `k` a request may ask for.
/// Most bytes of a text query (a description, not a document: the towers truncate far below).
pub const MAX_TEXT_BYTES: usize = 2000;
pub const MAX_K: usize = 1000;
/// Most examples (positives plus negatives) in one request.
pub const MAX_EXAMPLES: usize = 256;

fn default_k() -> usize {
    20
}

fn default_negative_weight() -> f32 {
    0.5
}

/// A search. Every part is optional, but a query needs text or at least one positive example.
///
/// The query vector is `normalize(t + mean(p) - w * mean(n))`: `t` the text embedding, `p` the
/// positive examples' embeddings, `n` the negatives', `w` = `negative_weight` (default 0.5), each
/// term left out when it has no members. All embeddings are L2-normalised first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// A description, encoded with the index's own model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Examples of what to find.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positives: Vec<Example>,
    /// Examples of what not to find.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negatives: Vec<Example>,
    /// How much the negatives pull the query away (0 to 2).
    #[serde(default = "default_negative_weight")]
    pub negative_weight: f32,
    /// Keep only patches whose centroid lies in this area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geofilter: Option<GeoFilter>,
    /// Keep only patches matching this keyword query on scene name, tags and zero-shot labels
    /// (tantivy syntax: `harbor OR river`, `tags:flood`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<String>,
    /// Keep only patches acquired in this range (patches without a date are left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeRange>,
    /// How many results (1 to 1000).
    #[serde(default = "default_k")]
    #[schema(minimum = 1, maximum = 1000)]
    pub k: usize,
    /// Leave out results scoring below this cosine similarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
}

/// An example patch: exactly one of `patch` (an id), `lon` with `lat` (the patch containing the
/// point), or `image_base64` (an image file, base64-encoded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Example {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub patch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_base64: Option<String>,
}

/// An acquisition time range, both ends inclusive: RFC 3339 date-times with an offset
/// (`2020-09-13T12:26:40Z`, `2020-09-13T14:26:40.5+02:00`) or dates (`2020-09-13`, UTC midnight).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl SearchRequest {
    /// Checks the parts that need no index.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 || self.k > MAX_K {
            return Err(Error::bad(format!("k must be in 1..={MAX_K} (got {})", self.k)));
        }
        if self.positives.len() + self.negatives.len() > MAX_EXAMPLES {
            return Err(Error::bad(format!("at most {MAX_EXAMPLES} examples per query")));
        }
        if self.text.as_deref().is_none_or(|t| t.trim().is_empty()) && self.positives.is_empty() {
            return Err(Error::bad("a query needs text or at least one positive example"));
        }
        if let Some(t) = &self.text {
            if t.len() > MAX_TEXT_BYTES {
                return Err(Error::bad(format!(
                    "text: at most {MAX_TEXT_BYTES} bytes (got {}); the text towers read the first 77 (CLIP) or 256 (MiniLM) tokens anyway",
                    t.len()
                )));
            }
        }
        if !(0.0..=2.0).contains(&self.negative_weight) {
            return Err(Error::bad("negative_weight must be in [0, 2]"));
        }
        if self.min_score.is_some_and(|s| !s.is_finite()) {
            return Err(Error::bad("min_score must be a number"));
        }
        Ok(())
    }
}

impl TimeRange {
    /// The range as unix milliseconds, inclusive.
    pub fn bounds(&self) -> Result<(i64, i64)> {
        let from = self
            .from
            .as_deref()
            .map(parse_time)
            .transpose()?
            .unwrap_or(i64::MIN);
        let to = self
            .to
            .as_deref()
            .map(parse_time)
            .transpose()?
            .unwrap_or(i64::MAX);
        if from > to {
            return Err(Error::bad("time: from is after to"));
        }
        Ok((from, to))
    }
}

/// Parses a time of a request: RFC 3339 with an offset (fractional seconds allowed) or a date
/// (UTC midnight), as unix milliseconds; an invalid date (2020-02-31) is a 400.
pub fn parse_time(s: &str) -> Result<i64> {
    nadir_indexer::time::parse(s).map_err(Error::bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01").unwrap(), 0);
        assert_eq!(parse_time("2020-09-13T12:26:40Z").unwrap(), 1_600_000_000_000);
        assert!(parse_time("13/09/2020").is_err());
        assert_eq!(
            parse_time("2020-09-13T14:26:40.5+02:00").unwrap(),
            1_600_000_000_500
        );
        assert!(parse_time("2020-02-31")
            .unwrap_err()
            .to_string()
            .contains("2020-02-31"));
    }

    #[test]
    fn requests_validate() {
        let ok = SearchRequest {
            text: Some("river".into()),
            k: 10,
            negative_weight: 0.5,
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let e = SearchRequest {
            k: 5000,
            ..ok.clone()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("k must be"), "{e}");
        let long = SearchRequest {
            text: Some("a".repeat(MAX_TEXT_BYTES + 1)),
            ..ok.clone()
        };
        assert!(long
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at most 2000 bytes"));
        let e = SearchRequest { text: None, ..ok }
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs text"), "{e}");
    }
}
