"""Lookup-table activations: the registry of float functions and the one table builder.

A table layer maps an integer accumulator ``acc`` (real value ``acc · in_scale``) to the
next layer's integer input ``q`` (real value ``q · out_scale``) through one array:

    q = values[(clip(acc, lo, hi) - lo) >> shift],   hi = lo + len(values)·2^shift - 1

so requantisation and the activation are a single gather. Entry ``i`` covers the 2^shift
accumulators starting at ``lo + i·2^shift`` and holds ``clip(rint(f(c_i · in_scale) /
out_scale), qmin, qmax)`` at the bucket's centre ``c_i`` (rint rounds half to even).
A new activation is one :func:`register` line; the builder owns domain, clipping, rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from integer_nn.errors import QuantizationError

FloatFn = Callable[[np.ndarray], np.ndarray]
_FUNCTIONS: dict[str, FloatFn] = {}
DEFAULT_MAX_ENTRIES = 1 << 14  # 16,384 entries (128 KiB as int64) per table layer


def register(name: str, fn: FloatFn) -> None:
    """Make ``fn`` (float array → float array, elementwise) available as table ``name``."""
    _FUNCTIONS[name] = fn


def function(name: str) -> FloatFn:
    if name not in _FUNCTIONS:
        raise QuantizationError(
            f"no table activation {name!r}; known: {', '.join(sorted(_FUNCTIONS))}"
        )
    return _FUNCTIONS[name]


def names() -> list[str]:
    return sorted(_FUNCTIONS)


register("identity", lambda x: x)  # pure requantisation (rescale + clip)
register("relu", lambda x: np.maximum(x, 0.0))
register("sigmoid", expit)  # scipy's logistic: no overflow warning far from 0
register("tanh", np.tanh)
register("square", np.square)


@dataclass(frozen=True)
class OutputRange:
    """Integer range and scale of a table's output."""

    qmin: int
    qmax: int
    scale: float


def output_range(values: np.ndarray, bits: int) -> OutputRange:
    """Unsigned [0, 2^bits-1] for outputs ≥ 0, else symmetric signed; scale from the peak."""
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if values.size == 0 or float(np.min(values)) >= 0.0:
        qmin, qmax = 0, (1 << bits) - 1
    else:
        qmax = (1 << (bits - 1)) - 1
        qmin = -qmax
    return OutputRange(qmin, qmax, peak / qmax if peak > 0 else 1.0)


def bucket_centres(lo: int, shift: int, entries: int) -> np.ndarray:
    """Accumulator value at the centre of each table bucket (float64)."""
    width = 1 << shift
    return lo + np.arange(entries, dtype=np.float64) * width + (width - 1) / 2.0


def plan_domain(lo: int, hi: int, max_entries: int) -> tuple[int, int]:
    """Smallest ``shift`` so that [lo, hi] fits in ≤ max_entries buckets → (shift, entries)."""
    if hi < lo:
        raise QuantizationError(f"empty table domain [{lo}, {hi}]")
    size = hi - lo + 1
    shift = max(0, math.ceil(math.log2(size / max_entries))) if size > max_entries else 0
    return shift, -(-size // (1 << shift))


def build(
    name: str,
    lo: int,
    hi: int,
    *,
    in_scale: float,
    out: OutputRange,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> tuple[int, np.ndarray]:
    """Table for activation ``name`` over accumulators [lo, hi] → (shift, int64 values)."""
    fn = function(name)
    shift, entries = plan_domain(lo, hi, max_entries)
    real = fn(bucket_centres(lo, shift, entries) * in_scale)
    values = np.clip(np.rint(real / out.scale), out.qmin, out.qmax).astype(np.int64)
    return shift, values
