#!/usr/bin/env python3
"""Build the MobileSAM parity fixture used by the Rust `segment` crate tests.

Run from the repository root, in a reference venv (never in CI):

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch timm safetensors numpy
    /tmp/refvenv/bin/pip install --no-deps mobilesam-mirror==1.0.0
    /tmp/refvenv/bin/python scripts/make_sam_fixtures.py --out segment/tests/fixtures/mobilesam

It builds MobileSAM (`build_sam_vit_t`, TinyViT-5M encoder) with random weights: PyTorch's default
initialisation plus N(0, 0.02) noise on every parameter and random BatchNorm statistics, seed 0,
rounded to float16 (the weights both sides compute with are exactly the stored ones). It writes:

- mobilesam-random.safetensors: the state_dict (float16, the checkpoint's own names; buffers that
  the model recomputes, TinyViT's `attention_bias_idxs`, are left out);
- reference-tanh-gelu.safetensors: the same with GELU's tanh approximation, as candle-transformers'
  SAM computes it (the Rust code must equal this one to 1e-4; reference.safetensors measures what
  the approximation costs);
- reference.safetensors (float32): `image` [1, 3, 1024, 1024] is not stored (both sides compute
  it from the formula in `image()`), `embeddings` [1, 256, 64, 64] a 8 x 8 corner of them, and
  per case (`points`, `box`, `both`) the prompt inputs and `NAME.masks` (low-res mask logits
  [1, K, 256, 256]) and `NAME.iou` ([1, K]), K = 3 for `points` (multimask output), 1 otherwise.
"""
import argparse
import os

import numpy as np
import torch
from safetensors.torch import save_file

from mobile_sam import build_sam_vit_t


def image():
    """The input: [1, 3, 1024, 1024], values in a normalised range, from a formula."""
    y = torch.arange(1024, dtype=torch.float32).view(1, 1024, 1)
    x = torch.arange(1024, dtype=torch.float32).view(1, 1, 1024)
    c = torch.arange(3, dtype=torch.float32).view(3, 1, 1)
    v = torch.sin(0.013 * x * (c + 1.0) + 0.007 * y) + torch.cos(0.021 * y - 0.5 * c) * 0.5
    return v.unsqueeze(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    sam = build_sam_vit_t(checkpoint=None)
    sam.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
        for name, b in sam.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(1.0 + torch.rand(b.shape, generator=g) * 0.5)
        state = {}
        for k, v in sam.state_dict().items():
            if k.endswith("attention_bias_idxs") or k in ("pixel_mean", "pixel_std") or k.endswith("num_batches_tracked"):
                continue
            state[k] = v.to(torch.float16).contiguous()
        sam.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        # TinyViT caches its attention biases (`ab`) when switched to eval mode: switch again, now
        # that the weights are final, or the reference runs on the biases of before the noise.
        sam.train()
        sam.eval()
        save_file(state, os.path.join(args.out, "mobilesam-random.safetensors"))

        save_file(reference(sam), os.path.join(args.out, "reference.safetensors"))
        # candle-transformers' SAM uses the tanh approximation of GELU where the reference uses
        # the exact one: the same model with tanh GELU is what the Rust code must equal to 1e-4.
        exact = torch.nn.functional.gelu
        torch.nn.functional.gelu = lambda x, approximate="none": exact(x, approximate="tanh")
        save_file(reference(sam), os.path.join(args.out, "reference-tanh-gelu.safetensors"))
        torch.nn.functional.gelu = exact
    with open(os.path.join(args.out, "VERSIONS.txt"), "w") as f:
        f.write(f"torch {torch.__version__}\nmobilesam-mirror 1.0.0\nnumpy {np.__version__}\n")


def reference(sam):
    """The embeddings' corner and each case's masks and IoUs."""
    emb = sam.image_encoder(image())
    pe = sam.prompt_encoder.get_dense_pe()
    ref = {"embeddings": emb[:, :, :8, :8].contiguous()}
    cases = {
        "points": (torch.tensor([[[300.5, 400.25], [700.0, 200.0]]]), torch.tensor([[1.0, 0.0]]), None, True),
        "box": (None, None, torch.tensor([[100.0, 150.0, 600.0, 700.0]]), False),
        "both": (torch.tensor([[[350.0, 420.0]]]), torch.tensor([[1.0]]), torch.tensor([[100.0, 150.0, 600.0, 700.0]]), False),
    }
    for name, (coords, labels, box, multi) in cases.items():
        points = (coords, labels.int()) if coords is not None else None
        sparse, dense = sam.prompt_encoder(points=points, boxes=box, masks=None)
        masks, iou = sam.mask_decoder(
            image_embeddings=emb, image_pe=pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multi,
        )
        ref[f"{name}.masks"] = masks.contiguous()
        ref[f"{name}.iou"] = iou.contiguous()
        if coords is not None:
            ref[f"{name}.coords"] = coords
            ref[f"{name}.labels"] = labels
        if box is not None:
            ref[f"{name}.box"] = box
    print({k: tuple(v.shape) for k, v in ref.items()})
    return {k: v.float().contiguous() for k, v in ref.items()}


if __name__ == "__main__":
    main()
