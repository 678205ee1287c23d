"""The layers of a homomorphic plan, and how a torch model becomes them.

Every linear piece of the model (Conv2d, Linear, AvgPool, Flatten and their chains) is
one :class:`Affine` map on the flattened NCHW vector; its matrix is read off the torch
layers by probing them with the unit vectors, so a convolution's padding and stride are
whatever torch does. Activations are :class:`Square` (exact) or :class:`Poly`, a
least-squares polynomial fitted over the activation's calibrated input range.
"""

from __future__ import annotations

import math
from copy import deepcopy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from crypto_nn.errors import CompileError
from nets.layers import Square as TorchSquare

POLY_TARGETS = {
    nn.ReLU: ("relu", lambda x: np.maximum(x, 0.0)),
    nn.Sigmoid: ("sigmoid", expit),
    nn.Tanh: ("tanh", np.tanh),
}
# BatchNorm in eval mode is affine, so it joins the chain it follows.
_LINEAR = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d)
_SKIPPED = (nn.Dropout, nn.Identity)


@dataclass
class Affine:
    """y = W x + b on flattened vectors; W is mostly zeros for convolutions."""

    weight: np.ndarray  # float64 (out, in)
    bias: np.ndarray  # float64 (out,)
    source: str  # which torch layers it came from

    kind = "affine"
    depth = 1  # one plaintext multiplication, one rescale

    def rows(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per output: (input indices with a non-zero weight, those weights)."""
        return [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in self.weight]

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source": self.source,
            "in": self.weight.shape[1],
            "out": self.weight.shape[0],
            "terms": int(np.count_nonzero(self.weight)),
        }


@dataclass
class Square:
    """x ↦ x², exact under CKKS (one ciphertext multiplication)."""

    kind = "square"
    depth = 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * x

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind}


@dataclass
class Poly:
    """Σ c_k x^k fitted to ``target`` on [lo, hi]; ``fit_error`` is the max error there."""

    coeffs: list[float]  # power basis, c_0 first
    target: str
    lo: float
    hi: float
    fit_error: float

    kind = "poly"

    @property
    def degree(self) -> int:
        return len(self.coeffs) - 1

    @property
    def depth(self) -> int:
        """Powers by repeated squaring (⌈log2 d⌉ levels), then one for the coefficients."""
        return max(1, math.ceil(math.log2(self.degree))) + 1 if self.degree > 1 else 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.polynomial.polynomial.polyval(x, self.coeffs)

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "target": self.target,
            "degree": self.degree,
            "range": [self.lo, self.hi],
            "fit_error": self.fit_error,
            "coeffs": self.coeffs,
        }


Layer = Affine | Square | Poly


def fit_poly(name: str, fn, lo: float, hi: float, degree: int) -> Poly:
    """Least-squares fit of ``fn`` on 2,001 points of [lo, hi] (numpy's Polynomial.fit)."""
    if degree < 1:
        raise CompileError(f"polynomial degree must be ≥ 1, got {degree}")
    if not hi > lo:
        hi = lo + 1.0
    xs = np.linspace(lo, hi, 2001)
    fitted = np.polynomial.Polynomial.fit(xs, fn(xs), degree).convert()
    coeffs = [float(c) for c in fitted.coef] + [0.0] * (degree + 1 - len(fitted.coef))
    err = float(np.max(np.abs(fitted(xs) - fn(xs))))
    return Poly(coeffs=coeffs, target=name, lo=float(lo), hi=float(hi), fit_error=err)


def _probe_affine(mods: list[nn.Module], in_shape: tuple[int, ...]) -> Affine:
    """The matrix of a chain of linear torch layers, read off with unit vectors."""
    seq = nn.Sequential(*mods).double().eval()
    n_in = int(np.prod(in_shape))
    if n_in > 20_000:
        raise CompileError(f"a linear layer with {n_in} inputs is too large for HE packing here")
    with torch.no_grad():
        bias = seq(torch.zeros(1, *in_shape, dtype=torch.float64)).reshape(-1)
        basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
        cols = seq(basis).reshape(n_in, -1) - bias  # (in, out)
    names = "+".join(type(m).__name__ for m in mods)
    return Affine(weight=cols.T.numpy().copy(), bias=bias.numpy().copy(), source=names)


def from_torch(model: nn.Module, calibration: np.ndarray, *, poly_degree: int = 2) -> list[Layer]:
    """Plan layers for a Sequential model; activations other than x² are fitted polynomials
    over the range their inputs take on ``calibration`` (plus 10 % on each side)."""
    if len(calibration) == 0:
        raise CompileError("calibration needs at least one image")
    model = deepcopy(model).double().eval()
    mods = [m for m in (model if isinstance(model, nn.Sequential) else [model])]
    layers: list[Layer] = []
    pending: list[nn.Module] = []
    x = torch.from_numpy(np.asarray(calibration, dtype=np.float64))
    shape = tuple(x.shape[1:])
    pending_in_shape = shape

    def flush() -> None:
        nonlocal pending, pending_in_shape
        if pending:
            layers.append(_probe_affine(pending, pending_in_shape))
            pending = []

    with torch.no_grad():
        for i, m in enumerate(mods):
            if isinstance(m, _SKIPPED):
                continue
            if isinstance(m, _LINEAR):
                if not pending:
                    pending_in_shape = tuple(x.shape[1:])
                pending.append(m)
            elif isinstance(m, TorchSquare):
                flush()
                layers.append(Square())
            elif type(m) in POLY_TARGETS:
                flush()
                name, fn = POLY_TARGETS[type(m)]
                lo, hi = float(x.min()), float(x.max())
                pad = 0.1 * (hi - lo)
                layers.append(fit_poly(name, fn, lo - pad, hi + pad, poly_degree))
            else:
                raise CompileError(
                    f"layer {i} ({type(m).__name__}) has no homomorphic form; supported: Conv2d, "
                    "Linear, AvgPool2d, Flatten, Square, and ReLU/Sigmoid/Tanh as polynomials"
                )
            x = m(x)
    flush()
    if not layers or not isinstance(layers[-1], Affine):
        raise CompileError("the model must end with a linear layer (the logits)")
    return layers
