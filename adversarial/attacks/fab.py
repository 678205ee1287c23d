"""FAB, the Fast Adaptive Boundary attack (Croce & Hein 2020, ICML), targeted (FAB-T).

A minimum-norm attack: at the iterate x_i, the boundary between the true class y and the
target t is linearised, g(z) ≈ g(x_i) + ∇g·(z − x_i) with g = z_y − z_t; both x_i and the
original x are projected onto that hyperplane inside the box [0, 1] (the smallest L∞ or L2
step that reaches it: δ_i, δ_o), and the next iterate is a biased mix,
x_{i+1} = clip((1 − α)(x_i + η δ_i) + α (x + η δ_o)), α = min(‖δ_i‖/(‖δ_i‖ + ‖δ_o‖), α_max),
η = 1.05 overshoots. Once x_{i+1} is misclassified it is kept when it is the smallest so
far and the iterate steps back toward x: x_{i+1} ← (1 − β) x + β x_{i+1}. One backward
pass per step (of z_y − z_t). The returned image is the smallest adversarial found when its
norm is within ε, else x: robust accuracy under ``fab`` is robust accuracy at ε.

The projection onto {d : w·d = c, lo ≤ d ≤ hi} is solved exactly per image. Both norms
reduce to one scalar equation Σ a_i min(τ, v_i) = |c| (L∞: a = |w|, v = the room in the
direction of sign w; L2: a = w², v = room/|w|, d = τ·w clipped), piecewise linear in τ:
sorting v gives the segment and τ in closed form. Written here (no solver does this batched).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from adversarial.attacks import balls, register
from adversarial.attacks.apgd import ranked_targets
from adversarial.base import Attack, AttackError, success


def solve_levels(a: Tensor, v: Tensor, c: Tensor) -> Tensor:
    """Per row, the smallest τ ≥ 0 with Σ_i a_i·min(τ, v_i) = c (a, v ≥ 0); where even
    τ = max v falls short, max v (go as far as the box allows)."""
    v_sorted, order = v.sort(1)
    a_sorted = a.gather(1, order)
    below = torch.cumsum(a_sorted * v_sorted, 1) - a_sorted * v_sorted  # Σ_{j<k} a_j v_j
    above = a_sorted.flip(1).cumsum(1).flip(1)  # Σ_{j≥k} a_j
    reach = below + above * v_sorted  # S(v_k)
    k = (reach < c[:, None]).sum(1).clamp(max=v.shape[1] - 1)  # first segment reaching c
    tau = (c - below.gather(1, k[:, None]).squeeze(1)) / above.gather(1, k[:, None]).squeeze(
        1
    ).clamp_min(1e-30)
    top = v_sorted[:, -1]
    return torch.where(reach[:, -1] < c, top, tau.clamp(min=0)).clamp(max=top)


def project_to_plane(p: Tensor, w: Tensor, b: Tensor, norm: str) -> Tensor:
    """The smallest step d (L∞ or L2) with w·(p + d) + b = 0 and p + d in [0, 1], per row of
    the flattened batch p; the farthest the box allows when the plane is out of reach."""
    c = -(w * p).sum(1) - b
    flip = torch.where(c < 0, -1.0, 1.0).to(w.dtype)[:, None]
    w = w * flip  # now w·d = |c| ≥ 0: move along +w
    room = torch.where(w >= 0, 1 - p, p)  # how far each coordinate may move that way
    if norm == "linf":
        tau = solve_levels(w.abs(), room, c.abs())
        return torch.minimum(tau[:, None], room) * w.sign()
    safe = w.abs().clamp_min(1e-30)
    tau = solve_levels(w * w, room / safe, c.abs())
    return torch.minimum(tau[:, None] * w.abs(), room) * w.sign()


@register("fab")
@dataclass
class FAB(Attack):
    eps: float = 8 / 255
    norm: str = "linf"
    steps: int = 100
    targets: int = 9  # the k most likely other classes, one run each (FAB-T)
    restarts: int = 1  # restarts after the first start at x draw a point in the ball
    alpha_max: float = 0.1
    overshoot: float = 1.05  # η
    beta: float = 0.9
    seed: int = 0
    stop_within_eps: bool = False  # False: keep shrinking the norm (a minimum-norm attack)

    name = "fab"

    def __post_init__(self) -> None:
        balls.check_norm(self.norm)
        if self.eps < 0 or self.steps < 1 or self.restarts < 1 or self.targets < 1:
            raise AttackError(
                f"eps={self.eps}, steps={self.steps}, restarts={self.restarts}, "
                f"targets={self.targets}: need eps ≥ 0, steps ≥ 1, restarts ≥ 1, targets ≥ 1"
            )

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            logits = model(x)
        done = self._fooled(logits, y, target, target is not None)
        x_out = x.clone()
        goals = [target] if target is not None else ranked_targets(logits, self.targets)
        for goal in goals:
            for r in range(self.restarts):
                idx = (~done).nonzero().flatten()
                if len(idx) == 0:
                    return x_out
                adv, dist = self.single_run(
                    model, x[idx], y[idx], goal[idx], gen, start=r > 0, reach=target is not None
                )
                won = dist <= self.eps * (1 + 1e-6)  # a point counts inside the budget only
                x_out[idx[won]] = adv[won]
                done[idx[won]] = True
        return x_out

    def single_run(self, model, x, y, t, gen, *, start: bool = False, reach: bool = False):
        """FAB toward the targets t → (smallest adversarial found, its norm; inf if none).
        Adversarial: misclassified, or (``reach``) classified as t."""
        view = (-1,) + (1,) * (x.ndim - 1)
        x_i = balls.random_start(x, self.eps, self.norm, gen) if start else x.clone()
        flat_x = x.flatten(1)
        best = torch.full((len(x),), torch.inf, dtype=x.dtype, device=x.device)
        out = x.clone()
        for _ in range(self.steps):
            if self.stop_within_eps and bool((best <= self.eps).all()):
                break  # every image has a point inside the budget: enough for AutoAttack
            x_i = x_i.detach().requires_grad_(True)
            logits = model(x_i)
            goal = logits.gather(1, t[:, None]).squeeze(1)
            if reach:  # t's own region: beat the strongest other class, not just y
                rival = logits.masked_fill(F.one_hot(t, logits.shape[1]).bool(), -torch.inf)
                g = rival.amax(1) - goal
            else:
                g = logits.gather(1, y[:, None]).squeeze(1) - goal
            (w,) = torch.autograd.grad(g.sum(), x_i)
            with torch.no_grad():
                fooled = self._fooled(logits, y, t, reach)
                dist = balls.size(x_i - x, self.norm)
                better = fooled & (dist < best)
                out[better], best[better] = x_i[better], dist[better]
                w = w.flatten(1)
                b = g.detach() - (w * x_i.flatten(1)).sum(1)  # the plane w·z + b = 0
                x_i = torch.where(
                    fooled.view(view), (1 - self.beta) * x + self.beta * x_i, x_i
                ).detach()
                x_i = self._step(x_i.flatten(1), flat_x, w, b).view_as(x)
        with torch.no_grad():  # the last iterate gets its check too
            fooled = self._fooled(model(x_i), y, t, reach)
            dist = balls.size(x_i - x, self.norm)
            better = fooled & (dist < best)
            out[better], best[better] = x_i[better], dist[better]
        return out, best

    @staticmethod
    def _fooled(logits: Tensor, y: Tensor, t: Tensor | None, reach: bool) -> Tensor:
        return success(logits.argmax(1), y, t if reach else None)

    def _step(self, p: Tensor, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        """One biased projection step onto the linearised boundary w·z + b = 0 (linearised
        where the forward pass was; p is that point, or it stepped back toward x)."""
        d_p = project_to_plane(p, w, b, self.norm)
        d_x = project_to_plane(x, w, b, self.norm)
        n_p = balls.size(d_p, self.norm)
        n_x = balls.size(d_x, self.norm)
        alpha = (n_p / (n_p + n_x).clamp_min(1e-12)).clamp(max=self.alpha_max)[:, None]
        mixed = (1 - alpha) * (p + self.overshoot * d_p) + alpha * (x + self.overshoot * d_x)
        return mixed.clamp(0, 1)
