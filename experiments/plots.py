"""Figures only experiments draw: heat maps over a grid and a bar chart on a log scale."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def heatmaps(
    panels: dict[str, np.ndarray],
    rows: list[str],
    cols: list[str],
    path: Path,
    *,
    marks: np.ndarray | None = None,
    ylabel: str = "",
    xlabel: str = "",
) -> Path:
    """One heat map per panel (same grid), the value in each cell; ``marks`` (same shape,
    strings) annotate cells, e.g. groups of matched parameter counts."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, values) in zip(axes[0], panels.items(), strict=True):
        im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, origin="lower")
        for (r, c), v in np.ndenumerate(values):
            mark = f"\n{marks[r, c]}" if marks is not None and marks[r, c] else ""
            ax.text(c, r, f"{v:.2f}{mark}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_bars(groups: dict[str, dict[str, float]], path: Path, *, ylabel: str) -> Path:
    """Grouped bars on a log axis: ``{group: {series: value}}``; each group shows only its
    own series, side by side, one colour per series name across groups."""
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    colours = {s: plt.cm.tab10(i % 10) for i, s in enumerate(series)}
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(groups), 3.6))
    width = 0.8 / max(len(g) for g in groups.values())
    seen: set[str] = set()
    for j, g in enumerate(groups.values()):
        for i, (name, value) in enumerate(g.items()):
            x = j + (i - (len(g) - 1) / 2) * width
            ax.bar(x, value, width, color=colours[name], label=None if name in seen else name)
            seen.add(name)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
