"""The fake-quantised layers of quantisation-aware training (``integer_nn.qat``): each maps an
integer-valued float64 tensor ``q``, its scale ``s`` and its worst-case bounds to the next,
computing exactly what the matching IntModel op computes (``int_op()`` returns that op), with
straight-through gradients for the roundings. The scale rules are described in ``qat``."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from integer_nn import tables
from integer_nn.errors import QuantizationError
from integer_nn.ops import (
    IntConv2d,
    IntFlatten,
    IntLinear,
    IntMaxPool2d,
    IntOp,
    IntSquare,
    IntSumPool2d,
    IntTable,
)

DTYPE = torch.float64
TORCH_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}
NONNEGATIVE = frozenset({"relu", "sigmoid"})  # tables whose outputs are unsigned
Bounds = tuple[float, float]  # worst-case [lo, hi] of a tensor's integers


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def _per_row(scale: torch.Tensor, ndim: int) -> torch.Tensor:
    return scale.reshape((-1,) + (1,) * (ndim - 1)) if scale.dim() else scale


def _per_input(scale: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel/feature scale shaped to multiply weights' input axis (dim 1)."""
    return scale.reshape((1, -1) + (1,) * (ndim - 2)) if scale.dim() else scale


class QAffine(nn.Module):
    """Conv2d or Linear on integer inputs with fake-quantised integer weights and bias."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        *,
        conv: tuple[int, int] | None,  # (stride, padding) for a convolution
        weight_bits: int,
        per_channel: bool,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().to(DTYPE).clone())
        self.bias = nn.Parameter(bias.detach().to(DTYPE).clone())
        self.conv = conv
        self.qmax = (1 << (weight_bits - 1)) - 1
        self.per_channel = per_channel
        self.cap: int | None = None  # Σ|w_int| per row (accumulator-aware bounds)
        self.bias_cap: int | None = None
        self.last: tuple[np.ndarray, np.ndarray] | None = None  # integers of the last forward

    def quantized(self, s_in: torch.Tensor):
        """→ (integer weights, integer bias, accumulator scale per output or one) for inputs
        of scale ``s_in``; exactly what the IntModel stores."""
        w = self.weight
        v = w * _per_input(s_in, w.dim())
        flat = v.detach().reshape(len(v), -1)
        scale = _mse_scale(flat, self.qmax, per_row=self.per_channel)
        if self.cap is not None:
            scale = _capped_scale(flat, scale, self.cap)
        if not self.per_channel:
            scale = scale.max()  # the capped rows' scale where some rows are capped
        elif bool((scale > 0).any()):  # an all-zero row takes the largest scale, not zero
            scale = torch.where(scale > 0, scale, scale.max())
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(round_ste(v / _per_row(scale, w.dim())), -self.qmax, self.qmax)
        b = round_ste(self.bias / scale)
        if self.bias_cap is not None:
            b = torch.clamp(b, -self.bias_cap, self.bias_cap)
        return q, b, scale

    def forward(self, q: torch.Tensor, s: torch.Tensor, bounds: Bounds):
        qw, b, scale = self.quantized(s)
        if self.conv is not None:
            stride, padding = self.conv
            out = F.conv2d(q, qw, b, stride=stride, padding=padding)
            if padding:
                bounds = (min(bounds[0], 0.0), max(bounds[1], 0.0))
        else:
            out = F.linear(q, qw, b)
        w = qw.detach().reshape(len(qw), -1)
        pos, neg = w.clamp(min=0).sum(1), w.clamp(max=0).sum(1)
        bd = b.detach()
        lo = float((bd + pos * bounds[0] + neg * bounds[1]).min())
        hi = float((bd + pos * bounds[1] + neg * bounds[0]).max())
        self.last = (
            qw.detach().cpu().numpy().astype(np.int64),
            bd.cpu().numpy().astype(np.int64),
        )
        return out, scale.detach(), (lo, hi)

    def row_sum(self) -> int:
        """Largest sum of one sign of a row's integer weights in the last forward pass."""
        assert self.last is not None
        return int(_sign_sums(torch.from_numpy(self.last[0].reshape(len(self.last[0]), -1))).max())

    def int_op(self) -> IntOp:
        assert self.last is not None, "run a forward pass first"
        weight, bias = self.last
        if self.conv is not None:
            return IntConv2d(weight=weight, bias=bias, stride=self.conv[0], padding=self.conv[1])
        return IntLinear(weight=weight, bias=bias)


