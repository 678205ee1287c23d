"""Pieces several experiments use: data at the run's size, a trained model, a PGD verdict."""

from __future__ import annotations

import time

import torch
from rich.console import Console

from adversarial.attacks.pgd import LinfPGD
from adversarial.defense_cli import select_classes
from adversarial.metrics import summary
from experiments.core import Context
from nets import data, models
from nets.data import Dataset
from nets.runinfo import seed_everything
from nets.train import TrainConfig, train


def datasets(
    ctx: Context, n_train: int | None, n_test: int | None, classes=None, name: str | None = None
):
    """(train, test) of ``name`` (default ``ctx.data``), first N images, optionally only
    some classes (relabelled 0..k-1)."""
    name = name or ctx.data
    train_set = data.load(name, "train", data_dir=ctx.data_dir)
    test_set = data.load(name, "test", data_dir=ctx.data_dir)
    if classes is not None:
        spec = ",".join(map(str, classes))
        train_set, test_set = select_classes(train_set, spec), select_classes(test_set, spec)
    return train_set.subset(n_train), test_set.subset(n_test)


def is_digits(data_name: str) -> bool:
    """MNIST-like data (handwritten digits): the literature's budgets differ from Fashion's."""
    return data_name.startswith("mnist") or data_name == "digits"


def linf_budget(data_name: str) -> float:
    """The usual L∞ ε: 0.3 on MNIST-like digits (Madry et al.), 0.1 on Fashion-MNIST."""
    return 0.3 if is_digits(data_name) else 0.1


def tensors(ds: Dataset, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(ds.images).to(device),
        torch.from_numpy(ds.labels).long().to(device),
    )


def quiet() -> Console:
    return Console(quiet=True)


def fit(
    ctx: Context,
    model_name: str,
    train_set: Dataset,
    cfg: TrainConfig,
    defense=None,
    test_set: Dataset | None = None,
    **model_options,
):
    """A freshly seeded model trained (optionally by a training defense); (net, seconds)."""
    seed_everything(cfg.seed)
    net = models.build(model_name, train_set.shape, len(train_set.classes), **model_options)
    net = net.to(ctx.device)
    t0 = time.perf_counter()
    if defense is None:
        train(net, train_set, cfg, test_data=test_set, device=ctx.device, console=quiet())
    else:
        defense.fit(net, train_set, cfg, test_data=test_set, device=ctx.device, console=quiet())
    return net.eval(), time.perf_counter() - t0


def pgd_report(net, x, y, *, eps: float, steps: int, restarts: int = 1, batch: int = 500):
    """Clean accuracy, robust accuracy and untargeted success rate under L∞ PGD."""
    attack = LinfPGD(eps=eps, step=max(eps / 4, 2.5 * eps / steps), steps=steps, restarts=restarts)
    x_adv = torch.cat(
        [attack(net, x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]
    )
    return summary(net, x, y, x_adv)


def autoattack_report(ctx: Context, net, x, y, *, eps: float) -> dict:
    """Robust accuracy under standard AutoAttack (the field's headline figure) on the first
    images of the test batch: 1,000 in full mode (AutoAttack on 10,000 is hours on two
    cores), 500 quick (Square 1,000 queries), a smoke-test size in tiny mode."""
    from adversarial.attacks.autoattack import AutoAttack

    n = ctx.pick(tiny=32, quick=500, full=1000)
    aa = AutoAttack(
        eps=eps,
        seed=ctx.seed,
        steps=ctx.pick(tiny=10, quick=100, full=100),
        targets=ctx.pick(tiny=3, quick=9, full=9),
        square_queries=ctx.pick(tiny=50, quick=1000, full=5000),
    )
    t0 = time.perf_counter()
    _, report = aa.evaluate(net, x[:n], y[:n])
    return {
        **report.as_dict(),
        "settings": f"steps {aa.steps}, {aa.targets} targets, Square {aa.square_queries} queries",
        "wall_seconds": time.perf_counter() - t0,
    }


_WARM: set[tuple[str, str]] = set()


def warm_up(ctx: Context, model_name: str, train_set: Dataset) -> None:
    """One short untimed training run per process and model, so the first timed method
    does not pay for thread-pool start-up and kernel selection."""
    key = (model_name, str(ctx.device))
    if key in _WARM:
        return
    net = models.build(model_name, train_set.shape, len(train_set.classes)).to(ctx.device)
    train(net, train_set.subset(256), TrainConfig(epochs=1), device=ctx.device, console=quiet())
    _WARM.add(key)
