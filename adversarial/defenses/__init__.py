"""The defenses, found by name (``REGISTRY``): one defense per module.

Two kinds. *Training* defenses (:class:`TrainingDefense`) change what happens to a batch
in ``nets.train``'s one loop — each is a ``TrainStep`` — and return the trained model.
*Inference* defenses (:class:`InferenceDefense`) wrap any model in an ``nn.Module``, so an
attack sees one model: defended prediction, and the gradient an adapted attacker uses.
"""

from __future__ import annotations

from collections.abc import Callable

from adversarial.defenses.base import Defense, DefenseError, InferenceDefense, TrainingDefense

REGISTRY: dict[str, Callable[..., Defense]] = {}

__all__ = ["REGISTRY", "Defense", "DefenseError", "InferenceDefense", "TrainingDefense", "build"]


def register(name: str):
    def wrap(factory):
        REGISTRY[name] = factory
        return factory

    return wrap


def build(name: str, **options) -> Defense:
    _load()
    if name not in REGISTRY:
        raise DefenseError(f"unknown defense {name!r}; choose one of {', '.join(names())}")
    try:
        return REGISTRY[name](**options)
    except TypeError as exc:
        raise DefenseError(f"defense {name}: {exc}") from None


def names() -> list[str]:
    _load()
    return sorted(REGISTRY)


def _load() -> None:
    from adversarial.defenses import (  # noqa: F401  (registration side effects)
        distillation,
        fast,
        free,
        generator_at,
        input_gradient,
        jpeg,
        pgd_at,
        smoothing,
        squeezing,
        trades,
    )
