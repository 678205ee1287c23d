"""The attacks, found by name (``REGISTRY``): one family per module.

An attack is a dataclass; its options are its fields. ``register`` files a class under a
name, with ``preset`` field values where one class serves several published attacks
(``apgd-ce`` and ``apgd-dlr`` are one :class:`APGD` with a different loss).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from adversarial.base import Attack, AttackError


@dataclass(frozen=True)
class Entry:
    cls: type[Attack]
    preset: dict[str, object] = field(default_factory=dict)

    def options(self) -> dict[str, object]:
        """Every option and its default (the preset's value where it sets one)."""
        out = {}
        for f in dataclasses.fields(self.cls):
            if not f.init:
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            out[f.name] = self.preset.get(f.name, default)
        return out

    def types(self) -> dict[str, type]:
        """Each option's type (``float | None`` → float), for parsing ``--arg k=v``."""
        hints = typing.get_type_hints(self.cls)
        out = {}
        for name in self.options():
            kinds = [k for k in typing.get_args(hints[name]) if k is not type(None)]
            out[name] = kinds[0] if kinds else hints[name]
        return out


REGISTRY: dict[str, Entry] = {}


def register(name: str, **preset):
    """Class decorator: file the attack class under ``name`` (with ``preset`` defaults)."""

    def wrap(cls):
        REGISTRY[name] = Entry(cls, preset)
        return cls

    return wrap


def entry(name: str) -> Entry:
    _load()
    if name not in REGISTRY:
        raise AttackError(f"unknown attack {name!r}; choose one of {', '.join(names())}")
    return REGISTRY[name]


def build(name: str, **options) -> Attack:
    """The attack ``name`` with ``options`` over its defaults; an unknown option is refused."""
    spec = entry(name)
    known = spec.options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise AttackError(
            f"attack {name}: unknown option(s) {', '.join(unknown)}; it takes "
            + ", ".join(f"{k}={v}" for k, v in known.items())
        )
    return spec.cls(**{**spec.preset, **options})


def options(name: str) -> dict[str, object]:
    return entry(name).options()


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
