"""Square attack, L∞ (Andriushchenko et al. 2020): random search with square updates.

Score-based, no gradients: start from vertical stripes of ±ε, then repeatedly redraw one
random square window (side shrinking on the paper's schedule of p) to ±ε per channel,
keeping the change only if the margin loss Z_y − max_{k≠y} Z_k (on log-probabilities)
falls. Each iteration costs one query per still-unbroken image. Through an Oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack
from adversarial.oracle import as_oracle


def _p_schedule(p_init: float, it: int, n_iters: int) -> float:
    """The paper's piecewise-constant schedule for the fraction of pixels per square."""
    frac = int(it / n_iters * 10000)
    for bound, div in (
        (10, 1),
        (50, 2),
        (200, 4),
        (500, 8),
        (1000, 16),
        (2000, 32),
        (4000, 64),
        (6000, 128),
        (8000, 256),
    ):
        if frac <= bound:
            return p_init / div
    return p_init / 512


def _rand_sign(gen: torch.Generator, like: Tensor, *shape: int) -> Tensor:
    """±1 of ``shape`` from the CPU generator (the same draws on any device), as ``like``."""
    return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(like.device, like.dtype)


@register("square")
@dataclass
class Square(Attack):
    eps: float = 8 / 255
    queries: int = 1000  # iterations (queries per image)
    p_init: float = 0.1
    seed: int = 0

    name = "square"
    needs_gradients = False

    def _loss(self, probs: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        logp = probs.clamp_min(1e-12).log()
        label = target if target is not None else y
        onehot = torch.nn.functional.one_hot(label, probs.shape[1]).bool()
        other = logp.masked_fill(onehot, float("-inf")).amax(1)
        margin = logp[onehot] - other
        return -margin if target is not None else margin  # < 0: success

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        oracle = as_oracle(model, "scores")
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        b, c, h, w = x.shape

        def rand_sign(*shape):
            return _rand_sign(gen, x, *shape)

        x_adv = (x + self.eps * rand_sign(b, c, 1, w)).clamp(0, 1)
        loss = self._loss(oracle(x_adv), y, target)
        for it in range(self.queries - 1):
            todo = (loss > 0).nonzero().flatten()
            if len(todo) == 0:
                break
            side = max(
                1,
                min(h - 1, int(round((_p_schedule(self.p_init, it, self.queries) * h * w) ** 0.5))),
            )
            r = int(torch.randint(0, h - side + 1, (1,), generator=gen))
            s = int(torch.randint(0, w - side + 1, (1,), generator=gen))
            cand = x_adv[todo].clone()
            window = x[todo, :, r : r + side, s : s + side] + self.eps * rand_sign(
                len(todo), c, 1, 1
            )
            cand[:, :, r : r + side, s : s + side] = window
            cand = torch.minimum(torch.maximum(cand, x[todo] - self.eps), x[todo] + self.eps).clamp(
                0, 1
            )
            new = self._loss(oracle(cand), y[todo], None if target is None else target[todo])
            better = new < loss[todo]
            x_adv[todo[better]] = cand[better]
            loss[todo[better]] = new[better]
        return x_adv


@register("square-l2")
@dataclass
class SquareL2(Square):
    """Square attack, L2: the same random search, with the L2 update simplified from the
    paper's (Sec. 3.2): each iteration draws two windows of the current side, empties the
    second, and puts the freed L2 mass — plus whatever budget is unused — into the first as
    a centred pyramid of random sign per channel, so ‖δ‖₂ stays ε. (The paper moves mass
    between the two windows with a two-sided pattern; the acceptance rule is the same.)"""

    eps: float = 1.0
    p_init: float = 0.3
    name = "square-l2"

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        oracle = as_oracle(model, "scores")
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        b, c, h, w = x.shape

        def rand_sign(*shape):
            return _rand_sign(gen, x, *shape)

        def rescale(d: Tensor) -> Tensor:
            norm = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            return d * (self.eps / norm)

        delta = rescale(rand_sign(b, c, 1, w).expand(b, c, h, w).clone())
        x_adv = (x + delta).clamp(0, 1)
        loss = self._loss(oracle(x_adv), y, target)
        for it in range(self.queries - 1):
            todo = (loss > 0).nonzero().flatten()
            if len(todo) == 0:
                break
            frac = _p_schedule(self.p_init, it, self.queries)
            side = max(2, min(h // 2, int(round((frac * h * w) ** 0.5))))
            r1, s1, r2, s2 = (int(v) for v in torch.randint(0, h - side + 1, (4,), generator=gen))
            s1, s2 = min(s1, w - side), min(s2, w - side)
            d = x_adv[todo] - x[todo]
            win1 = (slice(None), slice(None), slice(r1, r1 + side), slice(s1, s1 + side))
            win2 = (slice(None), slice(None), slice(r2, r2 + side), slice(s2, s2 + side))
            d[win2] = 0
            d[win1] = 0
            spare = (self.eps**2 - d.flatten(1).pow(2).sum(1)).clamp_min(0).sqrt()
            bump = _pyramid(side, x.device, x.dtype) * rand_sign(len(todo), c, 1, 1)
            bump = bump / bump.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            d[win1] = bump * spare.view(-1, 1, 1, 1)
            cand = (x[todo] + d).clamp(0, 1)
            new = self._loss(oracle(cand), y[todo], None if target is None else target[todo])
            better = new < loss[todo]
            x_adv[todo[better]] = cand[better]
            loss[todo[better]] = new[better]
        return x_adv


def _pyramid(side: int, device, dtype) -> Tensor:
    """The paper's centred pattern: concentric rings whose value grows toward the centre."""
    i = torch.arange(side, device=device, dtype=dtype)
    ring = torch.minimum(torch.minimum(i, side - 1 - i)[:, None], torch.minimum(i, side - 1 - i))
    return (ring + 1) / (ring + 1).square().sum().sqrt()
