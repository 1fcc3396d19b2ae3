//! The frozen encoder: EfficientNet-Lite0's feature maps at strides 4, 8, 16 and 32, for chips of
//! 8-bit RGB, pretrained (ImageNet) or randomly initialised; or, as an option, a CLIP ViT's patch
//! tokens (one map at the patch stride, chips of the ViT's input size).
//!
//! It is frozen: its CPU kernels (`nadir_clip::efficientnet`) have no backward pass, and with a
//! few hundred labels the decoder alone is what can be fitted; the features of a chip are
//! therefore computed once per augmentation and cached by the trainer.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use image::RgbImage;
use nadir_clip::efficientnet::{EfficientNetConfig, EfficientNetLite, IMAGENET_MEAN, IMAGENET_STD};
use nadir_clip::{ClipEncoder, ClipSpec, Encoder};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::config::EncoderSpec;
use crate::error::{Error, Result};

/// The strides of the maps the decoder gets.
pub const STRIDES: [usize; 4] = [4, 8, 16, 32];

/// The network behind a [`FrozenEncoder`].
#[derive(Debug)]
enum Net {
    Lite(Box<EfficientNetLite>),
    Vit(Box<ClipEncoder>),
}

/// A frozen encoder giving feature maps, finest first: EfficientNet-Lite0 at [`STRIDES`], or a
/// ViT's patch tokens.
#[derive(Debug)]
pub struct FrozenEncoder {
    net: Net,
    /// Indices into `feature_maps`' output of the maps kept, in [`STRIDES`] order.
    keep: Vec<usize>,
    channels: Vec<usize>,
    strides: Vec<usize>,
    mean: [f32; 3],
    std: [f32; 3],
    /// The one input size the network takes (a ViT's), if any.
    input_size: Option<u32>,
    device: Device,
}

impl FrozenEncoder {
    /// Loads the encoder `spec` names: the pretrained weights from the models folder (their
    /// sha256 must match), or random weights from the seed.
    pub fn load(spec: &EncoderSpec) -> Result<Self> {
        let device = Device::Cpu;
        let net = match spec {
            EncoderSpec::EfficientnetLite0 { sha256 } => {
                if sha256 != nadir_clip::lite::EFFICIENTNET_LITE0_SHA256 {
                    return Err(Error::Invalid(format!(
                        "the model was trained on EfficientNet-Lite0 weights with sha256 {sha256}, \
                         this build knows {}",
                        nadir_clip::lite::EFFICIENTNET_LITE0_SHA256
                    )));
                }
                nadir_clip::lite::load_image_tower(&nadir_clip::lite::models_dir(), &device)?
            }
            EncoderSpec::RandomLite0 { seed } => {
                let vb = VarBuilder::from_backend(
                    Box::new(RandomInit { seed: *seed }),
                    DType::F32,
                    device.clone(),
                );
                EfficientNetLite::new(vb, &EfficientNetConfig::lite0())?
            }
            EncoderSpec::ClipVit { weights, sha256 } => return Self::vit(weights, Some(sha256)),
        };
        Self::new(net, device)
    }

    /// A CLIP ViT's patch tokens; checks the weights' sha256 when `sha256` is given.
    pub fn vit(weights: &str, sha256: Option<&str>) -> Result<Self> {
        let enc = ClipEncoder::load(&ClipSpec {
            model: weights.to_string(),
            config: None,
            activation: None,
        })?;
        let id = enc.model_id()?;
        if let Some(want) = sha256.filter(|w| **w != id.sha256) {
            return Err(Error::Invalid(format!(
                "the model was trained on ViT weights {weights} with sha256 {want}, the file has {}",
                id.sha256
            )));
        }
        let vision = &enc.model().vision;
        let pre = enc.preprocessor();
        Ok(Self {
            keep: vec![0],
            channels: vec![vision.width()],
            strides: vec![vision.patch_size()],
            mean: pre.mean,
            std: pre.std,
            input_size: Some(vision.image_size() as u32),
            device: Device::Cpu,
            net: Net::Vit(Box::new(enc)),
        })
    }

    /// The spec that names a ViT encoder: its weights and their sha256.
    pub fn vit_spec(weights: &str) -> Result<EncoderSpec> {
        let enc = Self::vit(weights, None)?;
        let Net::Vit(clip) = &enc.net else {
            unreachable!("a ViT")
        };
        Ok(EncoderSpec::ClipVit {
            weights: weights.to_string(),
            sha256: clip.model_id()?.sha256,
        })
    }

