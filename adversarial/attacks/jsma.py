"""Jacobian-based saliency map attack (Papernot et al. 2016), L0, pixel pairs, θ = +1.

At each step, with α_i = ∂Z_t/∂x_i and β_i = Σ_{j≠t} ∂Z_j/∂x_i, pick the pair (p, q) of
pixels still in the search domain maximising (α_p + α_q)·|β_p + β_q| subject to
α_p + α_q > 0 and β_p + β_q < 0, set both to 1 and remove them — until the target is
reached or a fraction γ of the pixels has changed. Untargeted: t is the second most likely
class. Gradients of the logits Z, as in the paper's implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack


@register("jsma")
@dataclass
class JSMA(Attack):
    theta: float = 1.0  # value a chosen pixel is pushed to (1 = saturate)
    gamma: float = 0.1  # largest fraction of pixels changed

    name = "jsma"

    chunk: int = 16  # images per pass: the pair scores take B·d² floats

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if len(x) > self.chunk:
            parts = range(0, len(x), self.chunk)
            return torch.cat(
                [
                    self._run(
                        model,
                        x[i : i + self.chunk],
                        y[i : i + self.chunk],
                        None if target is None else target[i : i + self.chunk],
                    )
                    for i in parts
                ]
            )
        if target is None:
            with torch.no_grad():
                target = model(x).topk(2, dim=1).indices[:, 1]
        n, d = len(x), x[0].numel()
        x_adv = x.clone().flatten(1)
        domain = x_adv < self.theta  # pixels that can still increase
        idx = torch.arange(n, device=x.device)
        for _ in range(int(self.gamma * d / 2)):
            xa = x_adv.view_as(x).clone().requires_grad_(True)
            logits = model(xa)
            active = logits.argmax(1) != target
            if not active.any():
                break
            alpha = torch.autograd.grad(logits[idx, target].sum(), xa, retain_graph=True)[
                0
            ].flatten(1)
            beta = torch.autograd.grad(logits.sum(), xa)[0].flatten(1) - alpha
            a = alpha.unsqueeze(2) + alpha.unsqueeze(1)  # (B, d, d): α_p + α_q
            b = beta.unsqueeze(2) + beta.unsqueeze(1)
            valid = (a > 0) & (b < 0) & domain.unsqueeze(2) & domain.unsqueeze(1)
            valid &= ~torch.eye(d, dtype=torch.bool, device=x.device)
            score = torch.where(valid, a * b.abs(), torch.zeros_like(a)).flatten(1)
            best = score.argmax(1)
            found = score[idx, best] > 0
            p, q = best // d, best % d
            step = active & found
            rows = idx[step]
            x_adv[rows, p[step]] = self.theta
            x_adv[rows, q[step]] = self.theta
            domain[rows, p[step]] = False
            domain[rows, q[step]] = False
            if not step.any():
                break
        return x_adv.view_as(x)
