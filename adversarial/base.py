"""What every attack shares, written once: device, eval mode, [0, 1] clamping, targets.

An attack is called as ``attack(model, x, y, target=None) -> x_adv``: ``x`` (B, C, H, W)
in [0, 1] on the model's device, ``y`` the true labels, ``target`` the labels to reach
(targeted) or None (untargeted: any label but ``y``). The model is put in eval mode and
its mode restored; its parameters are not touched. Subclasses implement ``_run`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


class AttackError(ValueError):
    """Bad arguments to an attack: says which value and how to fix it."""


@dataclass
class Attack:
    """Base of every attack; hyper-parameters are the subclass's dataclass fields."""

    name = "attack"
    needs_gradients = True  # False: runs through an oracle (labels or scores only)

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None
    ) -> Tensor:
        if x.ndim != 4:
            raise AttackError(f"x has shape {tuple(x.shape)}; attacks take (B, C, H, W) batches")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise AttackError(
                f"x spans [{x.min():.3g}, {x.max():.3g}]; attacks work on images in [0, 1]"
            )
        if y.shape != (len(x),):
            raise AttackError(f"y has shape {tuple(y.shape)}; expected ({len(x)},) labels")
        if target is not None and target.shape != y.shape:
            raise AttackError(f"target has shape {tuple(target.shape)}; expected {tuple(y.shape)}")
        was_training = getattr(model, "training", False)
        if isinstance(model, nn.Module):
            model.eval()
        try:
            with torch.enable_grad():
                x_adv = self._run(model, x.detach(), y.to(x.device), _to(target, x.device))
        finally:
            if isinstance(model, nn.Module):
                model.train(was_training)
        return x_adv.detach().clamp(0.0, 1.0)

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        raise NotImplementedError


def _to(t: Tensor | None, device: torch.device) -> Tensor | None:
    return None if t is None else t.to(device)


def least_likely(model: nn.Module, x: Tensor) -> Tensor:
    """The class each image is least likely to be (Kurakin's ILCM target)."""
    with torch.no_grad():
        return model(x).argmin(1)


def success(pred: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """The one success definition every attack and metric uses: the predicted class is the
    target (targeted) or any class but the true one (untargeted)."""
    return pred == target if target is not None else pred != y
