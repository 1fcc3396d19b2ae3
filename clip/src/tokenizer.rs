//! The CLIP BPE tokenizer, equal to open_clip's `SimpleTokenizer` + `tokenize()`.
//!
//! Reference: `open_clip/tokenizer.py`. Text is cleaned (a subset of `ftfy.fix_text`, HTML
//! unescaped twice, whitespace collapsed, lower-cased), split with CLIP's regex, mapped to
//! byte-level symbols and merged with the 48,894 BPE merges of `bpe_simple_vocab_16e6.txt.gz`
//! (shipped in `clip/assets`, MIT, from OpenAI CLIP) by the `tokenizers` BPE model. Each row is
//! `<start_of_text>` (49406), the tokens, `<end_of_text>` (49407), zero padding to the context
//! length; a row too long is cut and its last token replaced by `<end_of_text>`.
//!
//! Known gap: `ftfy`'s mojibake repair (text decoded with the wrong codec), terminal-escape
//! removal and C1-control repair are not reproduced; such input may tokenize differently.

use std::io::Read;

use regex::Regex;
use tokenizers::models::bpe::BPE;
use tokenizers::Model;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// Id of `<start_of_text>`.
pub const SOT: u32 = 49406;
/// Id of `<end_of_text>`.
pub const EOT: u32 = 49407;

static BPE_VOCAB_GZ: &[u8] = include_bytes!("../assets/bpe_simple_vocab_16e6.txt.gz");

/// CLIP's pre-tokenization pattern (open_clip, case-insensitive on lower-cased text).
const PATTERN: &str =
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The CLIP tokenizer.
pub struct ClipTokenizer {
    bpe: BPE,
    pattern: Regex,
    byte_encoder: [char; 256],
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// The tokenizer of every OpenAI-lineage CLIP, with a context of `context_length` tokens.
    pub fn new(context_length: usize) -> Result<Self> {
        if context_length < 2 {
            return Err(Error::Tokenizer(format!(
                "a context of {context_length} tokens cannot hold the start and end tokens"
            )));
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(BPE_VOCAB_GZ)
            .read_to_string(&mut text)
            .map_err(|e| Error::Tokenizer(format!("bundled BPE vocabulary: {e}")))?;
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(49152 - 256 - 2)
            .map(|line| {
                let mut parts = line.split(' ');
                match (parts.next(), parts.next()) {
                    (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
                    _ => Err(Error::Tokenizer(format!("malformed merge line {line:?}"))),
                }
            })
            .collect::<Result<_>>()?;
        let byte_encoder = bytes_to_unicode();
        let ordered: Vec<char> = byte_order()
            .into_iter()
            .map(|b| byte_encoder[b as usize])
            .collect();
        let mut vocab: Vec<String> = ordered.iter().map(|c| c.to_string()).collect();
        vocab.extend(ordered.iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push("<start_of_text>".into());
        vocab.push("<end_of_text>".into());
        let vocab: tokenizers::models::bpe::Vocab = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        if vocab.get("<end_of_text>") != Some(&EOT) {
            return Err(Error::Tokenizer(
                "bundled BPE vocabulary has the wrong size".into(),
            ));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".to_string())
            .build()
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Self {
            bpe,
            pattern: Regex::new(PATTERN).expect("valid pattern"),
            byte_encoder,
            context_length,
        })
    }

    /// The number of tokens in each row.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The BPE ids of `text`, without start, end or padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let text = clean(text);
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&text) {
            match m.as_str() {
                "<start_of_text>" => ids.push(SOT),
                "<end_of_text>" => ids.push(EOT),
                piece => {
                    let symbols: String = piece.bytes().map(|b| self.byte_encoder[b as usize]).collect();
                    let tokens = self
                        .bpe
                        .tokenize(&symbols)
                        .map_err(|e| Error::Tokenizer(e.to_string()))?;
                    ids.extend(tokens.into_iter().map(|t| t.id));
                }
            }
        }
        Ok(ids)
    }

    /// One row of `context_length` ids: start, tokens, end, zero padding (open_clip `tokenize`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let mut row = Vec::with_capacity(self.context_length);
        row.push(SOT);
        row.extend(self.encode(text)?);
        row.push(EOT);
        if row.len() > self.context_length {
            row.truncate(self.context_length);
            row[self.context_length - 1] = EOT;
        }
        row.resize(self.context_length, 0);
        Ok(row)
    }

