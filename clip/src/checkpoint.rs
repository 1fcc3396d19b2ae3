//! Reading CLIP weights from disk: open_clip state dicts (zip `torch.save` `.pt`/`.bin`, or
//! `.safetensors`) and the Hugging Face `transformers` CLIP layout. Every layout is mapped to
//! open_clip's key names here, in one place; the model code only knows open_clip's names.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::config::{Activation, ClipConfig, TextConfig, VisionConfig};
use crate::error::{Error, Result};

/// The key layout a checkpoint was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// open_clip's `CLIP.state_dict()` names (`visual.conv1.weight`, `token_embedding.weight`...).
    OpenClip,
    /// Hugging Face `CLIPModel` names (`vision_model.embeddings.patch_embedding.weight`...).
    HuggingFace,
}

/// The file format a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// A zip-format `torch.save` pickle (`.pt`, `.pth`, `.bin`).
    TorchZip,
    /// A legacy (pre-1.6, non-zip) `torch.save` pickle.
    LegacyTorch,
    /// A `.safetensors` file.
    Safetensors,
}

/// All the tensors of a CLIP checkpoint, in float32 and open_clip names.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    layout: Layout,
    format: FileFormat,
    tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Reads a checkpoint, whatever its file format and key layout.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let (format, raw) = read_raw(path)?;
        Self::from_tensors(path, format, raw)
    }

    /// Builds a checkpoint from tensors already in memory (`path` names them in errors).
    pub fn from_tensors(
        path: &Path,
        format: FileFormat,
        raw: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<Self> {
        let raw: HashMap<String, Tensor> = raw
            .into_iter()
            .map(|(k, v)| (strip_wrapper_prefix(&k).to_string(), v))
            .collect();
        let layout = if raw.contains_key("text_model.embeddings.token_embedding.weight")
            || raw.contains_key("vision_model.embeddings.patch_embedding.weight")
        {
            Layout::HuggingFace
        } else if raw.contains_key("visual.conv1.weight") || raw.contains_key("token_embedding.weight") {
            Layout::OpenClip
        } else {
            let mut keys: Vec<_> = raw.keys().take(5).cloned().collect();
            keys.sort();
            return Err(Error::checkpoint(
                path,
                format!(
                    "not a CLIP ViT checkpoint (neither open_clip nor Hugging Face key names; first keys: {keys:?})"
                ),
            ));
        };
        let mut tensors = match layout {
            Layout::OpenClip => raw,
            Layout::HuggingFace => hf_to_open_clip(raw).map_err(|e| Error::checkpoint(path, e))?,
        };
        for t in tensors.values_mut() {
            if t.dtype() != DType::F32 {
                *t = t.to_dtype(DType::F32)?;
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            layout,
            format,
            tensors,
        })
    }

    /// The file this checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key layout the file used.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The file format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// The tensors, by open_clip name.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// Infers the architecture from tensor shapes, for checkpoints without a config file. Head
    /// counts are not stored in a checkpoint: they are taken as width / 64, which holds for every
    /// OpenAI and RemoteCLIP ViT. The activation defaults to QuickGELU (OpenAI lineage).
    pub fn infer_config(&self) -> Result<ClipConfig> {
        let dims = |key: &str| -> Result<Vec<usize>> {
            self.tensors
                .get(key)
                .map(|t| t.dims().to_vec())
                .ok_or_else(|| Error::checkpoint(&self.path, format!("missing tensor `{key}`")))
        };
        let count_layers = |prefix: &str| {
            (0..)
                .take_while(|i| {
                    self.tensors
                        .contains_key(&format!("{prefix}transformer.resblocks.{i}.ln_1.weight"))
                })
                .count()
        };
        let conv = dims("visual.conv1.weight")?; // [W, 3, P, P]
        let vpos = dims("visual.positional_embedding")?; // [G*G+1, W]
        let proj = dims("visual.proj")?; // [W, E]
        let tok = dims("token_embedding.weight")?; // [V, Wt]
        let tpos = dims("positional_embedding")?; // [T, Wt]
        let vfc = dims("visual.transformer.resblocks.0.mlp.c_fc.weight")?;
        let tfc = dims("transformer.resblocks.0.mlp.c_fc.weight")?;
        let grid = ((vpos[0] - 1) as f64).sqrt().round() as usize;
        Ok(ClipConfig {
            embed_dim: proj[1],
            activation: Activation::QuickGelu,
            vision: VisionConfig {
                image_size: grid * conv[2],
                patch_size: conv[2],
                width: conv[0],
                layers: count_layers("visual."),
                heads: (conv[0] / 64).max(1),
                mlp_width: vfc[0],
            },
            text: TextConfig {
                context_length: tpos[0],
                vocab_size: tok[0],
                width: tok[1],
                layers: count_layers(""),
                heads: (tok[1] / 64).max(1),
                mlp_width: tfc[0],
            },
        })
    }

    /// The tensors, by open_clip name, consumed.
    pub fn into_tensors(self) -> HashMap<String, Tensor> {
        self.tensors
    }
}

