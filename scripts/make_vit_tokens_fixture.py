"""The patch tokens of the tiny CLIP fixture, the reference for the ViT encoder option of
nadir-segment (`VisionTransformer::patch_tokens`): open_clip's `VisionTransformer` with
`output_tokens = True` on the fixture's pixel values, i.e. `ln_post` over the transformer's output
without the class token, as [B, width, grid, grid].

Needs torch and open_clip_torch (see clip/tests/fixtures/VERSIONS.txt); not run in CI.
Usage: python scripts/make_vit_tokens_fixture.py   (from the repository root)
Writes clip/tests/fixtures/tiny-quickgelu-patch-tokens.safetensors."""

import json

import open_clip
import torch
from safetensors.torch import load_file, save_file

FIX = "clip/tests/fixtures"


def main() -> None:
    cfg = json.load(open(f"{FIX}/tiny-quickgelu.json"))
    model = open_clip.model.CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=cfg["vision_cfg"],
        text_cfg=cfg["text_cfg"],
        quick_gelu=cfg.get("quick_gelu", False),
    )
    sd = torch.load(f"{FIX}/tiny-quickgelu.pt", map_location="cpu")
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    model.eval()
    px = load_file(f"{FIX}/tiny-quickgelu-reference.safetensors")["pixel_values"].float()
    model.visual.output_tokens = True
    with torch.no_grad():
        pooled, tokens = model.visual(px)
    b, n, w = tokens.shape
    g = int(round(n**0.5))
    tokens = tokens.reshape(b, g, g, w).permute(0, 3, 1, 2).contiguous()
    save_file({"patch_tokens": tokens, "pooled": pooled.contiguous()}, f"{FIX}/tiny-quickgelu-patch-tokens.safetensors")
    print("patch tokens", tuple(tokens.shape), "pooled", tuple(pooled.shape))


if __name__ == "__main__":
    main()
