"""Plots the active-learning simulation: mean average precision against labels, one line per
labelling strategy. Input: the CSV `nadir bench active-learning` prints. Needs matplotlib.
Usage: python plot_active_learning.py results.csv out.png"""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, out: str) -> None:
    curves = defaultdict(list)
    with open(src) as f:
        for row in csv.DictReader(f):
            curves[row["strategy"]].append((int(row["labels"]), float(row["mean_average_precision"])))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, pts in curves.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("labels (2 positives, then 10 per round)")
    ax.set_ylabel("mean average precision (16 UCM classes)")
    ax.set_title("nadir-lite, UC Merced, linear probe")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
