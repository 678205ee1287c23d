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
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from integer_nn import tables
from integer_nn.errors import QuantizationError
from integer_nn.fake_quant import DTYPE, Bounds, QAffine, QFlatten, QPool, QSquare, QTable
from integer_nn.model import IntModel
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

BIAS_SHARE = 8  # a capped row's |bias| ≤ (its worst-case weighted sum) / BIAS_SHARE


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
