"""Plots the segmentation evaluation: test mIoU on held-out Dubai images against the number of
training images, one line per (encoder, labels); per-class IoU of the largest runs beside it.
Input: the CSV `nadir bench segmentation --csv` writes. Needs matplotlib.
Usage: python plot_segmentation.py docs/bench/segmentation.csv docs/bench/segmentation.png"""

import csv
import sys
from collections import defaultdict

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, out: str) -> None:
    curves = defaultdict(list)
    classes = {}
    spacenet = []
    with open(src) as f:
        for row in csv.DictReader(f):
            key = f"{row['encoder']} encoder, {row['labels']}"
            ious = dict(kv.split("=") for kv in row["test_iou"].split(";") if kv)
            if row["dataset"] == "dubai":
                curves[key].append((int(row["train_images"]), float(row["test_miou"])))
                classes[(key, int(row["train_images"]))] = {k: float(v) for k, v in ious.items()}
            else:
                spacenet.append((key, float(ious.get("building", "nan"))))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4), dpi=120)
    for name, pts in sorted(curves.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ticks = sorted({p[0] for pts in curves.values() for p in pts})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("training images (Dubai, ~12 chips of 256 px each)")
    ax.set_ylabel("test mIoU (6 held-out images, 5 classes)")
    ax.set_title("frozen EfficientNet-Lite0 + FPN decoder")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    # Per-class IoU at the largest training set of each line.
    names = sorted({c for v in classes.values() for c in v})
    width = 0.8 / max(len(curves), 1)
    for i, (key, pts) in enumerate(sorted(curves.items())):
        n = max(p[0] for p in pts)
        vals = [classes[(key, n)].get(c, float("nan")) for c in names]
        bx.bar([j + i * width for j in range(len(names))], vals, width, label=f"{key} ({n} images)")
    bx.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
    bx.set_ylabel("test IoU")
    bx.set_ylim(0, 1)
    title = "per class, largest training set"
    if spacenet:
        title += "\nSpaceNet building IoU: " + ", ".join(
            f"{k.split(' encoder')[0]} {k.split(', ')[1]} {v:.2f}" for k, v in spacenet
        )
    bx.set_title(title, fontsize=8)
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
