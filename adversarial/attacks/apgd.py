"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", Algorithm 1): PGD without a step size to tune.

The step starts at η = 2ε and is halved at checkpoints w_j = ⌈p_j·N⌉ (p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) when, since the last checkpoint, the loss
rose in fewer than ρ = 75 % of the steps, or when neither the step nor the best loss
changed; on a halving the iterate goes back to the best point. Each step is a projected
ascent step followed by momentum 0.75 toward it. Losses: cross-entropy, or the
Difference-of-Logits-Ratio (DLR), which a rescaled or saturated softmax cannot mask;
``targets=k`` is APGD-T: the targeted DLR toward each of the k most likely other classes.

Everything is per image and batched; an image leaves the batch as soon as it is
misclassified (untargeted) or reaches its target, which is what AutoAttack counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from adversarial.attacks import balls, register
from adversarial.base import Attack, AttackError, success


def checkpoints(n_iter: int) -> list[int]:
    """The paper's checkpoints w_j = ⌈p_j·N⌉ inside (0, N], increasing."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    out: list[int] = []
    for pj in p[1:]:
        w = math.ceil(round(pj * n_iter, 9))
        if 0 < w <= n_iter and (not out or w > out[-1]):
            out.append(w)
    return out


def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-image DLR: −(z_y − max_{i≠y} z_i)/(z_π1 − z_π3); targeted: −(z_y − z_t)/(z_π1 −
    (z_π3 + z_π4)/2). Shift- and scale-invariant in the logits."""
    need = 3 if target is None else 4
    if logits.shape[1] < need:
        raise AttackError(
            f"the DLR loss needs at least {need} classes; the model has {logits.shape[1]}: "
            "use loss=ce"
        )
    top = logits.sort(1, descending=True).values
    own = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -torch.inf)
        return -(own - others.amax(1)) / (top[:, 0] - top[:, 2] + 1e-12)
    goal = logits.gather(1, target[:, None]).squeeze(1)
    return -(own - goal) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def ranked_targets(logits: Tensor, k: int) -> list[Tensor]:
    """APGD-T's and FAB-T's targets: the 2nd, 3rd, …, (k+1)-th most likely class per image."""
    order = logits.argsort(1, descending=True)
    return [order[:, j] for j in range(1, min(k, logits.shape[1] - 1) + 1)]


@dataclass
class Trace:
    """The step size and loss of the first image of the last run, per iteration (tests)."""

    eta: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


