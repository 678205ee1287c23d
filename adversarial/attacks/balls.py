"""The L∞ and L2 balls the AutoAttack members work in: a random start, the steepest-ascent
direction, the projection, and the norm — one place, selected by name ("linf" or "l2")."""

from __future__ import annotations

import torch
from torch import Tensor

from adversarial.base import AttackError

NORMS = ("linf", "l2")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise AttackError(f"norm={norm!r}: choose linf or l2")
    return norm


def _per_image(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def size(d: Tensor, norm: str) -> Tensor:
    """Per-image norm of a batch of perturbations."""
    flat = d.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def random_start(x: Tensor, eps: float | Tensor, norm: str, gen: torch.Generator) -> Tensor:
    """A point drawn in the ball around x (L∞: uniform per pixel; L2: a random direction at
    a uniform radius), inside [0, 1]."""
    eps = _per_image(torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(len(x)), x)
    if norm == "linf":
        u = torch.rand(x.shape, generator=gen).to(x.device, x.dtype)
        return (x + eps * (2 * u - 1)).clamp(0, 1)
    d = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    d = d / _per_image(size(d, "l2").clamp_min(1e-12), x)
    r = torch.rand(len(x), generator=gen).to(x.device, x.dtype)
    return (x + d * eps * _per_image(r, x)).clamp(0, 1)


def direction(grad: Tensor, norm: str) -> Tensor:
    """The unit-norm direction of steepest ascent: sign (L∞) or the normalised gradient."""
    if norm == "linf":
        return grad.sign()
    return grad / _per_image(size(grad, "l2").clamp_min(1e-12), grad)


def project(x: Tensor, x_adv: Tensor, eps: float, norm: str) -> Tensor:
    """x_adv moved onto the ε-ball around x, then into [0, 1]."""
    d = x_adv - x
    if norm == "linf":
        d = d.clamp(-eps, eps)
    else:
        d = d * _per_image((eps / size(d, "l2").clamp_min(1e-12)).clamp(max=1.0), d)
    return (x + d).clamp(0, 1)
