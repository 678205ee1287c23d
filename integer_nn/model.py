"""IntModel: a sequence of integer ops with the scales that give its values meaning."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from integer_nn import kernels
from integer_nn.errors import QuantizationError
from integer_nn.ops import Interval, IntOp

INT64_LIMIT = (1 << 63) - 1


def _step(op: IntOp, wide: bool, x: np.ndarray) -> np.ndarray:
    """One op: in Python integers when its worst case passes int64, back to int64 as soon
    as an op's worst case fits again (a requantising table, usually)."""
    if wide and x.dtype != object:
        x = x.astype(np.int64).astype(object)  # Python ints, also from exact float32
    x = op.run(x)  # narrow widths between ops where exact (IntOp.run)
    if not wide and x.dtype == object:
        x = x.astype(np.int64)  # the range analysis guarantees it fits
    return x


@dataclass
class LayerStats:
    """What is known of one op's output range."""

    worst: Interval  # from the weights and the input range: guaranteed
    observed_lo: int | None = None  # seen on calibration data
    observed_hi: int | None = None


@dataclass
class IntModel:
    """An exact integer network. ``forward`` is deterministic: int64 in, int64 logits out
    — or Python integers (an object array) when the worst case passes int64 somewhere:
    those ops and the ones after them run exactly in Python ints, so the reference never
    caps what an exact scheme can compute."""

    ops: list[IntOp]
    in_shape: tuple[int, int, int]  # (C, H, W) of one image
    input_bits: int  # float x in [0, 1] becomes rint(x · (2^input_bits - 1))
    output_scale: float  # real logit = integer logit · output_scale
    classes: tuple[str, ...] = ()
    stats: list[LayerStats] = field(default_factory=list)  # one per op
    meta: dict[str, object] = field(default_factory=dict)  # provenance: source model, bits, ...

    def __post_init__(self) -> None:
        worst = self.worst_case()
        # per op: may its output (or its accumulator) pass int64? Then it runs in Python ints
        self._wide = [max(b.peak, abs(b.lo), abs(b.hi)) > INT64_LIMIT for b in worst]
        if not self.stats:
            self.stats = [LayerStats(w) for w in worst]

    @property
    def input_max(self) -> int:
        return (1 << self.input_bits) - 1

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """float32 images in [0, 1] → int64 in [0, 2^input_bits - 1]."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape[1:]) != tuple(self.in_shape):
            raise QuantizationError(
                f"input of shape {x.shape[1:]}, this model takes {self.in_shape}"
            )
        return np.rint(np.clip(x, 0.0, 1.0) * self.input_max).astype(np.int64)

    def forward(self, x_int: np.ndarray, *, upto: int | None = None) -> np.ndarray:
        """Exact integer forward pass of (N, C, H, W) int64 → (N, classes) int64 logits.

        ``upto`` stops after that many ops (for inspection and the client-aided HE mode).
        """
        x = np.asarray(x_int)
        if x.dtype != np.int64:
            raise QuantizationError(
                f"forward takes int64 input, got {x.dtype}; use predict() for floats"
            )
        if tuple(x.shape[1:]) != tuple(self.in_shape):
            raise QuantizationError(
                f"input of shape {x.shape[1:]}, this model takes {self.in_shape}"
            )
        lo, hi = int(x.min(initial=0)), int(x.max(initial=0))
        if lo < 0 or hi > self.input_max:
            raise QuantizationError(
                f"input values span [{lo}, {hi}] but the model was analysed for "
                f"[0, {self.input_max}]; quantize inputs with quantize_input()"
            )
        x = x.astype(kernels.narrowest(0, self.input_max))  # pixels: a byte or two each
        for op, wide in zip(self.ops[:upto], self._wide, strict=False):
            x = _step(op, wide, x)
        return x if x.dtype in (np.int64, object) else x.astype(np.int64)

    @property
    def wide(self) -> bool:
        """Whether some op's worst case passes int64 (forward then returns Python ints)."""
        return any(self._wide)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Float images → real-valued logits (integer logits times the output scale)."""
        return self.forward(self.quantize_input(x)).astype(np.float64) * self.output_scale

    def predict(self, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
        """Float images in [0, 1] → predicted class per image (int64)."""
        out = [
            self.forward(self.quantize_input(x[i : i + batch_size])).argmax(1)
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def worst_case(self) -> list[Interval]:
        """Guaranteed output interval of every op for any valid input."""
        cur = Interval(0, self.input_max, self.input_max)
        out = []
        for op in self.ops:
            cur = op.bounds(cur)
            out.append(cur)
        return out

    def observe(self, x_int: np.ndarray) -> None:
        """Record the observed range of every op's output on ``x_int`` (calibration data)."""
        x = x_int
        for op, stat, wide in zip(self.ops, self.stats, self._wide, strict=True):
            x = _step(op, wide, x)
            stat.observed_lo, stat.observed_hi = int(x.min()), int(x.max())

    def describe(self) -> list[dict[str, object]]:
        """Per op: what it is, guaranteed and observed ranges, accumulator bits."""
        rows = []
        for i, (op, st) in enumerate(zip(self.ops, self.stats, strict=True)):
            row: dict[str, object] = {
                "index": i,
                "name": f"{i}:{op.kind}",
                "op": op.describe(),
                "worst_lo": st.worst.lo,
                "worst_hi": st.worst.hi,
                "accumulator_bits": st.worst.bits,
            }
            if st.observed_lo is not None:
                observed = Interval(st.observed_lo, st.observed_hi, 0)
                row.update(
                    observed_lo=st.observed_lo,
                    observed_hi=st.observed_hi,
                    observed_bits=observed.bits,
                )
            rows.append(row)
        return rows

    @property
    def max_accumulator_bits(self) -> int:
        """Signed bits for every op's worst-case value and partial sum (int64 needs ≤ 64)."""
        return max(st.worst.bits for st in self.stats)

    @property
    def max_value_bits(self) -> int:
        """Signed bits for every op's worst-case *value* (what an exact scheme's plaintext
        modulus must hold; partial sums wrap harmlessly modulo t)."""
        return max(Interval(st.worst.lo, st.worst.hi, 0).bits for st in self.stats)
