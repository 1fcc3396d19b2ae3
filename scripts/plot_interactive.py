#!/usr/bin/env python3
"""Plots mean IoU against clicks from `nadir bench interactive --json` reports.

usage: plot_interactive.py OUT.png LABEL=report.json [LABEL=report.json ...]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(targets):
    n = max(len(t["iou"]) for t in targets)
    return [sum(t["iou"][min(k, len(t["iou"]) - 1)] for t in targets) / len(targets) for k in range(n)]


def main():
    out, runs = sys.argv[1], sys.argv[2:]
    sets = sorted({s for r in runs for s in json.load(open(r.split("=", 1)[1]))})
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 5), squeeze=False)
    for ax, name in zip(axes[0], sets):
        for r in runs:
            label, path = r.split("=", 1)
            rep = json.load(open(path)).get(name)
            if rep:
                c = curve(rep["targets"])
                ax.plot(range(len(c)), c, marker=".", label=label)
        ax.set_title(f"{name}: mean IoU per target")
        ax.set_xlabel("clicks")
        ax.set_ylabel("IoU")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
