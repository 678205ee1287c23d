"""The attacks, found by name (``REGISTRY``): one family per module."""

from __future__ import annotations

from collections.abc import Callable

from adversarial.base import Attack

REGISTRY: dict[str, Callable[..., Attack]] = {}


def register(name: str):
    def wrap(factory):
        REGISTRY[name] = factory
        return factory

    return wrap


def build(name: str, **options) -> Attack:
    _load()
    if name not in REGISTRY:
        raise KeyError(name)
    return REGISTRY[name](**options)


def names() -> list[str]:
    _load()
    return sorted(REGISTRY)


def _load() -> None:
    from adversarial.attacks import (  # noqa: F401  (registration side effects)
        apgd,
        autoattack,
        boundary,
        cw,
        deepfool,
        fab,
        generator,
        jsma,
        lbfgs,
        one_pixel,
        pgd,
        square,
    )