def _sign_sums(q: torch.Tensor) -> torch.Tensor:
    """Per row: max(Σ of the positive entries, |Σ of the negative ones|)."""
    return torch.maximum(q.clamp(min=0).sum(1), -q.clamp(max=0).sum(1))


CLIP_RATIOS = torch.linspace(1.0, 0.3, 15, dtype=DTYPE)  # of the peak, tried for the scale


def _mse_scale(v: torch.Tensor, qmax: int, *, per_row: bool) -> torch.Tensor:
    """The weight scale (per row, or one for all rows) among ``peak·r / qmax`` for the clip
    ratios r that quantises ``v`` with the least squared error: at 3 bits, clipping the
    largest weights keeps more resolution for the rest (max-scaling: 82.7 % on
    tenseal-tutorial ReLU, Fashion-MNIST, 3 bits; 4-bit weights 86.0 %)."""
    rows = v if per_row else v.reshape(1, -1)
    peak = rows.abs().amax(1)
    best, best_err = peak / qmax, None
    for r in CLIP_RATIOS:
        scale = torch.where(peak > 0, peak * r / qmax, torch.ones_like(peak))
        q = torch.clamp(torch.round(rows / scale[:, None]), -qmax, qmax)
        err = ((q * scale[:, None] - rows) ** 2).sum(1)
        if best_err is None:
            best, best_err = scale, err
        else:
            better = err < best_err
            best, best_err = torch.where(better, scale, best), torch.where(better, err, best_err)
    best = torch.where(peak > 0, best, torch.zeros_like(best))
    return best if per_row else best.expand(len(v))


def _capped_scale(v: torch.Tensor, scale: torch.Tensor, cap: int) -> torch.Tensor:
    """Per row, the smallest scale ≥ ``scale`` at which the rounded row's positive and
    negative sums both stay ≤ ``cap`` (bisection: the sums only fall as the scale grows;
    rounding to nearest keeps the weights' resolution, rounding toward zero would not)."""
    ok = _sign_sums(torch.round(v / scale[:, None])) <= cap
    if bool(ok.all()):
        return scale
    lo = scale.clone()
    hi = torch.maximum(2 * v.abs().amax(1), scale)  # everything rounds to 0 there
    for _ in range(48):
        mid = (lo + hi) / 2
        fits = _sign_sums(torch.round(v / mid[:, None])) <= cap
        hi, lo = torch.where(fits, mid, hi), torch.where(fits, lo, mid)
    return torch.where(ok, scale, hi)


