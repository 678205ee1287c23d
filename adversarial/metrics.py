"""Norms of perturbations, success masks and robust accuracy."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adversarial.base import success


def norms(x: Tensor, x_adv: Tensor) -> dict[str, Tensor]:
    """Per-sample L0 (changed pixels), L2 and L∞ of x_adv − x."""
    d = (x_adv - x).flatten(1)
    return {
        "l0": (d.abs() > 1e-6).sum(1).float(),
        "l2": d.norm(dim=1),
        "linf": d.abs().amax(1) if d.shape[1] else d.sum(1),
    }


@torch.no_grad()
def predictions(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    was = model.training
    model.eval()
    try:
        return torch.cat(
            [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
        )
    finally:
        model.train(was)


def summary(
    model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, target: Tensor | None = None
) -> dict[str, float]:
    """Clean and robust accuracy, success rate (over images classified right to begin
    with), and mean norms of the successful perturbations."""
    clean = predictions(model, x) == y
    adv_pred = predictions(model, x_adv)
    fooled = success(adv_pred, y, target) & clean
    n = norms(x, x_adv)
    out = {
        "clean_accuracy": clean.float().mean().item(),
        "robust_accuracy": (adv_pred == y).float().mean().item(),
        "success_rate": (fooled.sum() / clean.sum().clamp(min=1)).item(),
    }
    for k, v in n.items():
        out[f"mean_{k}"] = v[fooled].mean().item() if fooled.any() else 0.0
    return out
