"""Feature-denoising block (Xie et al. 2019, "Feature Denoising for Improving Adversarial
Robustness"): non-local means over the feature map, a 1×1 convolution, and a residual
connection — ``y = x + conv1x1(NLM(x))``.

Non-local means with the embedded-Gaussian (softmax of dot products) weights, the variant
Xie et al. found best: every position becomes a weighted mean of all positions, weighted
by feature similarity. The 1×1 convolution starts at zero, so an inserted block is the
identity until training moves it.
"""

from __future__ import annotations

import torch
from torch import nn


class NonLocalDenoise(nn.Module):
    def __init__(self, channels: int, *, embed: int | None = None) -> None:
        super().__init__()
        embed = embed or max(1, channels // 2)
        self.theta = nn.Conv2d(channels, embed, 1, bias=False)
        self.phi = nn.Conv2d(channels, embed, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.scale = embed**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.theta(x).flatten(2)  # (B, E, HW)
        k = self.phi(x).flatten(2)
        weights = torch.softmax(torch.einsum("bei,bej->bij", q, k) * self.scale, dim=-1)
        mean = torch.einsum("bij,bcj->bci", weights, x.flatten(2)).view(b, c, h, w)
        return x + self.out(mean)


def insert_denoise(model: nn.Module, blocks: int) -> nn.Module:
    """Insert ``blocks`` denoising blocks into a Sequential model, each after the activation
    that follows a convolution (the first ``blocks`` such places)."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"denoise=N works on sequential convnets, not {type(model).__name__}")
    layers, channels, placed = [], None, 0
    for layer in model:
        layers.append(layer)
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
            continue
        if channels is not None and placed < blocks and _is_activation(layer):
            layers.append(NonLocalDenoise(channels))
            placed += 1
            channels = None
    if placed < blocks:
        raise ValueError(f"denoise={blocks}: the model has only {placed} conv activations")
    return nn.Sequential(*layers)


def _is_activation(layer: nn.Module) -> bool:
    return not isinstance(
        layer, nn.Conv2d | nn.Linear | nn.MaxPool2d | nn.Flatten | nn.Dropout | nn.BatchNorm2d
    )
