"""``IntClassifier``: an IntModel behind torch's module interface, so code written for
torch classifiers (``Smoothed.certify``, accuracy loops) runs the exact integer network —
the clear reference for what a BFV plan computes. Forward only: integers have no gradient."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from integer_nn.model import IntModel

EXACT_FLOAT = 1 << 53  # integers up to this are exact in float64


class IntClassifier(nn.Module):
    def __init__(self, int_model: IntModel) -> None:
        super().__init__()
        self.int_model = int_model

    def forward(self, x: Tensor) -> Tensor:
        """Float images → the integer logits as float64 (exact: refused past 2^53)."""
        m = self.int_model
        logits = m.forward(m.quantize_input(x.detach().cpu().numpy()))
        if logits.size and int(np.abs(logits).max()) > EXACT_FLOAT:
            raise ValueError("integer logits past 2^53: float64 would round them")
        return torch.from_numpy(np.asarray(logits, dtype=np.float64)).to(x.device)
