"""TRADES (Zhang et al. 2019): CE(f(x), y) + β·KL(f(x) ‖ f(x′)), x′ found by PGD ascending
the KL term from a small Gaussian start (the authors' code: x + 0.001·N(0, 1))."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adversarial.defenses import register
from adversarial.defenses.base import TrainingDefense, check
from nets.train import TrainStep


class TradesStep(TrainStep):
    def __init__(self, eps: float, step: float, steps: int, beta: float) -> None:
        self.eps, self.step_size, self.steps, self.beta = eps, step, steps, beta

    def _adversary(self, model, x):
        model.eval()
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1).detach()
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            with torch.no_grad():
                x_adv = x_adv + self.step_size * grad.sign()
                x_adv = (x + (x_adv - x).clamp(-self.eps, self.eps)).clamp(0, 1)
        model.train()
        return x_adv.detach()

    def loss(self, model, x, y):
        x_adv = self._adversary(model, x)
        logits = model(x)
        robust = F.kl_div(
            F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean"
        )
        return F.cross_entropy(logits, y) + self.beta * robust, logits


@dataclass(kw_only=True)
class Trades(TrainingDefense):
    eps: float = 0.1
    step_size: float | None = None  # default ε/4
    steps: int = 10
    beta: float = 6.0  # the paper's trade-off for MNIST and CIFAR-10

    name = "trades"

    def __post_init__(self) -> None:
        check(0 < self.eps <= 1, f"eps={self.eps}: choose an L∞ radius in (0, 1]")
        check(self.beta >= 0 and self.steps >= 1, "beta must be ≥ 0 and steps ≥ 1")

    def step(self) -> TrainStep:
        return TradesStep(self.eps, self.step_size or self.eps / 4, self.steps, self.beta)


@register("trades")
def trades(**options) -> Trades:
    return Trades(**options)
