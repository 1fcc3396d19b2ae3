#!/usr/bin/env python3
"""CPU throughput of PyTorch open_clip ViT-B-32 (random weights), for comparison
with the Rust/candle implementation.

    pip install torch open_clip_torch ftfy regex
    python scripts/bench_clip_torch.py --threads 2 [--seconds 5] [--batches 1,16,64]

Random weights (`open_clip.create_model('ViT-B-32', pretrained=None)`), eval mode,
`torch.inference_mode()`, float32, `torch.set_num_threads(--threads)`.
Images: a random [B,3,224,224] batch. Texts: B varied captions tokenized beforehand
(tokenization is not timed). Each cell: warm-up, then repeat the batch until at
least --seconds have passed; reports items/s and CPU-seconds per item
(process CPU time, all threads). Prints a markdown table.
"""

import argparse
import os
import random
import time

import torch
import open_clip

WORDS = ("dense residential area near the coast with many houses trees roads cars parked "
         "along a river bridge harbor boats airplane runway terminal farmland storage tanks "
         "tennis court baseball diamond beach waves overpass intersection mobile home park").split()


def captions(n, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) for _ in range(n)]


def time_cell(fn, seconds, warmup):
    for _ in range(warmup):
        fn()
    n = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            break
    return n, dt, time.process_time() - c0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    tok = open_clip.get_tokenizer("ViT-B-32")
    act = type(model.visual.transformer.resblocks[0].mlp.gelu).__name__

    print(f"torch {torch.__version__}, open_clip {open_clip.__version__}, "
          f"threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), "
          f"activation {act}, float32, inference_mode")
    print()
    print("| batch | images/s | CPU-s/image | texts/s | CPU-s/text |")
    print("|---:|---:|---:|---:|---:|")
    with torch.inference_mode():
        for b in [int(x) for x in args.batches.split(",")]:
            images = torch.randn(b, 3, 224, 224)
            texts = tok(captions(b, seed=b))
            ni, ti, ci = time_cell(lambda: model.encode_image(images), args.seconds, args.warmup)
            nt, tt, ct = time_cell(lambda: model.encode_text(texts), args.seconds, args.warmup)
            print(f"| {b} | {ni * b / ti:.2f} | {ci / (ni * b):.4f} | {nt * b / tt:.2f} | {ct / (nt * b):.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()
