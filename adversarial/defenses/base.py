"""What every defense shares: keyword-only options checked up front, the two kinds."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from torch import nn

from nets.data import Dataset
from nets.errors import UserError
from nets.train import TrainConfig, TrainResult, TrainStep, train


class DefenseError(UserError):
    """Bad options for a defense: names the value and the fix."""


@dataclass(kw_only=True)
class Defense:
    name = "defense"
    kind = "train"  # or "inference"


@dataclass(kw_only=True)
class TrainingDefense(Defense):
    """A training method: :meth:`step` is the ``TrainStep``; :meth:`fit` runs the loop."""

    kind = "train"

    def step(self) -> TrainStep:
        raise NotImplementedError

    def config(self, cfg: TrainConfig) -> TrainConfig:
        """The loop's configuration for this defense (free training divides the epochs)."""
        return cfg

    def fit(
        self,
        model: nn.Module,
        train_data: Dataset,
        cfg: TrainConfig,
        *,
        test_data: Dataset | None = None,
        device="cpu",
        console: Console | None = None,
    ) -> tuple[nn.Module, TrainResult]:
        result = train(
            model,
            train_data,
            self.config(cfg),
            test_data=test_data,
            step=self.step(),
            device=device,
            console=console,
        )
        return model, result


@dataclass(kw_only=True)
class InferenceDefense(Defense):
    """Wraps a trained model: ``wrap(model)`` → an ``nn.Module`` with the same interface."""

    kind = "inference"

    def wrap(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DefenseError(message)


def ramped(eps: float, ramp_epochs: int, epochs_done: int) -> float:
    """ε during the next epoch: linear warm-up to ``eps`` over ``ramp_epochs`` epochs. From
    scratch at a large ε (MNIST 0.3) adversarial training otherwise stalls at low accuracy."""
    if not ramp_epochs:
        return eps
    return eps * min(1.0, (epochs_done + 1) / ramp_epochs)
