"""PNG grids of originals, adversarial images and perturbations (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _show(ax, img: np.ndarray, title: str) -> None:
    img = np.asarray(img)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.moveaxis(img, 0, -1).clip(0, 1))
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def attack_grid(x, x_adv, y, pred_adv, classes, path: Path, n: int = 8) -> Path:
    """Rows: original (true label), adversarial (its prediction), |perturbation| × 5."""
    n = min(n, len(x))
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
    for i in range(n):
        _show(axes[0, i], x[i], f"{classes[int(y[i])]}")
        _show(axes[1, i], x_adv[i], f"→ {classes[int(pred_adv[i])]}")
        _show(axes[2, i], np.abs(x_adv[i] - x[i]).clip(0, 0.2) * 5, "|δ|×5")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def target_grid(sources, adversarial, reached, classes, path: Path) -> Path:
    """Rows: source images; column 0 the original, column k + 1 the image aimed at class k
    (title in red where the classifier did not say k)."""
    rows, cols = adversarial.shape[:2]
    fig, axes = plt.subplots(rows, cols + 1, figsize=(1.1 * (cols + 1), 1.2 * rows), squeeze=False)
    for r in range(rows):
        _show(axes[r, 0], sources[r], "original")
        for k in range(cols):
            _show(axes[r, k + 1], adversarial[r, k], f"→ {classes[k]}")
            if not reached[r, k]:
                axes[r, k + 1].title.set_color("red")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def certified_curve(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, styles: dict | None = None
) -> Path:
    """Certified accuracy against L2 radius, one line per label (e.g. per σ); ``styles``:
    matplotlib keyword arguments per label (a dashed line over an equal one stays visible)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, (radii, acc) in curves.items():
        ax.plot(radii, acc, label=label, **(styles or {}).get(label, {}))
    ax.set_xlabel("L2 radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def trigger_grid(masks, patterns, l1, anomaly, classes, path: Path) -> Path:
    """Per class: the reversed mask, the pattern, and mask × pattern, titled with ‖m‖₁."""
    k = len(masks)
    fig, axes = plt.subplots(3, k, figsize=(1.6 * k, 5), squeeze=False)
    for c in range(k):
        axes[0, c].imshow(masks[c], cmap="gray", vmin=0, vmax=1)
        axes[0, c].set_title(f"{classes[c]}\n‖m‖₁ {l1[c]:.1f}\nindex {anomaly[c]:.2f}", fontsize=7)
        _show(axes[1, c], patterns[c], "pattern")
        _show(axes[2, c], masks[c][None] * patterns[c], "m·p")
        axes[0, c].axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
