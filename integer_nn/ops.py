"""The integer layers of an IntModel, found by name through a registry.

Every op maps an int64 array to an int64 array exactly (``run``, inside IntModel, keeps
narrower widths where they are exact), and knows the worst-case
interval of its output given the interval of its input (Python ints: no overflow in the
analysis itself). ``peak`` is the largest magnitude any partial sum can reach, which is
what must stay below 2^63 for int64 to be exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from integer_nn import kernels
from integer_nn.errors import IntModelFileError


@dataclass(frozen=True)
class Interval:
    lo: int  # smallest possible output value
    hi: int  # largest possible output value
    peak: int  # largest |partial sum| reached while computing it

    @property
    def bits(self) -> int:
        """Signed bits to hold every value in [lo, hi] (and every partial sum)."""
        return max(abs(self.lo), abs(self.hi), self.peak).bit_length() + 1


OPS: dict[str, type[IntOp]] = {}


def register(cls: type[IntOp]) -> type[IntOp]:
    OPS[cls.kind] = cls
    return cls


class IntOp:
    """Base of the integer layers: forward, interval bounds, serialisation."""

    kind: ClassVar[str] = ""
    array_names: ClassVar[tuple[str, ...]] = ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, x: np.ndarray) -> np.ndarray:
        """``forward`` as IntModel runs it: any signed integer width in (or float32 whose
        values are integers ≤ 2^24: a float32 product's output as it comes), the
        narrowest exact width out where the op has one (products, tables, max pooling),
        so that activations cross memory at 1–4 bytes a value, not 8. This default: int64."""
        if x.dtype != object and x.dtype != np.int64:
            x = x.astype(np.int64)
        return self.forward(x)

    def bounds(self, inp: Interval) -> Interval:
        return Interval(inp.lo, inp.hi, max(abs(inp.lo), abs(inp.hi)))

    def params(self) -> dict[str, object]:
        """JSON-ready hyper-parameters (everything but the arrays)."""
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.array_names}

    @classmethod
    def from_parts(cls, params: dict[str, object], arrays: dict[str, np.ndarray]) -> IntOp:
        missing = [n for n in cls.array_names if n not in arrays]
        if missing:
            raise IntModelFileError(f"{cls.kind} layer lacks arrays {', '.join(missing)}")
        for name in cls.array_names:
            if arrays[name].dtype != np.int64:
                raise IntModelFileError(
                    f"{cls.kind}.{name} is {arrays[name].dtype}, expected int64"
                )
        try:
            return cls(**params, **{n: arrays[n] for n in cls.array_names})
        except TypeError as exc:
            raise IntModelFileError(f"{cls.kind} layer has malformed parameters ({exc})") from None

    def describe(self) -> str:
        return self.kind


def _affine_bounds(
    pos: np.ndarray, neg: np.ndarray, abs_sum: np.ndarray, bias: np.ndarray, inp: Interval
) -> Interval:
    """Bounds of Σ w·x + b per output, with pos/neg = Σ of positive/negative weights."""
    lo, hi = inp.lo, inp.hi
    outs_lo = [int(b) + int(p) * lo + int(n) * hi for p, n, b in zip(pos, neg, bias, strict=True)]
    outs_hi = [int(b) + int(p) * hi + int(n) * lo for p, n, b in zip(pos, neg, bias, strict=True)]
    mag = max(abs(lo), abs(hi))
    peak = max(int(a) * mag + abs(int(b)) for a, b in zip(abs_sum, bias, strict=True))
    return Interval(min(outs_lo), max(outs_hi), peak)


def _weight_sums(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat = weight.reshape(weight.shape[0], -1)
    return (
        np.where(flat > 0, flat, 0).sum(1),
        np.where(flat < 0, flat, 0).sum(1),
        np.abs(flat).sum(1),
    )


def _windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    return view[:, :, ::stride, ::stride]  # (N, C, Ho, Wo, k, k)


def wide_conv2d(x, weight, bias, stride: int, padding: int) -> np.ndarray:
    """Convolution in Python integers (object arrays): what a layer whose worst case passes
    int64 runs on, so exact schemes (BFV) are checked bit for bit at any width. One
    ``tensordot`` per kernel offset; slow next to the int64 kernels, used only there."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=0)
    n, _, h, wd = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    w = weight.astype(object)
    out = np.zeros((n, ho, wo, o), dtype=object)
    for ky in range(kh):
        for kx in range(kw):
            patch = x[:, :, ky : ky + stride * ho : stride, kx : kx + stride * wo : stride]
            out = out + np.tensordot(patch, w[:, :, ky, kx], axes=([1], [1]))
    return out.transpose(0, 3, 1, 2) + bias.astype(object)[None, :, None, None]


@register
@dataclass
class IntConv2d(IntOp):
    kind: ClassVar[str] = "conv2d"
    array_names: ClassVar[tuple[str, ...]] = ("weight", "bias")
    weight: np.ndarray  # int64 (O, C, kh, kw)
    bias: np.ndarray  # int64 (O,), in the accumulator's scale
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        self._prepared = kernels.prepare(self.weight, self.bias, ndim=4)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:  # values past int64: exact Python integers
            return wide_conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return kernels.conv2d(x, self._prepared, stride=self.stride, padding=self.padding)

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:
            return self.forward(x)
        return kernels.conv2d(
            x, self._prepared, stride=self.stride, padding=self.padding, narrow=True
        )

    def bounds(self, inp: Interval) -> Interval:
        if self.padding:  # padded zeros are inputs too
            inp = Interval(min(inp.lo, 0), max(inp.hi, 0), inp.peak)
        return _affine_bounds(*_weight_sums(self.weight), self.bias, inp)

    def params(self) -> dict[str, object]:
        return {"stride": self.stride, "padding": self.padding}

    def describe(self) -> str:
        o, c, kh, kw = self.weight.shape
        return f"conv2d {c}→{o} {kh}x{kw}/{self.stride} pad {self.padding}"


@register
@dataclass
class IntLinear(IntOp):
    kind: ClassVar[str] = "linear"
    array_names: ClassVar[tuple[str, ...]] = ("weight", "bias")
    weight: np.ndarray  # int64 (O, I)
    bias: np.ndarray  # int64 (O,)

    def __post_init__(self) -> None:
        self._prepared = kernels.prepare(self.weight, self.bias, ndim=2)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:  # values past int64: exact Python integers
            return x @ self.weight.astype(object).T + self.bias.astype(object)
        return kernels.linear(x, self._prepared)

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:
            return self.forward(x)
        return kernels.linear(x, self._prepared, narrow=True)

    def bounds(self, inp: Interval) -> Interval:
        return _affine_bounds(*_weight_sums(self.weight), self.bias, inp)

    def describe(self) -> str:
        return f"linear {self.weight.shape[1]}→{self.weight.shape[0]}"


@register
@dataclass
class IntTable(IntOp):
    """Fused requantisation + activation: one gather (see ``integer_nn.tables``)."""

    kind: ClassVar[str] = "table"
    array_names: ClassVar[tuple[str, ...]] = ("values",)
    values: np.ndarray  # int64 (entries,)
    function: str = "identity"  # registry name of the float function
    lo: int = 0  # first accumulator of the domain
    shift: int = 0  # log2 of the bucket width
    in_scale: float = 1.0  # real value of one accumulator unit
    out_scale: float = 1.0  # real value of one output unit

    @property
    def hi(self) -> int:
        return self.lo + (len(self.values) << self.shift) - 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:  # a wide accumulator: clip in Python ints, then the domain fits
            index = (np.clip(x, self.lo, self.hi) - self.lo) >> self.shift
            return self.values[index.astype(np.int64)]
        return kernels.table_lookup(x, self.values, lo=self.lo, shift=self.shift)

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:
            return self.forward(x)
        return kernels.table_lookup(x, self.values, lo=self.lo, shift=self.shift, narrow=True)

    def bounds(self, inp: Interval) -> Interval:
        lo, hi = int(self.values.min()), int(self.values.max())
        return Interval(lo, hi, max(abs(lo), abs(hi), abs(inp.lo - self.lo), abs(inp.hi - self.lo)))

    def params(self) -> dict[str, object]:
        return {
            "function": self.function,
            "lo": self.lo,
            "shift": self.shift,
            "in_scale": self.in_scale,
            "out_scale": self.out_scale,
        }

    def describe(self) -> str:
        return (
            f"table {self.function} [{self.lo}, {self.hi}] >> {self.shift} "
            f"({len(self.values)} entries)"
        )


@register
@dataclass
class IntSquare(IntOp):
    """x ↦ x², exact: a polynomial, so BFV evaluates it without a table."""

    kind: ClassVar[str] = "square"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * x

    def bounds(self, inp: Interval) -> Interval:
        hi = max(inp.lo * inp.lo, inp.hi * inp.hi)
        lo = 0 if inp.lo <= 0 <= inp.hi else min(inp.lo * inp.lo, inp.hi * inp.hi)
        return Interval(lo, hi, hi)


@dataclass
class _Pool(IntOp):
    """Square windows, no padding, floor mode."""

    kernel: int = 2
    stride: int = 2

    def params(self) -> dict[str, object]:
        return {"kernel": self.kernel, "stride": self.stride}

    def describe(self) -> str:
        return f"{self.kind.removesuffix('2d')} {self.kernel}x{self.kernel}/{self.stride}"


@register
@dataclass
class IntMaxPool2d(_Pool):
    kind: ClassVar[str] = "maxpool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:
            return _windows(x, self.kernel, self.stride).max(axis=(4, 5))
        return kernels.maxpool2d(x, self.kernel, self.stride)

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:
            return self.forward(x)
        return kernels.maxpool2d(x, self.kernel, self.stride, narrow=True)  # width kept


@register
@dataclass
class IntSumPool2d(_Pool):
    """Average pooling as a sum; the 1/k² is folded into the scale of what follows."""

    kind: ClassVar[str] = "sumpool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == object:
            return _windows(x, self.kernel, self.stride).sum(axis=(4, 5))
        return kernels.sumpool2d(x, self.kernel, self.stride)

    def bounds(self, inp: Interval) -> Interval:
        k2 = self.kernel * self.kernel
        return Interval(k2 * inp.lo, k2 * inp.hi, k2 * max(abs(inp.lo), abs(inp.hi)))


@register
@dataclass
class IntFlatten(IntOp):
    kind: ClassVar[str] = "flatten"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)
