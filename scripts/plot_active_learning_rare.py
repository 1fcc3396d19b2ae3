"""Plots the rare-target active-learning simulation: positives found (the discovery curve) and
recall of the target in the top N of the probe's ranking against labels given, one line per
strategy, averaged over targets and prevalences. Input: the CSV `nadir bench active-learning
--archive ...` prints. Needs matplotlib.
Usage: python plot_active_learning_rare.py results.csv out.png"""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, out: str) -> None:
    found = defaultdict(lambda: defaultdict(list))
    recall = defaultdict(lambda: defaultdict(list))
    settings = set()
    with open(src) as f:
        for row in csv.DictReader(f):
            s, labels = row["strategy"], int(row["labels"])
            members = int(row["members"])
            settings.add((row["target"], row["prevalence"]))
            # Share of what these labels could have found at most.
            found[s][labels].append(float(row["found"]) / min(members, labels))
            recall[s][labels].append(float(row["recall"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for name in found:
        xs = sorted(found[name])
        axes[0].plot(xs, [sum(found[name][x]) / len(found[name][x]) for x in xs], marker="o", ms=3, label=name)
        axes[1].plot(xs, [sum(recall[name][x]) / len(recall[name][x]) for x in xs], marker="o", ms=3, label=name)
    axes[0].set_ylabel("positives found / most findable")
    axes[1].set_ylabel("recall of the target in the top N (N = its count)")
    axes[1].axhline(0.8, color="grey", lw=0.8, ls="--")
    for ax in axes:
        ax.set_xlabel("labels given (start positives included)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"nadir-lite, rare targets in a 38k-image archive ({len(settings)} target x prevalence settings)")
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
