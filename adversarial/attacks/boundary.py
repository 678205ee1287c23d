"""Boundary attack (Brendel et al. 2018): decision-based, labels only.

Start from an adversarial point (uniform noise that is misclassified — or classified as
the target — then a binary search toward x along the blend), and walk along the decision
boundary: an orthogonal step of relative size δ on the sphere around x, then a step of
relative size ε toward x; keep the candidate if it is still adversarial. δ and ε adapt to
the recent acceptance rate (×1.5 above 50 %, ÷1.5 below). Through an Oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack, success
from adversarial.oracle import as_oracle


@register("boundary")
@dataclass
class Boundary(Attack):
    steps: int = 500  # one query per unfinished image each
    spherical_step: float = 0.01  # δ
    source_step: float = 0.01  # ε
    init_tries: int = 100
    seed: int = 0

    name = "boundary"
    needs_gradients = False

    def _is_adv(self, oracle, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return success(oracle.labels(x), y, target)

    def _start(self, oracle, x, y, target, gen) -> tuple[Tensor, Tensor]:
        start = x.clone()
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.init_tries):
            todo = (~found).nonzero().flatten()
            if len(todo) == 0:
                break
            noise = torch.rand(x[todo].shape, generator=gen).to(x.device, x.dtype)
            ok = self._is_adv(oracle, noise, y[todo], None if target is None else target[todo])
            start[todo[ok]] = noise[ok]
            found[todo[ok]] = True
        lo = torch.zeros(len(x), device=x.device)  # blend weight of x: 0 = noise, 1 = x
        hi = torch.ones(len(x), device=x.device)
        for _ in range(10):  # binary search toward x, staying adversarial
            mid = (lo + hi) / 2
            cand = mid.view(-1, 1, 1, 1) * x + (1 - mid.view(-1, 1, 1, 1)) * start
            ok = self._is_adv(oracle, cand, y, target) & found
            lo = torch.where(ok, mid, lo)
            hi = torch.where(ok, hi, mid)
        blend = lo.view(-1, 1, 1, 1)
        return blend * x + (1 - blend) * start, found

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        oracle = as_oracle(model, "labels")
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        x_adv, found = self._start(oracle, x, y, target, gen)
        n = len(x)
        delta = torch.full((n,), self.spherical_step, device=x.device)
        eps = torch.full((n,), self.source_step, device=x.device)
        accepted = torch.zeros(n, device=x.device)
        for step in range(self.steps):
            idx = found.nonzero().flatten()
            if len(idx) == 0:
                break
            diff = x[idx] - x_adv[idx]
            dist = diff.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            eta = torch.randn(diff.shape, generator=gen).to(x.device, x.dtype)
            eta = (
                eta
                / eta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                * delta[idx].view(-1, 1, 1, 1)
                * dist
            )
            cand = x_adv[idx] + eta
            to_x = x[idx] - cand  # back onto the sphere of radius dist around x …
            cand = (
                x[idx]
                - to_x / to_x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * dist
            )
            cand = (cand + eps[idx].view(-1, 1, 1, 1) * (x[idx] - cand)).clamp(
                0, 1
            )  # … then toward x
            ok = self._is_adv(oracle, cand, y[idx], None if target is None else target[idx])
            x_adv[idx[ok]] = cand[ok]
            accepted[idx] += ok.float()
            if (step + 1) % 10 == 0:  # adapt to the acceptance rate of the last 10 steps
                rate = accepted / 10
                up = rate > 0.5
                delta = torch.where(up, delta * 1.5, delta / 1.5).clamp(1e-4, 1.0)
                eps = torch.where(up, eps * 1.5, eps / 1.5).clamp(1e-5, 0.5)
                accepted.zero_()
        x_adv[~found] = x[~found]  # no adversarial start found: report failure, not noise
        return x_adv
