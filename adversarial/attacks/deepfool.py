"""DeepFool (Moosavi-Dezfooli et al. 2016), multi-class, L2.

Each step linearises the classifier around the current point and moves to the nearest
linearised decision boundary: for every class k ≠ y, w_k = ∇(f_k − f_y), f'_k = f_k − f_y,
l = argmin |f'_k| / ‖w_k‖, r = (|f'_l| + 10⁻⁴) / ‖w_l‖² · w_l. The accumulated r is scaled
by (1 + overshoot). Untargeted only. Batched: one backward pass per class per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack, AttackError


@register("deepfool")
@dataclass
class DeepFool(Attack):
    steps: int = 50
    overshoot: float = 0.02

    name = "deepfool"

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is not None:
            raise AttackError("DeepFool is untargeted; drop the target")
        r_total = torch.zeros_like(x)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            x_adv = (x + (1 + self.overshoot) * r_total).clamp(0, 1).requires_grad_(True)
            logits = model(x_adv)
            active &= logits.argmax(1) == y
            if not active.any():
                break
            k = logits.shape[1]
            grads = torch.stack(
                [
                    torch.autograd.grad(logits[:, c].sum(), x_adv, retain_graph=c < k - 1)[0]
                    for c in range(k)
                ],
                1,
            )  # (B, K, C, H, W)
            idx = torch.arange(len(x), device=x.device)
            w = grads - grads[idx, y].unsqueeze(1)
            f = (logits - logits[idx, y].unsqueeze(1)).detach()
            dist = f.abs() / w.flatten(2).norm(dim=2).clamp_min(1e-12)
            dist[idx, y] = float("inf")
            best = dist.argmin(1)
            w_l = w[idx, best]
            r = (
                (f[idx, best].abs() + 1e-4).view(-1, 1, 1, 1)
                * w_l
                / (w_l.flatten(1).norm(dim=1).clamp_min(1e-12) ** 2).view(-1, 1, 1, 1)
            )
            r_total = r_total + r * active.view(-1, 1, 1, 1)
        return (x + (1 + self.overshoot) * r_total).clamp(0, 1)
