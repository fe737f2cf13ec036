"""``python chart_png.py OUT.png < results.json``: the peers chart (run where matplotlib is installed)."""

from __future__ import annotations

import json
import sys

import matplotlib  # type: ignore[import-not-found]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found]

SERVERS = {"kit": "kit container", "bentoml": "BentoML", "litserve": "LitServe"}
COLOURS = {"kit": "#1f77b4", "bentoml": "#ff7f0e", "litserve": "#2ca02c"}


def main() -> None:
    results = json.load(sys.stdin)
    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items(), strict=True):
        connections = [str(c) for c in results["connections"]]
        width = 0.8 / len(SERVERS)
        for i, (server, label) in enumerate(SERVERS.items()):
            figures = model["summary"].get(server)
            if not figures:
                continue
            highs = [figures[c]["rows_per_s"][1] for c in connections]
            lows = [figures[c]["rows_per_s"][0] for c in connections]
            xs = [j + (i - 1) * width for j in range(len(connections))]
            ax.bar(xs, highs, width, label=label, color=COLOURS[server])
            ax.errorbar(xs, highs, yerr=[[h - lo for h, lo in zip(highs, lows, strict=True)], [0] * len(highs)],
                        fmt="none", ecolor="black", capsize=3, linewidth=1)  # fmt: skip
        ax.set_xticks(range(len(connections)), [f"{c} conn." for c in connections])
        ax.set_yscale("log")
        ax.set_ylabel("rows/s (one row per request)")
        ax.set_title(f"{name} ({model['parameters'] / 1e6:.1f} M parameters), {results['device'].upper()}")
        ax.grid(axis="y", which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("Serving throughput under wrk: bars max, whiskers min over the rounds", fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[1], dpi=110)


if __name__ == "__main__":
    main()
