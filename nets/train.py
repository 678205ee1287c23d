"""The one training loop. Training methods differ only in what happens to a batch.

Adversarial, free, fast and distillation training are :class:`TrainStep` subclasses:
most override :meth:`TrainStep.loss` (say, attack the batch first, then cross-entropy);
one that needs several optimizer steps per batch (free training's replays) overrides
:meth:`TrainStep.__call__`. The loop itself — seeding, shuffling, schedule, metrics,
progress — is written once, here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from nets.data import Dataset
from nets.errors import UserError
from nets.runinfo import seed_everything


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run."""

    epochs: int = 3  # passes over the training set
    batch_size: int = 64  # samples per optimizer step
    lr: float = 2e-3  # peak learning rate
    optimizer: Literal["adam", "sgd"] = "adam"  # sgd uses momentum 0.9, nesterov
    weight_decay: float = 0.0  # L2 penalty (decoupled for adam: AdamW)
    schedule: Literal["constant", "cosine", "step", "cyclic"] = "cosine"  # per-step lr
    seed: int = 0  # seeds weights, shuffling and any randomness in the step
    eval_batch_size: int = 1000  # samples per forward pass when evaluating

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"epochs must be ≥ 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be ≥ 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"learning rate must be > 0, got {self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            raise UserError(f"unknown optimizer {self.optimizer!r}; use adam or sgd")
        if self.schedule not in ("constant", "cosine", "step", "cyclic"):
            raise UserError(
                f"unknown schedule {self.schedule!r}; use constant, cosine, step or cyclic"
            )


@dataclass
class StepOutput:
    loss: float  # mean loss of the batch
    logits: torch.Tensor  # (N, classes), detached; used for the running train accuracy


class TrainStep:
    """Standard training: cross-entropy on the clean batch, one optimizer step."""

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss to minimise, logits) for one batch. Override to change the objective."""
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """Called after every epoch (model in train mode); extra metrics for the history.
        Fast adversarial training checks for catastrophic overfitting here."""
        return {}

    def finish(self, model: nn.Module) -> None:
        """Called once after the last epoch (e.g. to restore the best weights seen)."""

    def __call__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
    ) -> StepOutput:
        optimizer.zero_grad(set_to_none=True)
        loss, logits = self.loss(model, x, y)
        loss.backward()
        optimizer.step()
        return StepOutput(float(loss.detach()), logits.detach())


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    test_accuracy: float | None = None
    train_seconds: float = 0.0


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
    )


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    if cfg.schedule == "cyclic":  # Wong et al. 2020: 0 → lr over the first 2/5, → 0 after
        peak = max(1, (2 * total_steps) // 5)
        rest = max(1, total_steps - peak)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: t / peak if t < peak else max(0.0, (total_steps - t) / rest)
        )
    if cfg.schedule == "step":  # ÷10 at 50 % and 75 % of training
        marks = [total_steps // 2, (3 * total_steps) // 4]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=marks, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


@torch.no_grad()
def predict(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Predicted class per image (int64, shape N); the model's train/eval mode is restored."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    x_all = torch.as_tensor(images)
    was_training = model.training
    model.eval()
    out = [
        model(x_all[i : i + batch_size].to(device)).argmax(1).cpu()
        for i in range(0, len(x_all), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def evaluate(
    model: nn.Module,
    data: Dataset,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
) -> float:
    """Accuracy of ``model`` on ``data`` (fraction in [0, 1])."""
    if len(data) == 0:
        raise UserError(f"{data.name} {data.split} is empty; nothing to evaluate")
    pred = predict(model, data.images, batch_size=batch_size, device=device)
    return float((pred == data.labels).mean())


def train(
    model: nn.Module,
    train_data: Dataset,
    cfg: TrainConfig,
    *,
    test_data: Dataset | None = None,
    step: TrainStep | None = None,
    device: torch.device | str = "cpu",
    console: Console | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train_data``; evaluate on ``test_data`` after each epoch."""
    console = console or Console(stderr=True)
    step = step or TrainStep()
    device = torch.device(device)
    seed_everything(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    x_all = torch.from_numpy(train_data.images)
    y_all = torch.from_numpy(train_data.labels)
    steps_per_epoch = -(-len(train_data) // cfg.batch_size)
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    result = TrainResult()
    t_start = time.perf_counter()
    columns = (
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        for epoch in range(1, cfg.epochs + 1):
            task = progress.add_task(
                "train", total=steps_per_epoch, epoch=epoch, epochs=cfg.epochs, loss=float("nan")
            )
            t0 = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for idx in batches(len(train_data), cfg.batch_size, shuffle):
                x, y = x_all[idx].to(device), y_all[idx].to(device)
                out = step(model, opt, x, y)
                sched.step()
                if not np.isfinite(out.loss):
                    raise UserError(
                        f"training diverged at epoch {epoch} (loss {out.loss}); lower --lr "
                        f"(now {cfg.lr}) or use a bounded activation"
                    )
                loss_sum += out.loss * len(y)
                correct += int((out.logits.argmax(1) == y).sum())
                seen += len(y)
                progress.update(task, advance=1, loss=loss_sum / seen)
            progress.remove_task(task)
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / seen,
                "train_accuracy": correct / seen,
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
            row.update(step.end_epoch(model, epoch))
            model.train()
            if test_data is not None:
                row["test_accuracy"] = evaluate(
                    model, test_data, batch_size=cfg.eval_batch_size, device=device
                )
                result.test_accuracy = row["test_accuracy"]
            result.history.append(row)
            test = f"  test acc {row['test_accuracy']:.4f}" if "test_accuracy" in row else ""
            console.print(
                f"epoch {epoch}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                f"train acc {row['train_accuracy']:.4f}{test}  {row['seconds']:.1f} s"
            )
    step.finish(model)
    result.train_seconds = time.perf_counter() - t_start
    model.eval()
    return result
