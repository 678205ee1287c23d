"""Turn a trained nets model into an IntModel: integer weights, tables, exact ranges.

Walks the model's layers in order, carrying the integer calibration activations along,
so every table is built from the accumulators the *integer* network really produces:

- Conv2d / Linear (with a following BatchNorm folded in): symmetric per-tensor weights
  ``w_int = rint(w / s_w)``, ``s_w = max|w| / (2^(weight_bits-1) - 1)``; bias in the
  accumulator's scale ``s_in · s_w``.
- ReLU / sigmoid / tanh: one lookup table that also requantises to ``act_bits``.
- Square: exact ``x²`` with no requantisation after it (``square="exact"``: the network
  stays a polynomial BFV can run without tables; ranges grow, so few bits fit in int64)
  or a table (``square="table"``: requantised like any activation).
- AvgPool: a sum, the 1/k² folded into the next scale; MaxPool: max of integers.
- A Conv/Linear fed by a raw accumulator gets an identity table (requantisation) first.

Refuses, naming the layer, any model whose worst-case partial sums could exceed int64.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from integer_nn import tables
from integer_nn.errors import QuantizationError
from integer_nn.gru import quantize_gru
from integer_nn.model import INT64_LIMIT, IntModel
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
from nets.layers import Square
from nets.models import GRUClassifier

TABLE_ACTIVATIONS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
}
SKIPPED = (nn.Dropout, nn.Identity)


def leaf_layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers in order, nested Sequentials expanded."""
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in leaf_layers(child)]
    return [model]


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor, bn: nn.Module):
    """W' = W·γ/σ, b' = (b - μ)·γ/σ + β (the BN in eval mode folded into the layer)."""
    gamma, beta = bn.weight.detach().double(), bn.bias.detach().double()
    inv = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * inv.reshape(shape), (bias - bn.running_mean.double()) * inv + beta


