"""Carlini–Wagner L2 (Carlini & Wagner 2017).

Optimise w in tanh space, x' = (tanh w + 1) / 2 (the box constraint for free), minimising
‖x' − x‖² + c·f(x'), f = max(Z_y − max_{i≠y} Z_i, −κ) (untargeted) or
max(max_{i≠t} Z_i − Z_t, −κ) (targeted), with Adam. A binary search over c per image
keeps the smallest-L2 success; each inner run aborts early when the loss stops falling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack, success


@register("cw")
@dataclass
class CarliniWagnerL2(Attack):
    c: float = 1.0  # initial trade-off constant
    kappa: float = 0.0  # confidence margin
    steps: int = 100  # Adam steps per binary-search step
    search_steps: int = 5
    lr: float = 0.05  # the paper's 0.01 needs thousands of steps on images saturated at 0/1
    abort_early: bool = True

    name = "cw"

    def _margin(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        label = target if target is not None else y
        onehot = torch.nn.functional.one_hot(label, logits.shape[1]).bool()
        real = logits[onehot]
        other = logits.masked_fill(onehot, float("-inf")).amax(1)
        diff = (other - real) if target is not None else (real - other)
        return diff.clamp_min(-self.kappa)

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        n = len(x)
        lo = torch.zeros(n, device=x.device)
        hi = torch.full((n,), 1e10, device=x.device)
        c = torch.full((n,), self.c, device=x.device)
        best_l2 = torch.full((n,), float("inf"), device=x.device)
        best = x.clone()
        w0 = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        for _ in range(self.search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            prev = float("inf")
            for step in range(self.steps):
                x_adv = (torch.tanh(w) + 1) / 2
                logits = model(x_adv)
                l2 = (x_adv - x).flatten(1).pow(2).sum(1)
                margin = self._margin(logits, y, target)
                loss = (l2 + c * margin).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    ok = success(logits.argmax(1), y, target)
                    ok &= margin <= -self.kappa + 1e-12 if self.kappa else ok
                    better = ok & (l2.sqrt() < best_l2)
                    best_l2[better] = l2.sqrt()[better]
                    best[better] = x_adv.detach()[better]
                    succeeded |= ok
                if self.abort_early and step % max(1, self.steps // 10) == 0:
                    if loss.item() > prev * 0.9999:
                        break
                    prev = loss.item()
            # success: a smaller c may still work; failure: raise c
            hi = torch.where(succeeded, torch.minimum(hi, c), hi)
            lo = torch.where(succeeded, lo, torch.maximum(lo, c))
            c = torch.where(hi < 1e9, (lo + hi) / 2, c * 10)
        return best