/// Builds a model from `tensors` strictly, as PyTorch's `load_state_dict(strict=True)`: a tensor
/// the model asks for that is missing or misshaped is an error (from `build`), and so is a tensor
/// the model never read unless `ignored` says it may be left over. Errors name `path`.
pub fn load_strict<M>(
    path: &Path,
    tensors: HashMap<String, Tensor>,
    device: &Device,
    ignored: fn(&str) -> bool,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<M>,
) -> Result<M> {
    let used = std::sync::Arc::new(Mutex::new(HashSet::new()));
    let names: Vec<String> = tensors.keys().cloned().collect();
    let backend = Tracked {
        tensors,
        used: used.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
    let model =
        build(vb).map_err(|e| Error::checkpoint(path, format!("does not fit the configured model: {e}")))?;
    let used = used
        .lock()
        .map_err(|_| Error::checkpoint(path, "tensor bookkeeping poisoned"))?;
    let mut unused: Vec<&String> = names
        .iter()
        .filter(|n| !used.contains(*n) && !ignored(n))
        .collect();
    if unused.is_empty() {
        return Ok(model);
    }
    unused.sort();
    let shown: Vec<_> = unused.iter().take(8).collect();
    Err(Error::checkpoint(
        path,
        format!(
            "{} tensors are not used by the configured model (wrong config?): {shown:?}",
            unused.len()
        ),
    ))
}

/// Tensors a CLIP checkpoint may hold that no encoder needs.
pub fn clip_ignored(name: &str) -> bool {
    matches!(
        name,
        "logit_scale" | "logit_bias" | "attn_mask" | "visual.attn_mask"
    )
}

struct Tracked {
    tensors: HashMap<String, Tensor>,
    used: std::sync::Arc<Mutex<HashSet<String>>>,
}

/// A tensor map that records which names the model read.
impl SimpleBackend for Tracked {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.tensors.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "tensor `{name}` has shape {:?}, the configured model expects {:?}",
                t.dims(),
                s.dims()
            );
        }
        self.used.lock().expect("poisoned").insert(name.to_string());
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.used.lock().expect("poisoned").insert(name.to_string());
        self.tensors.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Reads every tensor of a weights file: a zip `torch.save` pickle, a legacy (pre-1.6) torch
/// pickle, or `.safetensors`.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    read_raw(path).map(|(_, t)| t)
}

fn read_raw(path: &Path) -> Result<(FileFormat, Vec<(String, Tensor)>)> {
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
        if n < 4 {
            return Err(Error::checkpoint(path, "file is too short to be a checkpoint"));
        }
    }
    if &magic == b"PK\x03\x04" {
        let mut tensors = candle_core::pickle::read_all(path)
            .map_err(|e| Error::checkpoint(path, format!("cannot read torch zip pickle: {e}")))?;
        if tensors.is_empty() {
            // A training checkpoint: {"epoch": .., "state_dict": {...}}.
            tensors = candle_core::pickle::read_all_with_key(path, Some("state_dict"))
                .map_err(|e| Error::checkpoint(path, format!("cannot read `state_dict`: {e}")))?;
        }
        Ok((FileFormat::TorchZip, tensors))
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| Error::checkpoint(path, format!("cannot read safetensors: {e}")))?;
        Ok((FileFormat::Safetensors, tensors.into_iter().collect()))
    } else if crate::legacy_pickle::is_legacy_pickle(path)? {
        Ok((FileFormat::LegacyTorch, crate::legacy_pickle::read_all(path)?))
    } else {
        Err(Error::checkpoint(
            path,
            "unknown checkpoint format (expected a torch.save file or .safetensors)",
        ))
    }
}

