"""Box-constrained L-BFGS (Szegedy et al. 2014): the first adversarial examples.

minimise c·‖δ‖² + CE(f(x + δ), t) subject to x + δ ∈ [0, 1] with scipy's L-BFGS-B, and
search over c for the largest c (the smallest perturbation) that still reaches t. The
objective is separable over images, so one L-BFGS-B run handles the whole batch, each
image with its own c. Untargeted: t is each image's second most likely class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack


@register("lbfgs")
@dataclass
class LBFGS(Attack):
    c: float = 0.1  # initial weight of ‖δ‖²
    search_steps: int = 6
    max_iter: int = 50  # L-BFGS-B iterations per c

    name = "lbfgs"

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is None:
            with torch.no_grad():
                target = model(x).topk(2, dim=1).indices[:, 1]
        n, shape = len(x), x.shape
        x0 = x.detach().cpu().double().numpy().reshape(-1)
        c = np.full(n, self.c)
        lo, hi = np.zeros(n), np.full(n, np.inf)
        best, best_l2 = x.clone(), np.full(n, np.inf)

        def objective(flat: np.ndarray, c_now: np.ndarray):
            xa = torch.tensor(
                flat.reshape(shape), dtype=x.dtype, device=x.device, requires_grad=True
            )
            ce = F.cross_entropy(model(xa), target, reduction="none")
            dist = (xa - x).flatten(1).pow(2).sum(1)
            loss = (torch.as_tensor(c_now, dtype=x.dtype, device=x.device) * dist + ce).sum()
            (grad,) = torch.autograd.grad(loss, xa)
            return loss.item(), grad.detach().cpu().double().numpy().reshape(-1)

        for _ in range(self.search_steps):
            res = minimize(
                objective,
                x0,
                args=(c,),
                jac=True,
                method="L-BFGS-B",
                bounds=[(0.0, 1.0)] * x0.size,
                options={"maxiter": self.max_iter},
            )
            xa = torch.tensor(res.x.reshape(shape), dtype=x.dtype, device=x.device)
            with torch.no_grad():
                ok = (model(xa).argmax(1) == target).cpu().numpy()
            l2 = (xa - x).flatten(1).norm(dim=1).cpu().numpy()
            better = ok & (l2 < best_l2)
            best[torch.from_numpy(better).to(x.device)] = xa[torch.from_numpy(better).to(x.device)]
            best_l2[better] = l2[better]
            # success: more weight on the distortion (larger c); failure: less
            lo = np.where(ok, np.maximum(lo, c), lo)
            hi = np.where(ok, hi, np.minimum(hi, c))
            c = np.where(np.isinf(hi), c * 10, (lo + hi) / 2)
        return best
