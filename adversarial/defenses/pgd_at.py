"""PGD adversarial training (Madry et al. 2018): minimise the loss at the worst point of
the ε-ball found by PGD, optionally mixed with the clean loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from adversarial.attacks.pgd import LinfPGD
from adversarial.defenses import register
from adversarial.defenses.base import TrainingDefense, check, ramped
from nets.train import TrainStep


class AdversarialStep(TrainStep):
    """Cross-entropy on PGD examples (made with the model in eval mode, as Madry's code)."""

    def __init__(self, attack: LinfPGD, clean_weight: float = 0.0, ramp_epochs: int = 0):
        self.attack, self.clean_weight = attack, clean_weight
        self.eps, self.step_size, self.ramp = attack.eps, attack.step, ramp_epochs
        self._set_epoch(0)

    def _set_epoch(self, done: int) -> None:
        """ε (and the step) grow linearly over the first ``ramp`` epochs: from scratch at a
        large ε (MNIST 0.3) the model otherwise never leaves chance accuracy."""
        scale = ramped(1.0, self.ramp, done)
        self.attack.eps, self.attack.step = self.eps * scale, self.step_size * scale

    def end_epoch(self, model, epoch: int) -> dict[str, float]:
        used = self.attack.eps
        self._set_epoch(epoch)
        return {"train_eps": used}

    def loss(self, model, x, y):
        x_adv = self.attack(model, x, y)  # restores train mode
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        if self.clean_weight:
            loss = (1 - self.clean_weight) * loss + self.clean_weight * F.cross_entropy(model(x), y)
        return loss, logits


@dataclass(kw_only=True)
class PGDTraining(TrainingDefense):
    eps: float = 0.1  # L∞ radius, in [0, 1] pixel units
    step_size: float | None = None  # default 2.5·ε/steps (Madry)
    steps: int = 7
    restarts: int = 1
    clean_weight: float = 0.0  # 0: all adversarial; 0.5: half clean, half adversarial
    ramp_epochs: int = 0  # ε grows linearly to its value over this many epochs

    name = "pgd-at"

    def __post_init__(self) -> None:
        check(0 < self.eps <= 1, f"eps={self.eps}: choose an L∞ radius in (0, 1]")
        check(self.steps >= 1 and self.restarts >= 1, "steps and restarts must be ≥ 1")
        check(0 <= self.clean_weight < 1, f"clean_weight={self.clean_weight}: choose [0, 1)")
        check(self.ramp_epochs >= 0, f"ramp_epochs={self.ramp_epochs}: must be ≥ 0")

    def attack(self) -> LinfPGD:
        step = self.step_size or 2.5 * self.eps / self.steps
        return LinfPGD(eps=self.eps, step=step, steps=self.steps, restarts=self.restarts)

    def step(self) -> TrainStep:
        return AdversarialStep(self.attack(), self.clean_weight, self.ramp_epochs)


@register("pgd-at")
def pgd_at(**options) -> PGDTraining:
    return PGDTraining(**options)
