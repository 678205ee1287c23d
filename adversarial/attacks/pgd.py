"""Projected gradient descent (Madry et al. 2018) — and FGSM, BIM, ILCM as its settings.

One loop; a norm supplies three hooks: the random start, the step direction, and the
projection onto the ε-ball. FGSM (Goodfellow et al. 2015) is one full step of size ε
without a random start; BIM / I-FGSM (Kurakin et al. 2017) is PGD without the random
start; ILCM is BIM aimed at each image's least-likely class. Loss: mean cross-entropy
(ascended untargeted, descended toward the target) — the same as torchattacks, so with
one restart and a fixed seed the two produce identical images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack, AttackError, least_likely, success


@register("pgd")
@dataclass
class LinfPGD(Attack):
    eps: float = 8 / 255  # radius of the L∞ ball
    step: float | None = None  # step size α; None: ε/4
    steps: int = 10
    random_start: bool = True
    restarts: int = 1  # keep, per image, the first restart that succeeds
    least_likely_target: bool = False  # ILCM: aim at the least-likely class
    loss: str = "ce"  # or "margin": C&W's logit margin, immune to a saturated softmax

    name = "pgd"

    def __post_init__(self) -> None:
        if self.step is None:
            self.step = self.default_step()
        if self.loss not in ("ce", "margin"):
            raise AttackError(f"loss={self.loss!r}: choose ce or margin")
        if self.eps < 0 or self.step <= 0 or self.steps < 1 or self.restarts < 1:
            raise AttackError(
                f"eps={self.eps}, step={self.step}, steps={self.steps}, restarts={self.restarts}: "
                "need eps ≥ 0, step > 0, steps ≥ 1, restarts ≥ 1"
            )

    def default_step(self) -> float:
        return self.eps / 4

    # --- the norm's hooks -------------------------------------------------------------------
    def start(self, x: Tensor) -> Tensor:
        return (x + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp(0, 1)

    def direction(self, grad: Tensor) -> Tensor:
        return grad.sign()

    def project(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """Onto the ε-ball around x and into [0, 1]; may reuse x_adv's storage."""
        return x_adv.sub_(x).clamp_(-self.eps, self.eps).add_(x).clamp_(0, 1)

    # --- the loop, once ---------------------------------------------------------------------
    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if self.least_likely_target and target is None:
            target = least_likely(model, x)
        if self.restarts == 1:  # no bookkeeping, no extra forward pass
            return self._one_run(model, x, y, target)
        best = x.clone()
        open_ = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            x_adv = self._one_run(model, x, y, target)
            with torch.no_grad():
                won = success(model(x_adv).argmax(1), y, target)
            best[open_ & won] = x_adv[open_ & won]
            open_ &= ~won
            if not open_.any():
                break
        best[open_] = x_adv[open_]  # images no restart fooled keep the last try
        return best

    def _loss(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """What the attack ascends: CE away from y (or toward the target), or the margin
        between the best other logit and the true one (Carlini & Wagner 2017, f6)."""
        if self.loss == "margin":
            wanted = target if target is not None else y
            own = logits.gather(1, wanted[:, None]).squeeze(1)
            others = logits.masked_fill(F.one_hot(wanted, logits.shape[1]).bool(), -torch.inf)
            margin = others.amax(1) - own
            return (-margin if target is not None else margin).sum()
        if target is not None:
            return -F.cross_entropy(logits, target)
        return F.cross_entropy(logits, y)

    def _one_run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        x_adv = self.start(x).detach() if self.random_start else x.clone().detach()
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = self._loss(model(x_adv), y, target)
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():  # the step, then the projection, in place
                x_adv = x_adv.detach().add_(self.direction(grad), alpha=self.step)
                x_adv = self.project(x, x_adv)
        return x_adv


@register("pgd-l2")
@dataclass
class L2PGD(LinfPGD):
    eps: float = 1.0  # radius of the L2 ball

    name = "pgd-l2"

    def start(self, x: Tensor) -> Tensor:
        d = torch.randn_like(x)
        d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        r = torch.rand(len(x), 1, 1, 1, device=x.device) * self.eps
        return (x + d * r).clamp(0, 1)

    def direction(self, grad: Tensor) -> Tensor:
        return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)

    def project(self, x: Tensor, x_adv: Tensor) -> Tensor:
        delta = x_adv - x
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = delta * torch.clamp(self.eps / norm, max=1.0)
        return (x + delta).clamp(0, 1)


@register("fgsm")
@dataclass
class FGSM(LinfPGD):
    """One step of size ε from x itself (step None: ε)."""

    steps: int = 1
    random_start: bool = False

    name = "fgsm"

    def default_step(self) -> float:
        return self.eps


@register("bim")
@dataclass
class BIM(LinfPGD):
    """Kurakin et al.'s basic iterative method: step 1/255 from x itself; steps None: their
    count, min(ε·255 + 4, 1.25·ε·255)."""

    step: float | None = 1 / 255
    steps: int | None = None
    random_start: bool = False

    name = "bim"

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = max(1, int(min(self.eps * 255 + 4, 1.25 * self.eps * 255)))
        super().__post_init__()


@register("ilcm")
@dataclass
class ILCM(BIM):
    """BIM aimed at each image's least-likely class (Kurakin's iterative least-likely class)."""

    least_likely_target: bool = True

    name = "ilcm"
