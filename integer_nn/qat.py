"""Quantisation-aware training: the integer network's own arithmetic inside the training loop.

Post-training quantisation at 3–4 bits loses points because the float weights never saw the
rounding. Here a float checkpoint is fine-tuned through a *fake-quantised* copy whose forward
pass is the IntModel's: every tensor is an integer-valued float64 tensor ``q`` with a scale
``s`` (real value ``q·s``), and :meth:`QATNetwork.to_int_model` writes out the very integers
the network computed with (tested value for value). Float64 keeps every integer below 2^53
exact, so nothing is approximated between the trained network and the exported one.

- Inputs: ``rint(clip(x, 0, 1)·(2^input_bits − 1))``, as ``IntModel.quantize_input``.
- Conv / Linear: the effective weights on the integer input, ``v = w·s_in`` (``s_in`` per
  channel when the layer before had per-channel scales), quantised symmetric to
  ``weight_bits``: one scale per output channel when only polynomial ops (x², pooling,
  flatten) lie between this layer and the next affine one — the next layer's ``v`` absorbs the
  scales, so the IntModel and the BFV/CKKS plans built from it are unchanged in meaning — or one
  scale for the tensor before a table or the logits (both need a single scale). Bias
  ``rint(b / s_acc)``. Rounding is a straight-through estimator (Bengio et al. 2013).
- Tables (ReLU, sigmoid, tanh; identity requantises a raw accumulator): the forward value is
  the IntTable gather, built by :mod:`integer_nn.tables` from the current scales over the
  accumulator domain where the output still changes; the gradient is that of
  ``clip(round(f(acc·s_in) / s_out))`` with STE, ``s_out`` learned as ``log s_out`` (LSQ,
  Esser et al. 2020), initialised on calibration data at the clip ratio of least squared
  error (as are the weight scales, every step).
- x² stays exact: ``q²`` with scale ``s²``.
- Accumulator-aware bounds (after A2Q, Colbert et al. 2023): with ``acc_bits = B`` the
  positive and the negative integer weights of every affine row each sum to at most ``C_l``
  (a row past the cap takes the smallest larger scale that fits, found by bisection, and
  still rounds to nearest) and its bias is clamped to ``C_l·R_l / 8`` (``R_l``: the span its
  input can reach), so every op's worst-case value — the interval arithmetic the IntModel
  does, ``IntModel.max_value_bits`` — fits B signed bits (what BFV's plaintext primes must
  hold; partial sums may pass it, harmlessly: they wrap modulo t, and the int64 reference
  switches to Python integers where they could pass 2^63). The caps shrink every layer's
  starting sums by a factor that grows with how many bits of the worst case the layer's
  cap is worth (a conv feeding two x² is worth four times the last layer's), the smallest
  that fits (bisection).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from integer_nn import tables
from integer_nn.errors import QuantizationError
from integer_nn.model import IntModel
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
from integer_nn.quantize import (
    SKIPPED,
    TABLE_ACTIVATIONS,
    check_conv,
    fold_batchnorm,
    leaf_layers,
    pool_geometry,
)
from nets.data import Dataset
from nets.layers import Square
from nets.train import TrainConfig, TrainStep, train

DTYPE = torch.float64
TORCH_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}
NONNEGATIVE = frozenset({"relu", "sigmoid"})  # tables whose outputs are unsigned
BIAS_SHARE = 8  # a capped row's |bias| ≤ (its worst-case weighted sum) / BIAS_SHARE
Bounds = tuple[float, float]  # worst-case [lo, hi] of a tensor's integers


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def trunc_ste(x: torch.Tensor) -> torch.Tensor:
    """Round toward zero forward, identity backward (keeps Σ|q| ≤ Σ|x|)."""
    return x + (torch.trunc(x) - x).detach()


@dataclass(frozen=True)
class QATConfig:
    """What the integer network will be: bit widths, scales, the accumulator budget."""

    weight_bits: int = 4
    act_bits: int = 4
    input_bits: int | None = None  # default: act_bits (as post-training quantisation)
    # per-output-channel weight scales where the next layer absorbs them. None: on with an
    # accumulator budget, off without — measured (tenseal-tutorial / cryptonets x²,
    # Fashion-MNIST, 5 epochs): without a budget one scale per tensor was 0.15–0.5 points
    # better in 4 of 4 cases; with --acc-bits 39 per channel was 1.3 points better (84.8 vs
    # 83.5 %: each capped row keeps its own scale)
    per_channel: bool | None = None
    acc_bits: int | None = None  # worst case of every op within this many signed bits
    max_table_entries: int = tables.DEFAULT_MAX_ENTRIES

    def __post_init__(self) -> None:
        for name in ("weight_bits", "act_bits", "input_bits"):
            bits = getattr(self, name)
            if bits is not None and not 2 <= bits <= 16:
                raise QuantizationError(f"{name}={bits}: choose between 2 and 16")
        if self.acc_bits is not None and not 8 <= self.acc_bits <= 512:
            raise QuantizationError(
                f"acc_bits={self.acc_bits}: give the accumulator budget in signed bits, 8 to 512 "
                "(e.g. 39 for one 40-bit plaintext prime)"
            )

    @property
    def in_bits(self) -> int:
        return self.input_bits or self.act_bits

    @property
    def channel_scales(self) -> bool:
        return self.per_channel if self.per_channel is not None else self.acc_bits is not None


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


class QATNetwork(nn.Module):
    """The fake-quantised network: ``forward`` gives real logits (integers × scale) for
    ``nets.train``; ``to_int_model`` writes the integers it computes with."""

    def __init__(
        self, layers: list[nn.Module], in_shape: tuple[int, ...], config: QATConfig
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.in_shape = tuple(in_shape)
        self.config = config
        self.input_max = (1 << config.in_bits) - 1

    def forward_int(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images → (integer logits as float64, their scale)."""
        device = next(self.parameters()).device
        x = torch.as_tensor(x).to(device=device, dtype=DTYPE)
        q = torch.round(x.clamp(0.0, 1.0) * self.input_max)
        s = torch.tensor(1.0 / self.input_max, dtype=DTYPE, device=x.device)
        bounds: Bounds = (0.0, float(self.input_max))
        for layer in self.layers:
            q, s, bounds = layer(q, s, bounds)
        return q, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, s = self.forward_int(x)
        return q * s

    def affine_layers(self) -> list[QAffine]:
        return [m for m in self.layers if isinstance(m, QAffine)]

    def to_int_model(self, *, classes: tuple[str, ...] = (), meta: dict | None = None) -> IntModel:
        """The IntModel of the current parameters (one forward pass fixes every integer)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            _, scale = self.forward_int(torch.zeros(1, *self.in_shape))
        self.train(was_training)
        caps = [m.cap for m in self.affine_layers()]
        return IntModel(
            ops=[m.int_op() for m in self.layers],
            in_shape=self.in_shape,  # type: ignore[arg-type]
            input_bits=self.config.in_bits,
            output_scale=float(scale),
            classes=tuple(classes),
            meta={
                "quantization": "qat",
                **{k: v for k, v in asdict(self.config).items() if v is not None},
                "input_bits": self.config.in_bits,
                "per_channel": self.config.channel_scales,
                "row_l1_caps": caps if any(c is not None for c in caps) else None,
                **(meta or {}),
            },
        )


def _consumer_is_affine(layers: list[nn.Module], start: int) -> bool:
    """Whether the first layer after ``start`` that needs to know the scale is an affine one
    reached through an exact x² (only pooling, flatten, dropout besides): then per-channel
    scales are absorbed by its weights. Without the x² the builder puts an identity table
    (requantisation) in between, and a table takes one scale."""
    squared = False
    passes = (nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d)
    for layer in layers[start:]:
        if isinstance(layer, nn.Conv2d | nn.Linear):
            return squared
        if isinstance(layer, Square):
            squared = True
        elif not isinstance(layer, passes + SKIPPED):
            return False
    return False  # the logits: one scale


def build(model: nn.Module, calibration: np.ndarray, config: QATConfig) -> QATNetwork:
    """The fake-quantised copy of ``model`` (BatchNorm folded), its table scales calibrated
    on ``calibration`` (float32 NCHW in [0, 1]) and, with ``acc_bits``, its rows capped."""
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise QuantizationError(
            f"calibration must be non-empty (N, C, H, W), got {calibration.shape}"
        )
    layers = leaf_layers(model.eval())
    out: list[nn.Module] = []
    raw = False  # the current tensor is an accumulator no table has requantised
    i = 0
    while i < len(layers):
        layer = layers[i]
        where = f"layer {i} ({type(layer).__name__})"
        if isinstance(layer, nn.Conv2d | nn.Linear):
            with torch.no_grad():
                weight = layer.weight.detach().double()
                bias = (
                    layer.bias.detach().double()
                    if layer.bias is not None
                    else torch.zeros(weight.shape[0], dtype=DTYPE)
                )
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                if isinstance(nxt, nn.BatchNorm2d | nn.BatchNorm1d):
                    weight, bias = fold_batchnorm(weight, bias, nxt)
                    i += 1
            if raw:
                out.append(QTable("identity", config.act_bits, config.max_table_entries))
            conv = None
            if isinstance(layer, nn.Conv2d):
                check_conv(layer, where)
                conv = (layer.stride[0], layer.padding[0])
            out.append(
                QAffine(
                    weight,
                    bias,
                    conv=conv,
                    weight_bits=config.weight_bits,
                    per_channel=config.channel_scales and _consumer_is_affine(layers, i + 1),
                )
            )
            raw = True
        elif type(layer) in TABLE_ACTIVATIONS:
            out.append(
                QTable(TABLE_ACTIVATIONS[type(layer)], config.act_bits, config.max_table_entries)
            )
            raw = False
        elif isinstance(layer, Square):
            out.append(QSquare())
            raw = False
        elif isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
            k, s = pool_geometry(layer, where)
            out.append(QPool(k, s, "max" if isinstance(layer, nn.MaxPool2d) else "sum"))
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                raise QuantizationError(f"{where}: only Flatten(start_dim=1) is supported")
            out.append(QFlatten())
        elif isinstance(layer, SKIPPED):
            pass
        else:
            raise QuantizationError(
                f"{where} is not supported by quantisation-aware training; supported: Conv2d, "
                "Linear, BatchNorm, ReLU, Sigmoid, Tanh, Square, MaxPool2d, AvgPool2d, Flatten "
                "(GRU models: use post-training `quantize`)"
            )
        i += 1
    if not any(isinstance(m, QAffine) for m in out):
        raise QuantizationError("the model has no Conv2d or Linear layer to quantise")
    net = QATNetwork(out, calibration.shape[1:], config)
    with torch.no_grad():
        net.forward_int(torch.from_numpy(calibration))  # calibrates every table's scale
    if config.acc_bits is not None:
        set_row_caps(net, config.acc_bits)
    return net


def _worst_bits(net: QATNetwork, caps: list[int]) -> tuple[int, list[tuple[int, int]]]:
    """Largest op bits if every row of affine layer l has positive and negative weight sums
    ≤ caps[l] and |bias| ≤ caps[l]·M / BIAS_SHARE (M: its input's magnitude) → (bits, per
    affine layer (cap, bias cap)). Exact interval arithmetic in Python ints."""
    lo, hi = 0, net.input_max
    worst, out, k = 0, [], 0
    for layer in net.layers:
        if isinstance(layer, QAffine):
            if layer.conv is not None and layer.conv[1]:
                lo, hi = min(lo, 0), max(hi, 0)
            reach = caps[k] * (max(hi, 0) + max(-lo, 0))
            bias_cap = reach // BIAS_SHARE
            out.append((caps[k], bias_cap))
            lo, hi = -(reach + bias_cap), reach + bias_cap
            k += 1
        elif isinstance(layer, QSquare):
            lo, hi = (0 if lo <= 0 <= hi else min(lo * lo, hi * hi)), max(lo * lo, hi * hi)
        elif isinstance(layer, QTable):
            lo, hi = layer.qmin, layer.qmax
        elif isinstance(layer, QPool) and layer.kind == "sum":
            k2 = layer.kernel * layer.kernel
            lo, hi = lo * k2, hi * k2
        worst = max(worst, max(abs(lo), abs(hi)).bit_length() + 1)
    return worst, out


def _cap_sensitivity(net: QATNetwork) -> list[float]:
    """Per affine layer, the bits of the final worst case one bit of its cap costs — 2 to the
    number of exact x² before the next table — relative to the largest. Layers shrink in
    proportion (measured on tenseal-tutorial x², Fashion-MNIST, 39 bits, 2-bit inputs, 3
    epochs: 85.2 % vs 83.0 % with one common factor)."""
    sens, squares = [], 0
    for layer in reversed(net.layers):
        if isinstance(layer, QSquare):
            squares += 1
        elif isinstance(layer, QTable):
            squares = 0
        elif isinstance(layer, QAffine):
            sens.append(float(2**squares))
    top = max(sens)
    return [s / top for s in reversed(sens)]


def set_row_caps(net: QATNetwork, acc_bits: int) -> list[tuple[int, int]]:
    """Cap every affine row's positive and negative weight sums so that every op's worst
    case fits ``acc_bits``; → (cap, bias cap) per affine layer. The caps shrink each layer's
    current largest sum by ``2^(shrink·sensitivity)``, the smallest shrink that fits."""
    affine = net.affine_layers()
    start = [max(1, m.row_sum()) for m in affine]
    weight = _cap_sensitivity(net)

    def caps_for(shrink: float) -> list[int]:
        return [
            max(1, math.floor(a * 2.0 ** (-shrink * w))) for a, w in zip(start, weight, strict=True)
        ]

    floor_bits, _ = _worst_bits(net, [1] * len(affine))
    if floor_bits > acc_bits:
        raise QuantizationError(
            f"acc_bits={acc_bits} is below what this network can reach even with one unit of "
            f"weight per row ({floor_bits} bits at {net.config.in_bits}-bit inputs); raise "
            "--acc-bits or lower --input-bits"
        )
    lo, hi = 0.0, 64.0
    if _worst_bits(net, caps_for(0.0))[0] <= acc_bits:
        hi = 0.0
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _worst_bits(net, caps_for(mid))[0] <= acc_bits else (mid, hi)
    _, chosen = _worst_bits(net, caps_for(hi))
    for layer, (cap, bias_cap) in zip(affine, chosen, strict=True):
        layer.cap, layer.bias_cap = cap, bias_cap
    with torch.no_grad():  # the integers of the capped layers, for to_int_model / row_sum
        net.forward_int(torch.zeros(1, *net.in_shape))
    return chosen


class QATStep(TrainStep):
    """Cross-entropy on the fake-quantised network (the model ``nets.train`` trains is the
    :class:`QATNetwork`); after every epoch, the exported model's worst-case bits."""

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        if not isinstance(model, QATNetwork):
            raise QuantizationError("QATStep trains a QATNetwork; build one with qat.build")
        int_model = model.to_int_model()
        return {
            "max_accumulator_bits": float(int_model.max_accumulator_bits),
            "max_value_bits": float(int_model.max_value_bits),
        }


def fine_tune(
    model: nn.Module,
    train_set: Dataset,
    calibration: np.ndarray,
    config: QATConfig,
    train_cfg: TrainConfig,
    *,
    classes: tuple[str, ...] = (),
    device: str = "cpu",
) -> tuple[IntModel, dict[str, object]]:
    """Quantisation-aware fine-tuning of a copy of ``model`` through ``nets.train``'s loop
    → (its IntModel, observed on the calibration images; what the fine-tuning did)."""
    net = build(copy.deepcopy(model), calibration, config)
    result = train(net, train_set, train_cfg, step=QATStep(), device=device)
    int_model = net.cpu().to_int_model(classes=classes)
    int_model.observe(int_model.quantize_input(calibration))
    return int_model, {
        "epochs": train_cfg.epochs,
        "lr": train_cfg.lr,
        "seed": train_cfg.seed,
        "train_s": result.train_seconds,
        "history": result.history,
    }