def _quantize_weights(weight: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    qmax = (1 << (bits - 1)) - 1
    peak = float(np.abs(weight).max())
    scale = peak / qmax if peak > 0 else 1.0
    return np.rint(weight / scale).astype(np.int64), scale


class _Builder:
    """Carries the integer calibration tensor, its scale and whether it needs requantising."""

    def __init__(
        self, calib_int: np.ndarray, in_scale: float, act_bits: int, max_entries: int
    ) -> None:
        self.ops: list[IntOp] = []
        self.x = calib_int
        self.scale = in_scale
        self.raw = False  # True while x is an accumulator that no table has requantised
        self.act_bits = act_bits
        self.max_entries = max_entries

    def push(self, op: IntOp) -> None:
        self.ops.append(op)
        self.x = op.forward(self.x)

    def table(self, name: str) -> None:
        lo, hi = int(self.x.min()), int(self.x.max())
        shift, entries = tables.plan_domain(lo, hi, self.max_entries)
        real = tables.function(name)(tables.bucket_centres(lo, shift, entries) * self.scale)
        out = tables.output_range(real, self.act_bits)
        shift, values = tables.build(
            name, lo, hi, in_scale=self.scale, out=out, max_entries=self.max_entries
        )
        self.push(
            IntTable(
                values=values,
                function=name,
                lo=lo,
                shift=shift,
                in_scale=self.scale,
                out_scale=out.scale,
            )
        )
        self.scale, self.raw = out.scale, False

    def affine(self, op: IntOp, w_scale: float) -> None:
        """Push a Conv/Linear; the caller has requantised a raw input first."""
        self.push(op)
        self.scale *= w_scale
        self.raw = True


def quantize(
    model: nn.Module,
    calibration: np.ndarray,
    *,
    weight_bits: int = 8,
    act_bits: int = 8,
    square: Literal["exact", "table"] = "exact",
    max_table_entries: int = tables.DEFAULT_MAX_ENTRIES,
    classes: tuple[str, ...] = (),
) -> IntModel:
    """Quantise ``model`` using ``calibration`` images (float32 NCHW in [0, 1])."""
    for name, bits in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if not 2 <= bits <= 16:
            raise QuantizationError(f"{name}={bits}: choose between 2 and 16")
    if square not in ("exact", "table"):
        raise QuantizationError(f"square={square!r}: use 'exact' or 'table'")
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise QuantizationError(
            f"calibration must be non-empty (N, C, H, W), got {calibration.shape}"
        )
    in_max = (1 << act_bits) - 1
    calib_int = np.rint(np.clip(calibration, 0, 1) * in_max).astype(np.int64)
    b = _Builder(calib_int, 1.0 / in_max, act_bits, max_table_entries)
    layers = leaf_layers(model.eval())

    i = 0
    with torch.no_grad():
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            where = f"layer {i} ({type(layer).__name__})"
            if isinstance(layer, nn.Conv2d | nn.Linear):
                weight = layer.weight.detach().double()
                bias = (
                    layer.bias.detach().double()
                    if layer.bias is not None
                    else torch.zeros(weight.shape[0], dtype=torch.float64)
                )
                if isinstance(nxt, nn.BatchNorm2d | nn.BatchNorm1d):
                    weight, bias = fold_batchnorm(weight, bias, nxt)
                    i += 1
                w_int, w_scale = _quantize_weights(weight.numpy(), weight_bits)
                if b.raw:
                    b.table("identity")
                b_real = np.rint(bias.numpy() / (b.scale * w_scale))
                if not np.all(np.abs(b_real) < INT64_LIMIT):
                    raise QuantizationError(
                        f"{where}: its bias in the accumulator scale {b.scale * w_scale:.3g} "
                        "is past int64; lower weight_bits / act_bits, or quantise x² as a "
                        "table (square='table')"
                    )
                b_int = b_real.astype(np.int64)
                if isinstance(layer, nn.Conv2d):
                    check_conv(layer, where)
                    op: IntOp = IntConv2d(
                        weight=w_int, bias=b_int, stride=layer.stride[0], padding=layer.padding[0]
                    )
                else:
                    op = IntLinear(weight=w_int, bias=b_int)
                b.affine(op, w_scale)
            elif type(layer) in TABLE_ACTIVATIONS:
                b.table(TABLE_ACTIVATIONS[type(layer)])
            elif isinstance(layer, Square):
                if square == "table":
                    b.table("square")
                else:  # stays a polynomial: no requantising table follows it
                    b.push(IntSquare())
                    b.scale *= b.scale
                    b.raw = False
            elif isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
                k, s = pool_geometry(layer, where)
                if isinstance(layer, nn.MaxPool2d):
                    b.push(IntMaxPool2d(kernel=k, stride=s))
                else:
                    b.push(IntSumPool2d(kernel=k, stride=s))
                    b.scale /= k * k
            elif isinstance(layer, nn.Flatten):
                if layer.start_dim != 1 or layer.end_dim != -1:
                    raise QuantizationError(f"{where}: only Flatten(start_dim=1) is supported")
                b.push(IntFlatten())
            elif isinstance(layer, GRUClassifier):
                gru, fc, fc_scale = quantize_gru(
                    layer,
                    b.scale,
                    weight_bits=weight_bits,
                    act_bits=act_bits,
                    max_entries=max_table_entries,
                )
                b.push(gru)
                b.scale, b.raw = gru.h_scale, False
                b.affine(fc, fc_scale)
            elif isinstance(layer, SKIPPED):
                pass
            else:
                raise QuantizationError(
                    f"{where} is not supported by integer_nn; supported: Conv2d, Linear, "
                    "BatchNorm, ReLU, Sigmoid, Tanh, Square, MaxPool2d, AvgPool2d, Flatten, GRU"
                )
            i += 1
    int_model = IntModel(
        ops=b.ops,
        in_shape=tuple(calibration.shape[1:]),
        input_bits=act_bits,
        output_scale=b.scale,
        classes=tuple(classes),
        meta={
            "weight_bits": weight_bits,
            "act_bits": act_bits,
            "square": square,
            "calibration_images": len(calibration),
        },
    )
    int_model.observe(calib_int)
    return int_model


def check_conv(conv: nn.Conv2d, where: str) -> None:
    ok = (
        conv.groups == 1
        and conv.dilation == (1, 1)
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and conv.padding[0] == conv.padding[1]
        and conv.stride[0] == conv.stride[1]
        and conv.kernel_size[0] == conv.kernel_size[1]
    )
    if not ok:
        raise QuantizationError(
            f"{where}: only square kernels, equal stride/padding, no groups "
            "or dilation are supported"
        )


def pool_geometry(pool: nn.Module, where: str) -> tuple[int, int]:
    def one(v):
        return v if isinstance(v, int) else v[0] if v[0] == v[1] else None

    k, s, p = one(pool.kernel_size), one(pool.stride or pool.kernel_size), one(pool.padding)
    if k is None or s is None or p != 0 or getattr(pool, "ceil_mode", False):
        raise QuantizationError(f"{where}: only square, unpadded, floor-mode pooling is supported")
    if getattr(pool, "dilation", 1) not in (1, (1, 1)):
        raise QuantizationError(f"{where}: dilated pooling is not supported")
    return k, s
