"""Activations by name, so a model's activation is a plain string argument.

``square`` (x²) is the HE-friendly one: a polynomial that CKKS and BFV evaluate exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nets.errors import ModelError


class Square(nn.Module):
    """x ↦ x², the CryptoNets activation (Dowlin et al. 2016)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "square": Square,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    """A new activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ModelError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
