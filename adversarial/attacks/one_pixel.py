"""One-pixel attack (Su et al. 2019): differential evolution over a few pixels, scores only.

A candidate is d pixels, each (row, col, value per channel). Fitness is the probability
of the true class (untargeted, minimised) or minus that of the target; scipy's
``differential_evolution`` does the search, evaluating a whole population per oracle
call (``vectorized=True``). Runs through an :class:`~adversarial.oracle.Oracle`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import differential_evolution
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack
from adversarial.oracle import as_oracle


@register("one-pixel")
@dataclass
class OnePixel(Attack):
    pixels: int = 1
    popsize: int = 20  # population per dimension (scipy's convention)
    maxiter: int = 30
    seed: int = 0

    name = "one-pixel"
    needs_gradients = False

    def _apply(self, image: Tensor, params: np.ndarray) -> Tensor:
        """params (P·(2 + C), S) → S candidate images."""
        c, h, w = image.shape
        cands = image.unsqueeze(0).repeat(params.shape[1], 1, 1, 1)
        per = params.T.reshape(params.shape[1], self.pixels, 2 + c)
        s_idx = np.arange(params.shape[1])
        for k in range(self.pixels):
            rows = np.clip(per[:, k, 0].astype(int), 0, h - 1)
            cols = np.clip(per[:, k, 1].astype(int), 0, w - 1)
            vals = torch.as_tensor(per[:, k, 2:], dtype=image.dtype, device=image.device)
            cands[s_idx, :, rows, cols] = vals
        return cands

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        oracle = as_oracle(model, "scores")
        c, h, w = x.shape[1:]
        bounds = [(0, h), (0, w)] + [(0, 1)] * c
        out = x.clone()
        for i in range(len(x)):
            label = int((target if target is not None else y)[i])

            def fitness(params: np.ndarray, i=i, label=label) -> np.ndarray:
                params = np.atleast_2d(params.T).T if params.ndim == 1 else params
                probs = oracle(self._apply(x[i], params))[:, label].cpu().numpy()
                return -probs if target is not None else probs

            def done(xk, convergence=None, i=i, label=label) -> bool:
                pred = oracle.labels(self._apply(x[i], xk.reshape(-1, 1)))[0].item()
                return pred == label if target is not None else pred != label

            res = differential_evolution(
                fitness,
                bounds * self.pixels,
                maxiter=self.maxiter,
                popsize=self.popsize,
                recombination=1.0,
                seed=self.seed + i,
                polish=False,
                vectorized=True,
                updating="deferred",
                callback=done,
            )
            out[i] = self._apply(x[i], res.x.reshape(-1, 1))[0]
        return out
