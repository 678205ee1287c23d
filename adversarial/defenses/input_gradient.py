"""Input-gradient regularisation (Ross & Doshi-Velez 2018): CE + λ·‖∇ₓ CE‖², by double
backpropagation (the input gradient is differentiated again for the parameter step)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adversarial.defenses import register
from adversarial.defenses.base import TrainingDefense, check
from nets.train import TrainStep


class GradientPenaltyStep(TrainStep):
    def __init__(self, weight: float) -> None:
        self.weight = weight

    def loss(self, model, x, y):
        x = x.clone().requires_grad_(True)
        logits = model(x)
        per_image = F.cross_entropy(logits, y, reduction="none")
        # the sum's gradient is each image's own input gradient (the mean's would be ÷ N)
        (grad,) = torch.autograd.grad(per_image.sum(), x, create_graph=True)
        penalty = grad.flatten(1).pow(2).sum(1).mean()
        return per_image.mean() + self.weight * penalty, logits


@dataclass(kw_only=True)
class InputGradient(TrainingDefense):
    weight: float = 1.0  # λ; the penalty is the squared L2 norm per image, batch-averaged

    name = "input-gradient"

    def __post_init__(self) -> None:
        check(self.weight >= 0, f"weight={self.weight}: λ must be ≥ 0")

    def step(self) -> TrainStep:
        return GradientPenaltyStep(self.weight)


@register("input-gradient")
def input_gradient(**options) -> InputGradient:
    return InputGradient(**options)
