"""BadNets (Gu, Dolan-Gavitt & Garg 2017): a backdoor planted by poisoning training data.

A trigger patch (size, corner, pattern) is stamped onto a fraction of the training
images, whose labels become the target class; a model trained on the result classifies
clean images normally and stamped ones as the target. Used to test Neural Cleanse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adversarial.defenses.base import check
from nets.data import Dataset

CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


@dataclass(frozen=True)
class Trigger:
    size: int = 4  # side of the square patch, pixels
    position: str = "bottom-right"
    pattern: str = "checker"  # checker (alternating 1/0) or white
    margin: int = 1  # pixels between the patch and the image border

    def __post_init__(self) -> None:
        check(self.size >= 1, f"trigger size {self.size}: must be ≥ 1")
        check(self.position in CORNERS, f"position {self.position!r}: choose {CORNERS}")
        check(self.pattern in ("checker", "white"), f"pattern {self.pattern!r}: checker|white")
        check(self.margin >= 0, f"margin {self.margin}: pixels from the border, ≥ 0")

    def mask_and_pattern(self, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) mask in {0, 1} and (C, H, W) pattern: stamped = (1 − m)·x + m·p."""
        c, h, w = shape
        check(self.size + self.margin <= min(h, w), f"a {self.size}-pixel trigger on {h}×{w}")
        mask = np.zeros((h, w), dtype=np.float32)
        top = self.margin if self.position.startswith("top") else h - self.margin - self.size
        left = self.margin if self.position.endswith("left") else w - self.margin - self.size
        mask[top : top + self.size, left : left + self.size] = 1.0
        if self.pattern == "white":
            pattern = np.ones((c, h, w), dtype=np.float32)
        else:
            yy, xx = np.indices((h, w))
            pattern = np.broadcast_to(((yy + xx) % 2 == 0).astype(np.float32), (c, h, w)).copy()
        return mask, pattern

    def stamp(self, images: np.ndarray) -> np.ndarray:
        mask, pattern = self.mask_and_pattern(images.shape[1:])
        return ((1 - mask) * images + mask * pattern).astype(np.float32)


def poison(
    data: Dataset, trigger: Trigger, target: int, rate: float, seed: int = 0
) -> tuple[Dataset, np.ndarray]:
    """→ (training set with ``rate`` of its non-target images stamped and relabelled,
    indices of the poisoned images)."""
    check(0 < rate < 1, f"poison rate {rate}: choose a fraction in (0, 1)")
    check(0 <= target < len(data.classes), f"target class {target}: 0–{len(data.classes) - 1}")
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(data.labels != target)
    picks = rng.choice(candidates, int(round(rate * len(data))), replace=False)
    images, labels = data.images.copy(), data.labels.copy()
    images[picks] = trigger.stamp(images[picks])
    labels[picks] = target
    return Dataset(data.name, data.split, images, labels, data.classes), picks


@torch.no_grad()
def attack_success(model, data: Dataset, trigger: Trigger, target: int, device="cpu") -> float:
    """Fraction of stamped test images (true class ≠ target) classified as the target."""
    keep = data.labels != target
    x = torch.from_numpy(trigger.stamp(data.images[keep])).to(device)
    model.eval()
    pred = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return float((pred == target).float().mean())
