"""Feature squeezing (Xu, Evans & Qi 2018): a detector. Squeeze the input two ways — bit-
depth reduction and a median filter — and flag it when the softmax moves by more (L1)
than a threshold set from a target false-positive rate on clean images.

The squeezers are not differentiable (rounding) or barely (a median); the wrapper's
``squeeze`` passes gradients straight through (BPDA, Athalye et al. 2018), so an adapted
attacker can optimise against detector and classifier together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adversarial.defenses import register
from adversarial.defenses.base import InferenceDefense, check


def reduce_bits(x: Tensor, bits: int) -> Tensor:
    levels = 2**bits - 1
    return torch.round(x * levels) / levels


def median_filter(x: Tensor, size: int) -> Tensor:
    pad = size // 2
    padded = F.pad(x, (pad, size - 1 - pad, pad, size - 1 - pad), mode="reflect")
    patches = padded.unfold(2, size, 1).unfold(3, size, 1)
    return patches.reshape(*patches.shape[:4], -1).median(dim=-1).values


def straight_through(x: Tensor, squeezed: Tensor) -> Tensor:
    """``squeezed`` forward, the identity's gradient backward (BPDA)."""
    return x + (squeezed - x).detach()


class SqueezeDetector(nn.Module):
    """``forward`` = the model's logits (the detector does not change predictions);
    ``score`` = max L1 distance of softmaxes; ``detect`` = score > threshold."""

    def __init__(self, model: nn.Module, bits: int, median: int, threshold: float | None):
        super().__init__()
        self.model, self.bits, self.median = model, bits, median
        self.threshold = threshold

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def squeezed(self, x: Tensor) -> list[Tensor]:
        out = [straight_through(x, reduce_bits(x, self.bits))]
        if self.median > 1:
            out.append(straight_through(x, median_filter(x, self.median)))
        return out

    def score(self, x: Tensor) -> Tensor:
        p = F.softmax(self.model(x), dim=1)
        return torch.stack(
            [(p - F.softmax(self.model(s), dim=1)).abs().sum(1) for s in self.squeezed(x)]
        ).amax(0)

    @torch.no_grad()
    def calibrate(self, clean: Tensor, false_positive_rate: float = 0.05) -> float:
        """The threshold that flags ``false_positive_rate`` of these clean images."""
        check(0 < false_positive_rate < 1, "false_positive_rate must lie in (0, 1)")
        self.threshold = float(torch.quantile(self.score(clean), 1 - false_positive_rate))
        return self.threshold

    @torch.no_grad()
    def detect(self, x: Tensor) -> Tensor:
        check(self.threshold is not None, "calibrate the detector on clean images first")
        return self.score(x) > self.threshold


@dataclass(kw_only=True)
class FeatureSqueezing(InferenceDefense):
    bits: int = 1  # Xu et al.: 1-bit depth for MNIST
    median: int = 2  # 2×2 median filter for MNIST
    threshold: float | None = None  # set by calibrate() on clean data

    name = "squeeze"

    def __post_init__(self) -> None:
        check(1 <= self.bits <= 8, f"bits={self.bits}: choose 1 to 8")
        check(self.median >= 1, f"median={self.median}: window must be ≥ 1")

    def wrap(self, model: nn.Module) -> SqueezeDetector:
        return SqueezeDetector(model, self.bits, self.median, self.threshold)


@register("squeeze")
def squeeze(**options) -> FeatureSqueezing:
    return FeatureSqueezing(**options)