class QTable(nn.Module):
    """Requantising activation: IntTable values forward, LSQ-style gradient backward."""

    def __init__(self, function: str, act_bits: int, max_entries: int) -> None:
        super().__init__()
        tables.function(function)  # a clear error for an unknown name
        if function not in TORCH_FUNCTIONS:
            raise QuantizationError(
                f"quantisation-aware training has no gradient for table {function!r}; "
                f"it trains {', '.join(sorted(TORCH_FUNCTIONS))}"
            )
        self.function = function
        if function in NONNEGATIVE:
            self.qmin, self.qmax = 0, (1 << act_bits) - 1
        else:
            self.qmax = (1 << (act_bits - 1)) - 1
            self.qmin = -self.qmax
        self.max_entries = max_entries
        self.log_scale = nn.Parameter(torch.tensor(float("nan"), dtype=DTYPE))
        self.last: dict[str, object] | None = None

    def _calibrated_scale(self, real: torch.Tensor) -> float:
        """Among ``peak·r / qmax`` (clip ratios r), the output scale that quantises the
        calibration outputs with the least squared error (the peak alone wastes levels on
        rare large activations: at 3 bits that is most of them)."""
        peak = float(real.abs().max())
        if peak == 0:
            return 1.0
        top = max(abs(self.qmin), self.qmax)
        sample = real[:: max(1, len(real) // 200_000)]
        errors = []
        for r in CLIP_RATIOS.tolist():
            scale = peak * r / top
            q = torch.clamp(torch.round(sample / scale), self.qmin, self.qmax)
            errors.append((float(((q * scale - sample) ** 2).sum()), scale))
        return min(errors)[1]

    def _value(self, acc: int, s_in: float, s_out: float) -> float:
        real = tables.function(self.function)(np.array([acc * s_in], dtype=np.float64))
        return float(np.clip(np.rint(real[0] / s_out), self.qmin, self.qmax))

    def _domain(self, bounds: Bounds, s_in: float, s_out: float) -> tuple[int, int]:
        """[a0, a1] within the input's worst case, outside which the output is constant
        (the functions are non-decreasing): the table covers exactly where it changes."""
        lo, hi = math.floor(bounds[0]), math.ceil(bounds[1])
        v_lo, v_hi = self._value(lo, s_in, s_out), self._value(hi, s_in, s_out)
        if v_lo == v_hi:
            return lo, lo
        a, b = lo, hi  # largest a with value(a) == v_lo
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (mid, b) if self._value(mid, s_in, s_out) == v_lo else (a, mid)
        a0 = a
        a, b = lo, hi  # smallest b with value(b) == v_hi
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (a, mid) if self._value(mid, s_in, s_out) == v_hi else (mid, b)
        return a0, b

    def forward(self, q: torch.Tensor, s: torch.Tensor, bounds: Bounds):
        if s.dim():
            raise AssertionError("a table takes one input scale (the builder ensures it)")
        s_in = float(s)
        fn = TORCH_FUNCTIONS[self.function]
        if torch.isnan(self.log_scale):  # calibration: least squared error, then learned
            real = fn(q.detach() * s_in).flatten()
            with torch.no_grad():
                self.log_scale.fill_(math.log(self._calibrated_scale(real)))
        s_out_t = torch.exp(self.log_scale)
        s_out = float(s_out_t.detach())
        a0, a1 = self._domain(bounds, s_in, s_out)
        shift, values = tables.build(
            self.function,
            a0,
            a1,
            in_scale=s_in,
            out=tables.OutputRange(self.qmin, self.qmax, s_out),
            max_entries=self.max_entries,
        )
        hi = a0 + (len(values) << shift) - 1
        index = torch.div(q.detach().clamp(a0, hi) - a0, 1 << shift, rounding_mode="floor")
        exact = torch.from_numpy(values.astype(np.float64)).to(q.device)[index.long()]
        surrogate = torch.clamp(round_ste(fn(q * s_in) / s_out_t), self.qmin, self.qmax)
        self.last = {
            "values": values,
            "lo": a0,
            "shift": shift,
            "in_scale": s_in,
            "out_scale": s_out,
        }
        out = surrogate + (exact - surrogate).detach()
        return out, s_out_t.detach(), (float(values.min()), float(values.max()))

    def int_op(self) -> IntOp:
        assert self.last is not None, "run a forward pass first"
        return IntTable(function=self.function, **self.last)  # type: ignore[arg-type]


class QSquare(nn.Module):
    def forward(self, q, s, bounds: Bounds):
        lo, hi = bounds
        top = max(lo * lo, hi * hi)
        return q * q, s * s, (0.0 if lo <= 0 <= hi else min(lo * lo, hi * hi), top)

    def int_op(self) -> IntOp:
        return IntSquare()


class QPool(nn.Module):
    def __init__(self, kernel: int, stride: int, kind: str) -> None:
        super().__init__()
        self.kernel, self.stride, self.kind = kernel, stride, kind

    def forward(self, q, s, bounds: Bounds):
        if self.kind == "max":
            return F.max_pool2d(q, self.kernel, self.stride), s, bounds
        k2 = self.kernel * self.kernel
        out = F.avg_pool2d(q, self.kernel, self.stride, divisor_override=1)  # the sum
        return out, s / k2, (k2 * bounds[0], k2 * bounds[1])

    def int_op(self) -> IntOp:
        cls = IntMaxPool2d if self.kind == "max" else IntSumPool2d
        return cls(kernel=self.kernel, stride=self.stride)


class QFlatten(nn.Module):
    def forward(self, q, s, bounds: Bounds):
        if s.dim():  # per-channel → per-feature, in NCHW order
            s = s.repeat_interleave(q[0, 0].numel())
        return q.flatten(1), s, bounds

    def int_op(self) -> IntOp:
        return IntFlatten()
