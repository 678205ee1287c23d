"""Free adversarial training (Shafahi et al. 2019, "Adversarial Training for Free!").

Each minibatch is replayed ``m`` times; one backward pass per replay gives both the
parameter gradient (an optimizer step) and the input gradient (a step of the
perturbation δ ← clip(δ + ε·sign(∇δ), −ε, ε)); δ persists from one minibatch to the next.
The epochs are divided by m, so the number of forward/backward passes equals standard
training's. No mainstream library ships it, hence written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from adversarial.defenses import register
from adversarial.defenses.base import TrainingDefense, check, ramped
from nets.train import StepOutput, TrainConfig, TrainStep


class FreeStep(TrainStep):
    def __init__(self, eps: float, replays: int, ramp_epochs: int = 0) -> None:
        self.eps_final, self.replays, self.ramp = eps, replays, ramp_epochs
        self.eps = ramped(eps, ramp_epochs, 0)
        self.delta: torch.Tensor | None = None
        self.passes = 0  # forward/backward passes, for the equal-cost check

    def __call__(self, model, optimizer, x, y) -> StepOutput:
        if self.delta is None or self.delta.shape[1:] != x.shape[1:]:
            self.delta = torch.zeros_like(x[:1]).expand_as(x).clone()
        if len(self.delta) != len(x):  # the last, shorter batch: the perturbation is cut
            self.delta = (
                self.delta[: len(x)]
                if len(self.delta) > len(x)
                else torch.cat([self.delta, torch.zeros_like(x[: len(x) - len(self.delta)])])
            )
        total = 0.0
        for _ in range(self.replays):
            delta = self.delta.detach().requires_grad_(True)
            logits = model((x + delta).clamp(0, 1))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # one pass: ∇θ for the step, ∇δ for the perturbation
            optimizer.step()
            with torch.no_grad():
                self.delta = (delta + self.eps * delta.grad.sign()).clamp(-self.eps, self.eps)
            total += float(loss.detach())
            self.passes += 1
        return StepOutput(total / self.replays, logits.detach())

    def end_epoch(self, model, epoch: int) -> dict[str, float]:
        used, self.eps = self.eps, ramped(self.eps_final, self.ramp, epoch)
        return {"train_eps": used}


@dataclass(kw_only=True)
class FreeTraining(TrainingDefense):
    eps: float = 0.1
    replays: int = 4  # m
    ramp_epochs: int = 0  # ε warm-up, in (divided) epochs

    name = "free"

    def __post_init__(self) -> None:
        check(0 < self.eps <= 1, f"eps={self.eps}: choose an L∞ radius in (0, 1]")
        check(self.replays >= 1, f"replays={self.replays}: m must be ≥ 1")

    def config(self, cfg: TrainConfig) -> TrainConfig:
        return replace(cfg, epochs=max(1, math.ceil(cfg.epochs / self.replays)))

    def step(self) -> TrainStep:
        return FreeStep(self.eps, self.replays, self.ramp_epochs)


@register("free")
def free(**options) -> FreeTraining:
    return FreeTraining(**options)
