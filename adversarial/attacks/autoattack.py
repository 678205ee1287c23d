"""AutoAttack, "standard" (Croce & Hein 2020): APGD-CE, APGD-T (DLR, 9 targets), FAB-T
(9 targets) and Square (5,000 queries), run in sequence, each on the points every attack
before it failed to break. Robust accuracy is the fraction no member breaks; the report
says which member broke which point, and the counts add up to the number of images.

Images are attacked in batches; a rich progress bar follows members × batches when asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from rich.progress import Progress
from torch import Tensor

from adversarial.attacks import balls, register
from adversarial.attacks.apgd import APGD
from adversarial.attacks.fab import FAB
from adversarial.attacks.square import Square, SquareL2
from adversarial.base import Attack, AttackError
from adversarial.oracle import Oracle

CLEAN = "misclassified clean"
ROBUST = "robust (no attack broke it)"


@dataclass
class Breakdown:
    """Who broke what: ``broken_by[i]`` names the first member that broke image i (or
    ``CLEAN`` / ``ROBUST``); counts and seconds per member."""

    members: list[str]
    broken_by: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {name: 0 for name in [CLEAN, *self.members, ROBUST]}
        for who in self.broken_by:
            out[who] += 1
        return out

    @property
    def n(self) -> int:
        return len(self.broken_by)

    @property
    def clean_accuracy(self) -> float:
        return 1 - self.counts()[CLEAN] / max(1, self.n)

    @property
    def robust_accuracy(self) -> float:
        return self.counts()[ROBUST] / max(1, self.n)

    def as_dict(self) -> dict:
        counts = self.counts()
        left, after = self.n - counts[CLEAN], {}
        for name in self.members:
            left -= counts[name]
            after[name] = left / max(1, self.n)
        return {
            "n_images": self.n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "broken_by": counts,
            "robust_accuracy_after": after,  # cumulative: what is left after each member
            "seconds": self.seconds,
        }


@register("autoattack")
@dataclass
class AutoAttack(Attack):
    eps: float = 8 / 255
    norm: str = "linf"
    steps: int = 100  # APGD and FAB iterations
    targets: int = 9  # APGD-T and FAB-T target classes
    square_queries: int = 5000
    seed: int = 0
    batch_size: int = 500
    progress: bool = False

    name = "autoattack"

    def __post_init__(self) -> None:
        balls.check_norm(self.norm)
        if self.eps < 0 or self.batch_size < 1:
            raise AttackError(f"eps={self.eps}, batch_size={self.batch_size}: need ≥ 0 and ≥ 1")
        self.last: Breakdown | None = None

    def members(self) -> list[tuple[str, Attack]]:
        e, nm, s, seed = self.eps, self.norm, self.steps, self.seed
        square = (
            Square(eps=e, queries=self.square_queries, p_init=0.8, seed=seed)
            if nm == "linf"
            else SquareL2(eps=e, queries=self.square_queries, p_init=0.8, seed=seed)
        )
        return [
            ("apgd-ce", APGD(eps=e, norm=nm, steps=s, loss="ce", seed=seed)),
            ("apgd-t", APGD(eps=e, norm=nm, steps=s, loss="dlr", targets=self.targets, seed=seed)),
            (
                "fab-t",
                FAB(eps=e, norm=nm, steps=s, targets=self.targets, seed=seed, stop_within_eps=True),
            ),
            ("square", square),
        ]

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is not None:
            raise AttackError("autoattack is untargeted (its members pick their own targets)")
        x_adv, self.last = self.evaluate(model, x, y)
        return x_adv

    def evaluate(self, model, x: Tensor, y: Tensor) -> tuple[Tensor, Breakdown]:
        """→ (adversarial images: the first successful member's, else x; the breakdown)."""
        was_training = getattr(model, "training", False)
        model.eval()
        try:
            return self._evaluate(model, x, y)
        finally:
            model.train(was_training)

    def _evaluate(self, model, x: Tensor, y: Tensor) -> tuple[Tensor, Breakdown]:
        members = self.members()
        report = Breakdown([name for name, _ in members])
        with torch.no_grad():
            pred = torch.cat(
                [model(x[i : i + self.batch_size]).argmax(1) for i in _starts(x, self)]
            )
        who = [CLEAN if bool(p != t) else ROBUST for p, t in zip(pred, y, strict=True)]
        open_ = pred == y
        x_adv = x.clone()
        with Progress(disable=not self.progress, transient=True) as bar:
            task = bar.add_task("autoattack", total=len(members))
            for name, attack in members:
                bar.update(task, description=f"{name} on {int(open_.sum())} points")
                t0 = time.perf_counter()
                idx = open_.nonzero().flatten()
                for i in range(0, len(idx), self.batch_size):
                    part = idx[i : i + self.batch_size]
                    victim = model if attack.needs_gradients else Oracle(model)
                    cand = attack(victim, x[part], y[part])
                    with torch.no_grad():
                        won = (model(cand).argmax(1) != y[part]) & within(
                            cand, x[part], self.eps, self.norm
                        )
                    x_adv[part[won]] = cand[won]
                    open_[part[won]] = False
                    for j in part[won].tolist():
                        who[j] = name
                report.seconds[name] = time.perf_counter() - t0
                bar.advance(task)
        report.broken_by = who
        return x_adv, report


def _starts(x: Tensor, aa: AutoAttack) -> range:
    return range(0, len(x), aa.batch_size)


def within(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Only perturbations inside the budget count (with float32 slack)."""
    return balls.size(x_adv - x, norm) <= eps * (1 + 1e-5) + 1e-6
