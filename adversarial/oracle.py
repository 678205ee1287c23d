"""A query-counting black box: labels (decision-based) or scores, never gradients.

Black-box attacks (boundary, one-pixel, Square) only ever see this. It evaluates under
``torch.no_grad``, returns detached tensors, refuses inputs that require a gradient, and
counts queries (one per image) against an optional budget — so the same attack can run
against the encrypted service, where a query is an HTTP round trip.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class GradientRequested(RuntimeError):
    """A black-box attack tried to differentiate through the oracle."""


class BudgetExhausted(RuntimeError):
    """More queries than the oracle's budget allows."""


class Oracle:
    def __init__(
        self,
        model: nn.Module | Callable[[Tensor], Tensor],
        *,
        mode: str = "scores",
        budget: int | None = None,
    ) -> None:
        if mode not in ("labels", "scores"):
            raise ValueError(f"mode {mode!r}: choose labels or scores")
        self.model, self.mode, self.budget = model, mode, budget
        self.queries = 0

    def __call__(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → labels (B,) or class probabilities (B, K)."""
        if x.requires_grad:
            raise GradientRequested(
                "the oracle answers labels or scores only; detach the input (black-box attacks "
                "must not use gradients)"
            )
        if self.budget is not None and self.queries + len(x) > self.budget:
            raise BudgetExhausted(
                f"{self.queries} + {len(x)} queries exceed the budget {self.budget}"
            )
        self.queries += len(x)
        was = getattr(self.model, "training", False)
        if isinstance(self.model, nn.Module):
            self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(x)
        finally:
            if isinstance(self.model, nn.Module):
                self.model.train(was)
        return logits.argmax(1) if self.mode == "labels" else logits.softmax(1)

    def labels(self, x: Tensor) -> Tensor:
        out = self(x)
        return out if self.mode == "labels" else out.argmax(1)

    # an oracle is not a model: no parameters to differentiate, no train/eval to flip
    def eval(self) -> Oracle:
        return self

    def train(self, mode: bool = True) -> Oracle:
        return self


def as_oracle(model, mode: str) -> Oracle:
    return model if isinstance(model, Oracle) else Oracle(model, mode=mode)