@register("apgd-ce", loss="ce")
@register("apgd-dlr", loss="dlr")
@dataclass
class APGD(Attack):
    eps: float = 8 / 255
    norm: str = "linf"
    steps: int = 100
    loss: str = "ce"  # or "dlr"
    targets: int = 0  # 0: untargeted; k: APGD-T over the k most likely other classes
    restarts: int = 1
    rho: float = 0.75  # fraction of steps that must raise the loss between checkpoints
    momentum: float = 0.75  # α in the paper: weight of the new step
    seed: int = 0
    random_start: bool = True

    name = "apgd"

    def __post_init__(self) -> None:
        balls.check_norm(self.norm)
        if self.loss not in ("ce", "dlr"):
            raise AttackError(f"loss={self.loss!r}: choose ce or dlr")
        if self.eps < 0 or self.steps < 1 or self.restarts < 1 or self.targets < 0:
            raise AttackError(
                f"eps={self.eps}, steps={self.steps}, restarts={self.restarts}, "
                f"targets={self.targets}: need eps ≥ 0, steps ≥ 1, restarts ≥ 1, targets ≥ 0"
            )
        self.trace = Trace()

    def _losses(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if self.loss == "dlr":
            return dlr_loss(logits, y, target)
        if target is not None:
            return -F.cross_entropy(logits, target, reduction="none")
        return F.cross_entropy(logits, y, reduction="none")

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        x_out = x.clone()
        with torch.no_grad():
            logits = model(x)
        if target is not None:  # the caller's targets: success means reaching them
            done = success(logits.argmax(1), y, target)
            for _ in range(self.restarts):
                self._attack_open(model, x, y, target, done, x_out, gen, reach=True)
            return x_out
        done = success(logits.argmax(1), y, None)
        goals = ranked_targets(logits, self.targets) if self.targets else [None]
        for goal in goals:
            for _ in range(self.restarts):
                self._attack_open(model, x, y, goal, done, x_out, gen, reach=False)
        return x_out

    def _attack_open(self, model, x, y, goal, done, x_out, gen, *, reach: bool) -> None:
        """One run on the images not yet done; writes its points into x_out, wins into done."""
        idx = (~done).nonzero().flatten()
        if len(idx) == 0:
            return
        t = None if goal is None else goal[idx]
        x_adv, won = self.single_run(model, x[idx], y[idx], t, gen, reach=reach)
        x_out[idx] = x_adv  # the won images' adversarials, the others' highest-loss points
        done[idx[won]] = True

    def single_run(self, model, x, y, target, gen, *, reach: bool = False):
        """APGD from one start → (the adversarial or last best point, success mask)."""
        n, eps, norm = len(x), self.eps, self.norm
        view = (-1,) + (1,) * (x.ndim - 1)
        x_adv = balls.random_start(x, eps, norm, gen) if self.random_start else x.clone()
        loss, grad, logits = self._loss_grad(model, x_adv, y, target)
        found = self._success(logits, y, target, reach)
        result = torch.where(found.view(view), x_adv, x)
        s = {  # the state of the images still open, compacted as images succeed
            "pos": torch.arange(n, device=x.device), "x": x, "y": y, "t": target,
            "x_adv": x_adv, "x_prev": x_adv.clone(), "grad": grad, "loss": loss,
            "best_loss": loss.clone(), "x_best": x_adv.clone(), "grad_best": grad.clone(),
            "eta": torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device),
            "rises": torch.zeros(n, device=x.device), "best_at_mark": loss.clone(),
            "halved": torch.zeros(n, dtype=torch.bool, device=x.device),
        }  # fmt: skip
        s = _keep(s, ~found)
        marks, since = set(checkpoints(self.steps)), 0
        traced = n > 0 and not bool(found[0])
        eta0 = float(torch.tensor(2.0 * eps, dtype=x.dtype))  # as stored, for exact traces
        self.trace = Trace([eta0], [float(loss[0])]) if traced else Trace()
        for k in range(self.steps):
            if len(s["pos"]) == 0:
                break
            xo, x_adv = s["x"], s["x_adv"]
            with torch.no_grad():
                a = self.momentum if k > 0 else 1.0
                step = s["eta"].view(view) * balls.direction(s["grad"], norm)
                z = balls.project(xo, x_adv + step, eps, norm)
                moved = x_adv + a * (z - x_adv) + (1 - a) * (x_adv - s["x_prev"])
                s["x_prev"], s["x_adv"] = x_adv, balls.project(xo, moved, eps, norm)
            loss, s["grad"], logits = self._loss_grad(model, s["x_adv"], s["y"], s["t"])
            with torch.no_grad():
                now = self._success(logits, s["y"], s["t"], reach)
                result[s["pos"][now]] = s["x_adv"][now]
                found[s["pos"][now]] = True
                s["rises"] += (loss > s["loss"]).float()
                s["loss"] = loss
                better = loss > s["best_loss"]
                s["best_loss"] = torch.where(better, loss, s["best_loss"])
                s["x_best"][better], s["grad_best"][better] = s["x_adv"][better], s["grad"][better]
                since += 1
                if k + 1 in marks:
                    self._checkpoint(s, since)
                    since = 0
                if traced:
                    traced = bool(s["pos"][0] == 0) and not bool(now[0])
                    if traced:
                        self.trace.eta.append(float(s["eta"][0]))
                        self.trace.loss.append(float(s["best_loss"][0]))
                if now.any():
                    s = _keep(s, ~now)
        result[s["pos"]] = s["x_best"]  # not won: the point of highest loss
        return result, found

    def _checkpoint(self, s: dict, since: int) -> None:
        """Halve η where the loss rose in < ρ of the steps since the last checkpoint, or
        where neither η nor the best loss changed; those images restart from their best."""
        few_rises = s["rises"] < self.rho * since
        stalled = ~s["halved"] & (s["best_loss"] <= s["best_at_mark"])
        halve = few_rises | stalled
        s["eta"] = torch.where(halve, s["eta"] / 2, s["eta"])
        for key in ("x_adv", "x_prev"):  # x_prev too: the momentum starts afresh
            s[key][halve] = s["x_best"][halve]
        s["grad"][halve] = s["grad_best"][halve]
        s["halved"], s["best_at_mark"] = halve, s["best_loss"].clone()
        s["rises"] = torch.zeros_like(s["rises"])

    def _success(self, logits, y, target, reach: bool) -> Tensor:
        return success(logits.argmax(1), y, target if reach else None)

    def _loss_grad(self, model, x_adv, y, target):
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        loss = self._losses(logits, y, target)
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
        return loss.detach(), grad.detach(), logits.detach()


def _keep(state: dict, mask: Tensor) -> dict:
    return {k: (None if v is None else v[mask]) for k, v in state.items()}
