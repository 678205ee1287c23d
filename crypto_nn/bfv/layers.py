"""The integer network as BFV layers: affine chains, x², and tables as polynomials.

``layers_from_int_model`` reads an IntModel's ops: every chain of linear ops becomes one
integer affine map (probed with unit vectors, so padding and strides are whatever
integer_nn does), x² stays x², and — with ``tables="poly"`` — an elementwise table becomes
its interpolating polynomial over its input's worst-case interval. ``fold_constants``
moves outputs no input reaches into whatever reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crypto_nn.bfv.tables import IntPolyTable
from crypto_nn.errors import CompileError
from integer_nn.model import IntModel
from integer_nn.ops import Interval

LINEAR_KINDS = ("conv2d", "linear", "sumpool2d", "flatten")


@dataclass
class IntAffine:
    """y = W x + b over the integers (a chain of the IntModel's linear ops)."""

    weight: np.ndarray  # int64 (out, in)
    bias: np.ndarray  # int64 (out,)
    kind = "affine"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    def describe(self) -> dict[str, object]:
        out, n_in = self.weight.shape
        return {
            "kind": self.kind,
            "in": n_in,
            "out": out,
            "terms": int(np.count_nonzero(self.weight)),
        }


@dataclass
class IntSquareLayer:
    kind = "square"

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * x


def _probe(ops, in_shape: tuple[int, ...]) -> IntAffine:
    n_in = int(np.prod(in_shape))
    zero = np.zeros((1, *in_shape), np.int64)
    basis = np.eye(n_in, dtype=np.int64).reshape(n_in, *in_shape)
    for op in ops:
        zero, basis = op.forward(zero), op.forward(basis)
    bias = zero.reshape(-1)
    return IntAffine(weight=(basis.reshape(n_in, -1) - bias).T.copy(), bias=bias.copy())


MAX_TABLE_DOMAIN = 4096  # a table becomes a degree |D| − 1 polynomial; past this, refused


def layers_from_int_model(model: IntModel, tables: str = "refuse") -> list:
    inputs = [Interval(0, model.input_max, model.input_max)]
    inputs += [stat.worst for stat in model.stats[:-1]]
    return layers_from_ops(model.ops, tuple(model.in_shape), tables=tables, in_intervals=inputs)


def _poly_table(op, interval: Interval, index: int) -> IntPolyTable:
    domain = interval.hi - interval.lo + 1
    if domain > MAX_TABLE_DOMAIN:
        raise CompileError(
            f"IntModel op {index} ({op.describe()}) reads accumulators in [{interval.lo}, "
            f"{interval.hi}]: a {domain}-point table is a degree-{domain - 1} polynomial, past "
            f"the {MAX_TABLE_DOMAIN} allowed — quantise with fewer bits, or use client-aided "
            "tables"
        )
    xs = np.arange(interval.lo, interval.hi + 1, dtype=np.int64)
    return IntPolyTable(lo=interval.lo, values=op.forward(xs), source=op.describe())


def layers_from_ops(
    ops: list,
    in_shape: tuple[int, ...],
    first_index: int = 0,
    *,
    tables: str = "refuse",
    in_intervals: list[Interval] | None = None,
) -> list:
    """Affine chains and x² from integer ops; with ``tables="poly"`` an elementwise table
    becomes its interpolating polynomial over its input's worst-case interval
    (``in_intervals[i]``); any other op is refused (its index named)."""
    layers: list[IntAffine | IntSquareLayer] = []
    pending: list = []
    shape: tuple[int, ...] = in_shape
    pending_shape = shape
    probe = np.zeros((1, *shape), np.int64)
    for i, op in enumerate(ops, start=first_index):
        if op.kind in LINEAR_KINDS:
            if not pending:
                pending_shape = tuple(probe.shape[1:])
            pending.append(op)
        elif op.kind == "square":
            if pending:
                layers.append(_probe(pending, pending_shape))
                pending = []
            layers.append(IntSquareLayer())
        elif op.kind == "table" and tables == "poly":
            if pending:
                layers.append(_probe(pending, pending_shape))
                pending = []
            layers.append(_poly_table(op, in_intervals[i - first_index], i))
        else:
            raise CompileError(
                f"IntModel op {i} ({op.describe()}) is not a polynomial: the non-interactive BFV "
                "plan takes affine layers and x² only (quantise with square='exact')"
            )
        probe = op.forward(probe)
    if pending:
        layers.append(_probe(pending, pending_shape))
    return layers


def fold_constants(layers: list[IntAffine | IntSquareLayer]) -> dict[int, int]:
    """Fold outputs that no input reaches into whatever reads them; → the constant logits.

    A server without an encryption key cannot make a ciphertext of a constant (SEAL refuses
    the "transparent" result of x - x), so a constant becomes part of the next layer's bias
    (squared first across an x²), and constant logits travel in the plan, not as ciphertexts.
    """
    const: dict[int, int] = {}
    for layer in layers:
        if isinstance(layer, IntSquareLayer):
            const = {j: v * v for j, v in const.items()}
            continue
        if isinstance(layer, IntPolyTable):
            const = {j: int(layer.forward(np.array(v))) for j, v in const.items()}
            continue
        for j, v in const.items():
            layer.bias = layer.bias + layer.weight[:, j] * v
            layer.weight[:, j] = 0
        const = {j: int(layer.bias[j]) for j in range(len(layer.bias)) if not layer.weight[j].any()}
    return const