/// `module.` (DataParallel) and `model.` wrappers some training scripts leave on every key.
fn strip_wrapper_prefix(key: &str) -> &str {
    key.strip_prefix("module.").unwrap_or(key)
}

/// Maps Hugging Face `CLIPModel` names to open_clip names: q/k/v projections are packed into
/// `in_proj`, projections are transposed ([E, W] -> [W, E]).
fn hf_to_open_clip(mut hf: HashMap<String, Tensor>) -> std::result::Result<HashMap<String, Tensor>, String> {
    let mut out = HashMap::new();
    let take = |hf: &mut HashMap<String, Tensor>, from: &str| {
        hf.remove(from).ok_or_else(|| format!("missing tensor `{from}`"))
    };
    hf.retain(|k, _| !k.ends_with("position_ids"));
    for (tower, prefix) in [("text_model", ""), ("vision_model", "visual.")] {
        let mut layer = 0;
        while hf.contains_key(&format!("{tower}.encoder.layers.{layer}.layer_norm1.weight")) {
            let src = format!("{tower}.encoder.layers.{layer}");
            let dst = format!("{prefix}transformer.resblocks.{layer}");
            for kind in ["weight", "bias"] {
                let qkv = ["q", "k", "v"]
                    .iter()
                    .map(|p| take(&mut hf, &format!("{src}.self_attn.{p}_proj.{kind}")))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let packed = Tensor::cat(&qkv, 0).map_err(|e| e.to_string())?;
                out.insert(format!("{dst}.attn.in_proj_{kind}"), packed);
                for (a, b) in [
                    ("self_attn.out_proj", "attn.out_proj"),
                    ("layer_norm1", "ln_1"),
                    ("layer_norm2", "ln_2"),
                    ("mlp.fc1", "mlp.c_fc"),
                    ("mlp.fc2", "mlp.c_proj"),
                ] {
                    out.insert(
                        format!("{dst}.{b}.{kind}"),
                        take(&mut hf, &format!("{src}.{a}.{kind}"))?,
                    );
                }
            }
            layer += 1;
        }
    }
    let renames = [
        (
            "text_model.embeddings.token_embedding.weight",
            "token_embedding.weight",
        ),
        (
            "text_model.embeddings.position_embedding.weight",
            "positional_embedding",
        ),
        ("text_model.final_layer_norm.weight", "ln_final.weight"),
        ("text_model.final_layer_norm.bias", "ln_final.bias"),
        (
            "vision_model.embeddings.patch_embedding.weight",
            "visual.conv1.weight",
        ),
        (
            "vision_model.embeddings.class_embedding",
            "visual.class_embedding",
        ),
        (
            "vision_model.embeddings.position_embedding.weight",
            "visual.positional_embedding",
        ),
        ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"),
        ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"),
        ("vision_model.post_layernorm.weight", "visual.ln_post.weight"),
        ("vision_model.post_layernorm.bias", "visual.ln_post.bias"),
    ];
    for (a, b) in renames {
        out.insert(b.to_string(), take(&mut hf, a)?);
    }
    for (a, b) in [
        ("text_projection.weight", "text_projection"),
        ("visual_projection.weight", "visual.proj"),
    ] {
        let t = take(&mut hf, a)?
            .t()
            .and_then(|t| t.contiguous())
            .map_err(|e| e.to_string())?;
        out.insert(b.to_string(), t);
    }
    // Whatever is left (logit_scale, unknown extras) keeps its name, so strict loading can
    // report extras.
    out.extend(hf);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_prefix_is_stripped() {
        assert_eq!(strip_wrapper_prefix("module.visual.proj"), "visual.proj");
        assert_eq!(strip_wrapper_prefix("visual.proj"), "visual.proj");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Checkpoint::load(Path::new("/nonexistent/model.pt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/model.pt"), "{err}");
    }

    #[test]
    fn broken_legacy_pickle_names_the_file() {
        let dir = std::env::temp_dir().join(format!("nadir-clip-legacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.pth");
        std::fs::write(&path, [0x80, 0x02, 0x8a, 0x0a, 0x6c]).unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("old.pth"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