    /// [`Self::tokenize`] for each text.
    pub fn tokenize_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.tokenize(t.as_ref())).collect()
    }
}

/// Text cleaning as open_clip's `_clean_lower`: `ftfy.fix_text` (the parts that apply to
/// well-formed Unicode), `html.unescape` twice, whitespace collapsed and stripped, lower case.
pub fn clean(text: &str) -> String {
    let fixed = fix_text(text);
    let once = html_escape::decode_html_entities(&fixed);
    let twice = html_escape::decode_html_entities(&once);
    let collapsed = twice.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.to_lowercase()
}

/// The applicable steps of `ftfy.fix_text`'s defaults, repeated until nothing changes (as ftfy
/// does): HTML entities (unless the text contains `<`), control characters removed, curly quotes
/// straightened, Latin ligatures and full/half-width forms expanded (NFKC on those characters
/// only), then NFC.
fn fix_text(text: &str) -> String {
    let unescape = !text.contains('<');
    let mut text = text.to_string();
    for _ in 0..16 {
        let next = fix_text_once(&text, unescape);
        if next == text {
            break;
        }
        text = next;
    }
    text
}

fn fix_text_once(text: &str, unescape: bool) -> String {
    let unescaped;
    let text = if unescape {
        unescaped = html_escape::decode_html_entities(text).into_owned();
        &unescaped
    } else {
        text
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{e}'..='\u{1f}'
            | '\u{7f}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}' => {}
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            // ftfy maps the long-s-t ligature to "ſt", not to NFKC's "st".
            '\u{fb05}' => out.push_str("\u{17f}t"),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            '\u{0132}'
            | '\u{0133}'
            | '\u{0149}'
            | '\u{01c4}'..='\u{01cc}'
            | '\u{01f1}'..='\u{01f3}'
            | '\u{fb00}'..='\u{fb04}'
            | '\u{fb06}'
            | '\u{3000}'
            | '\u{ff01}'..='\u{ffef}' => out.extend(std::iter::once(c).nfkc()),
            c => out.push(c),
        }
    }
    out.nfc().collect()
}

/// GPT-2's reversible map from bytes to printable characters.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        table[b as usize] = if is_printable_byte(b) {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid char")
        };
    }
    table
}

fn is_printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff)
}

/// The order of bytes in CLIP's vocabulary: printable bytes first, then the rest.
fn byte_order() -> Vec<u8> {
    let mut order: Vec<u8> = (0..=255u8).filter(|&b| is_printable_byte(b)).collect();
    order.extend((0..=255u8).filter(|&b| !is_printable_byte(b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids() {
        let tok = ClipTokenizer::new(77).unwrap();
        // open_clip.tokenize("a photo of a cat")
        assert_eq!(
            tok.encode("a photo of a cat").unwrap(),
            vec![320, 1125, 539, 320, 2368]
        );
        let row = tok.tokenize("").unwrap();
        assert_eq!(&row[..3], &[SOT, EOT, 0]);
        assert_eq!(row.len(), 77);
    }

    #[test]
    fn truncation_keeps_the_end_token() {
        let tok = ClipTokenizer::new(8).unwrap();
        let row = tok
            .tokenize("one two three four five six seven eight nine")
            .unwrap();
        assert_eq!(row.len(), 8);
        assert_eq!(row[0], SOT);
        assert_eq!(row[7], EOT);
        assert!(row[1..7].iter().all(|&id| id != 0 && id != EOT));
    }

    #[test]
    fn cleaning() {
        assert_eq!(
            clean("  Dense\tRESIDENTIAL\n\n near  the coast "),
            "dense residential near the coast"
        );
        assert_eq!(
            clean("&amp;amp; \u{201c}quoted\u{201d} \u{fb01}eld"),
            "& \"quoted\" field"
        );
        assert_eq!(clean("\u{ff21}\u{ff22}\u{ff23}"), "abc");
    }
}