    fn new(net: EfficientNetLite, device: Device) -> Result<Self> {
        let info = net.feature_maps_info();
        let mut keep = Vec::new();
        for s in STRIDES {
            // The last block output at each stride (the head comes after and is not used).
            let i = info
                .iter()
                .position(|m| m.stride == s && m.name.starts_with("_blocks"))
                .ok_or_else(|| Error::Invalid(format!("the encoder has no feature map at stride {s}")))?;
            keep.push(i);
        }
        let channels = keep.iter().map(|&i| info[i].channels).collect();
        Ok(Self {
            net: Net::Lite(Box::new(net)),
            keep,
            channels,
            strides: STRIDES.to_vec(),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            input_size: None,
            device,
        })
    }

    /// The stride of each map.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The one chip size the encoder takes, if it takes only one (a ViT's input size).
    pub fn input_size(&self) -> Option<u32> {
        self.input_size
    }

    /// Channels of each map, in [`STRIDES`] order (Lite0: 24, 40, 112, 320).
    pub fn channels(&self) -> &[usize] {
        &self.channels
    }

    /// The device the encoder and its features live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The maps of a batch of equally sized chips: each `[B, C, ceil(H/s), ceil(W/s)]`.
    pub fn features(&self, chips: &[RgbImage]) -> Result<Vec<Tensor>> {
        let x = pixel_values(chips, self.mean, self.std, &self.device)?;
        match &self.net {
            Net::Lite(net) => {
                let maps = net.feature_maps(&x)?;
                Ok(self.keep.iter().map(|&i| maps[i].clone()).collect())
            }
            Net::Vit(enc) => Ok(vec![enc.model().vision.patch_tokens(&x)?]),
        }
    }
}

/// Normalised `[B, 3, H, W]` values of equally sized chips (`(v / 255 - mean) / std`).
pub fn pixel_values(chips: &[RgbImage], mean: [f32; 3], std: [f32; 3], device: &Device) -> Result<Tensor> {
    let Some(first) = chips.first() else {
        return Err(Error::Invalid("no chips to encode".into()));
    };
    let (w, h) = first.dimensions();
    let n = (w * h) as usize;
    let mut data = vec![0f32; chips.len() * 3 * n];
    for (b, chip) in chips.iter().enumerate() {
        if chip.dimensions() != (w, h) {
            return Err(Error::Invalid(format!(
                "chips of one batch must have one size: {w}x{h} and {:?}",
                chip.dimensions()
            )));
        }
        let out = &mut data[b * 3 * n..(b + 1) * 3 * n];
        for (i, p) in chip.pixels().enumerate() {
            for c in 0..3 {
                out[c * n + i] = (f32::from(p.0[c]) / 255.0 - mean[c]) / std[c];
            }
        }
    }
    Ok(Tensor::from_vec(
        data,
        (chips.len(), 3, h as usize, w as usize),
        device,
    )?)
}

/// Random EfficientNet weights by checkpoint name: convolutions and linear layers He-normal
/// (`std = sqrt(2 / fan_in)`), BatchNorm the identity (weight and running variance 1, bias and
/// running mean 0), biases 0. Each tensor's values depend only on the seed and its name.
struct RandomInit {
    seed: u64,
}

impl SimpleBackend for RandomInit {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dims = s.dims().to_vec();
        let n = s.elem_count();
        let values: Vec<f32> = if dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            let normal = Normal::new(0.0, (2.0 / fan_in.max(1) as f64).sqrt())
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ name_hash(name));
            (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
        } else {
            let one = name.ends_with("running_var") || (name.contains("_bn") && name.ends_with("weight"));
            vec![if one { 1.0 } else { 0.0 }; n]
        };
        Tensor::from_vec(values, dims, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random init cannot give {name} without a shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// FNV-1a of a tensor name: a stable per-tensor seed offset.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_encoder_gives_varied_maps_at_every_stride() {
        let enc = FrozenEncoder::load(&EncoderSpec::RandomLite0 { seed: 7 }).unwrap();
        assert_eq!(enc.channels(), &[24, 40, 112, 320]);
        let chip = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
        });
        let maps = enc.features(&[chip.clone(), chip]).unwrap();
        for (m, (s, c)) in maps.iter().zip(STRIDES.iter().zip(enc.channels())) {
            assert_eq!(m.dims(), &[2, *c, 64 / s, 64 / s]);
            let v: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
            let mean = v.iter().sum::<f32>() / v.len() as f32;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
            assert!(
                var > 1e-6 && var.is_finite(),
                "stride {s}: degenerate features, variance {var}"
            );
        }
        // Same seed, same weights.
        let again = FrozenEncoder::load(&EncoderSpec::RandomLite0 { seed: 7 }).unwrap();
        let chip = RgbImage::from_pixel(32, 32, image::Rgb([10, 200, 30]));
        let (a, b) = (
            enc.features(std::slice::from_ref(&chip)).unwrap(),
            again.features(&[chip]).unwrap(),
        );
        let d = (&a[3] - &b[3])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0);
    }
}
