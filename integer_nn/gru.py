"""Integer GRU: the nets GRU classifier (one image row per step) with table gates.

PyTorch's cell, r/z/n gates in that order::

    r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      h' = (1 - z) ⊙ n + z ⊙ h

Integers: x at the input scale s_x, h in [-Q_h, Q_h] at s_h = 1/Q_h, gates r, z in
[0, Q_g] at 1/Q_g. Both products W_i·x and W_h·h are put on one accumulator scale s_a
(the coarser of the two natural ones) so they add without rescaling. Then

    n_acc  = Q_g·(W_in x + b_in) + r·(W_hn h + b_hn)      at s_a / Q_g  → tanh table
    h'_acc = (Q_g - z)·n + z·h                            at s_h / Q_g  → identity table

Gate tables span the range where the rounded function still changes (|x| ≤ 8 for σ,
≤ 4 for tanh, in real units); beyond that they saturate, so no calibration is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from integer_nn import kernels, tables
from integer_nn.ops import Interval, IntLinear, IntOp, register

SIGMOID_SPAN = 8.0  # σ(±8) is within 1/2981 of 0 or 1: saturated at 8-bit gates
TANH_SPAN = 4.0  # tanh(±4) is within 1/1490 of ±1


@register
@dataclass
class IntGRU(IntOp):
    kind: ClassVar[str] = "gru"
    array_names: ClassVar[tuple[str, ...]] = (
        "w_ih",
        "w_hh",
        "b_rz",
        "b_in",
        "b_hn",
        "sig_values",
        "tanh_values",
        "id_values",
    )
    w_ih: np.ndarray  # int64 (3H, I), scale s_a / s_x
    w_hh: np.ndarray  # int64 (3H, H), scale s_a / s_h
    b_rz: np.ndarray  # int64 (2H,), b_i + b_h of r and z at s_a
    b_in: np.ndarray  # int64 (H,)
    b_hn: np.ndarray  # int64 (H,)
    sig_values: np.ndarray  # σ table, accumulator → gate in [0, gate_max]
    tanh_values: np.ndarray  # tanh table, n_acc → n in [-h_max, h_max]
    id_values: np.ndarray  # identity table, h'_acc → h in [-h_max, h_max]
    sig_lo: int = 0
    sig_shift: int = 0
    tanh_lo: int = 0
    tanh_shift: int = 0
    id_lo: int = 0
    id_shift: int = 0
    gate_max: int = 255
    h_max: int = 127

    def __post_init__(self) -> None:
        zeros = np.zeros(self.w_ih.shape[0], np.int64)
        self._ih = kernels.prepare(self.w_ih, zeros, ndim=2)
        self._hh = kernels.prepare(self.w_hh, zeros, ndim=2)

    @property
    def hidden(self) -> int:
        return self.w_hh.shape[1]

    @property
    def h_scale(self) -> float:
        return 1.0 / self.h_max

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, c, rows, w = x.shape
        steps = x.transpose(0, 2, 1, 3).reshape(n * rows, c * w)  # one row per time step
        hid = self.hidden
        a_all = kernels.linear(steps, self._ih).reshape(n, rows, 3 * hid)
        h = np.zeros((n, hid), np.int64)
        for t in range(rows):
            a = a_all[:, t]
            hh = kernels.linear(h, self._hh)
            rz = kernels.table_lookup(
                a[:, : 2 * hid] + hh[:, : 2 * hid] + self.b_rz,
                self.sig_values,
                lo=self.sig_lo,
                shift=self.sig_shift,
            )
            r, z = rz[:, :hid], rz[:, hid:]
            n_acc = self.gate_max * (a[:, 2 * hid :] + self.b_in) + r * (
                hh[:, 2 * hid :] + self.b_hn
            )
            n_q = kernels.table_lookup(
                n_acc, self.tanh_values, lo=self.tanh_lo, shift=self.tanh_shift
            )
            h_acc = (self.gate_max - z) * n_q + z * h
            h = kernels.table_lookup(h_acc, self.id_values, lo=self.id_lo, shift=self.id_shift)
        return h

    def bounds(self, inp: Interval) -> Interval:
        x_mag = max(abs(inp.lo), abs(inp.hi))
        a = np.abs(self.w_ih).sum(1).astype(object) * x_mag
        hh = np.abs(self.w_hh).sum(1).astype(object) * self.h_max
        hid = self.hidden
        gates = max(int(v) for v in a[: 2 * hid] + hh[: 2 * hid] + np.abs(self.b_rz).astype(object))
        n_part = self.gate_max * (
            a[2 * hid :] + np.abs(self.b_in).astype(object)
        ) + self.gate_max * (hh[2 * hid :] + np.abs(self.b_hn).astype(object))
        peak = max(gates, max(int(v) for v in n_part), self.gate_max * self.h_max * 2)
        return Interval(-self.h_max, self.h_max, peak)

    def params(self) -> dict[str, object]:
        return {
            k: getattr(self, k)
            for k in (
                "sig_lo",
                "sig_shift",
                "tanh_lo",
                "tanh_shift",
                "id_lo",
                "id_shift",
                "gate_max",
                "h_max",
            )
        }

    def describe(self) -> str:
        return f"gru {self.w_ih.shape[1]}→{self.hidden} (σ, tanh, requant tables)"


def _saturating_table(
    name: str, span: float, in_scale: float, out: tables.OutputRange, max_entries: int
) -> tuple[int, int, np.ndarray]:
    half = math.ceil(span / in_scale)
    shift, values = tables.build(
        name, -half, half, in_scale=in_scale, out=out, max_entries=max_entries
    )
    return -half, shift, values


def quantize_gru(
    module, x_scale: float, *, weight_bits: int, act_bits: int, max_entries: int
) -> tuple[IntGRU, IntLinear, float]:
    """→ (IntGRU, IntLinear for the classifier head, the head's weight scale)."""
    gru = module.gru
    w_ih = gru.weight_ih_l0.detach().double().numpy()
    w_hh = gru.weight_hh_l0.detach().double().numpy()
    b_ih = gru.bias_ih_l0.detach().double().numpy()
    b_hh = gru.bias_hh_l0.detach().double().numpy()
    hid = w_hh.shape[1]
    qw = (1 << (weight_bits - 1)) - 1
    gate_max, h_max = (1 << act_bits) - 1, (1 << (act_bits - 1)) - 1
    h_scale = 1.0 / h_max
    s_a = max(np.abs(w_ih).max() * x_scale, np.abs(w_hh).max() * h_scale) / qw
    sig_lo, sig_shift, sig = _saturating_table(
        "sigmoid", SIGMOID_SPAN, s_a, tables.OutputRange(0, gate_max, 1.0 / gate_max), max_entries
    )
    h_out = tables.OutputRange(-h_max, h_max, h_scale)
    tanh_lo, tanh_shift, tanh = _saturating_table(
        "tanh", TANH_SPAN, s_a / gate_max, h_out, max_entries
    )
    id_half = h_max * gate_max
    id_shift, ident = tables.build(
        "identity",
        -id_half,
        id_half,
        in_scale=h_scale / gate_max,
        out=h_out,
        max_entries=max_entries,
    )
    int_gru = IntGRU(
        w_ih=np.rint(w_ih * x_scale / s_a).astype(np.int64),
        w_hh=np.rint(w_hh * h_scale / s_a).astype(np.int64),
        b_rz=np.rint((b_ih[: 2 * hid] + b_hh[: 2 * hid]) / s_a).astype(np.int64),
        b_in=np.rint(b_ih[2 * hid :] / s_a).astype(np.int64),
        b_hn=np.rint(b_hh[2 * hid :] / s_a).astype(np.int64),
        sig_values=sig,
        tanh_values=tanh,
        id_values=ident,
        sig_lo=sig_lo,
        sig_shift=sig_shift,
        tanh_lo=tanh_lo,
        tanh_shift=tanh_shift,
        id_lo=-id_half,
        id_shift=id_shift,
        gate_max=gate_max,
        h_max=h_max,
    )
    fc_w = module.fc.weight.detach().double().numpy()
    fc_b = module.fc.bias.detach().double().numpy()
    peak = float(np.abs(fc_w).max())
    fc_scale = peak / qw if peak > 0 else 1.0
    head = IntLinear(
        weight=np.rint(fc_w / fc_scale).astype(np.int64),
        bias=np.rint(fc_b / (h_scale * fc_scale)).astype(np.int64),
    )
    return int_gru, head, fc_scale
