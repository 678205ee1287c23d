"""The seeds' published figures, one command each: ``python -m experiments run NAME``.

An experiment is a function ``run(ctx) -> Outcome`` registered under a name with a summary
and its expected wall time per mode. It may use every other package (like ``bench``);
nothing else imports it. Every run writes ``metrics.json``, ``report.md`` and its PNGs into
``ctx.out`` (see :mod:`experiments.core`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from nets.errors import UserError

_MODULES = (  # in the order of the issue and of `python -m experiments list`
    "table_3_1",
    "plasticity",
    "free_at",
    "smoothing",
    "neural_cleanse",
    "generator",
    "distillation",
    "encrypted_blackbox",
    "dimpled_manifold",
)


@dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    run: Callable  # (Context) -> Outcome
    minutes: dict[str, float]  # expected wall time on 2 CPU cores per mode (quick, full)
    data: str  # the default data set
    options: dict  # --arg KEY=VALUE overrides this experiment accepts, with their defaults
    # options that only choose how many units run (not what a unit computes): a --resume
    # may change them and keep the finished units
    resume_neutral: tuple[str, ...] = ()


_REGISTRY: dict[str, Experiment] = {}


def register(
    name: str,
    *,
    summary: str,
    quick_min: float,
    full_min: float,
    data: str,
    options: dict | None = None,
    resume_neutral: tuple[str, ...] = (),
):
    def wrap(fn: Callable) -> Callable:
        _REGISTRY[name] = Experiment(
            name, summary, fn, {"quick": quick_min, "full": full_min}, data, options or {},
            resume_neutral,
        )  # fmt: skip
        return fn

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"experiments.{module}")


def names() -> list[str]:
    _load_all()
    return list(_REGISTRY)


def get(name: str) -> Experiment:
    _load_all()
    if name not in _REGISTRY:
        raise UserError(
            f"unknown experiment {name!r}; choose one of {', '.join(_REGISTRY)} "
            "(python -m experiments list)"
        )
    return _REGISTRY[name]
