"""Lookup tables as polynomials over Z_t: non-interactive BFV activations.

A table over a small integer domain D = [lo, lo + |D|) is, modulo a prime t ≥ |D|, the
unique polynomial of degree < |D| through its |D| points (Lagrange; built here by Newton's
divided differences over Z_t). Under BFV that polynomial is exact: every slot of the
result equals table(x) mod t, and the CRT across moduli recovers it — so ReLU, sigmoid or
any requantisation table runs without the client.

The price is degree |D| − 1. Evaluation is baby-step/giant-step (Paterson–Stockmeyer
style): baby powers x^1…x^(k−1), giant powers y^j of y = x^k, and
p(x) = Σ_j (Σ_i c_(jk+i)·x^i)·y^j — about k + 2m ciphertext products for k·m ≥ |D|, and
depth ⌈log2 k⌉ + ⌈log2 m⌉ + 1. Written here because no library offers BFV polynomial
evaluation over a tensor of ciphertexts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import tenseal.sealapi as seal


@dataclass
class IntPolyTable:
    """A table over [lo, lo + len(values)) — evaluated as its interpolating polynomial."""

    lo: int
    values: np.ndarray  # int64: table output for lo, lo + 1, …
    source: str = "table"
    kind = "poly_table"
    _coeffs: dict[int, list[int]] = field(default_factory=dict, repr=False)

    @property
    def domain(self) -> int:
        return len(self.values)

    @property
    def degree(self) -> int:
        return self.domain - 1

    @property
    def baby(self) -> int:
        """k: the power of two nearest √|D| (baby steps x^0…x^(k−1))."""
        return 1 << max(0, round(math.log2(math.sqrt(self.domain))))

    @property
    def giants(self) -> int:
        return -(-self.domain // self.baby)

    @property
    def depth(self) -> int:
        return (self.baby - 1).bit_length() + (self.giants - 1).bit_length() + 1

    @property
    def products(self) -> int:
        """Ciphertext products per value: baby powers, giant powers, one per giant term."""
        return max(0, self.baby - 2) + max(0, self.giants - 1) + max(0, self.giants - 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        idx = np.asarray(x, dtype=np.int64) - self.lo
        if idx.size and (idx.min() < 0 or idx.max() >= self.domain):
            raise ValueError(f"table input outside its domain [{self.lo}, {self.lo + self.degree}]")
        return self.values[idx]

    def coeffs(self, t: int) -> list[int]:
        """Power-basis coefficients mod t of the interpolating polynomial (cached per t)."""
        if t not in self._coeffs:
            if t < self.domain:
                raise ValueError(f"plain modulus {t} is smaller than the table's domain")
            xs = [(self.lo + i) % t for i in range(self.domain)]
            self._coeffs[t] = interpolate_mod(xs, [int(v) % t for v in self.values], t)
        return self._coeffs[t]

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source": self.source,
            "domain": [self.lo, self.lo + self.degree],
            "degree": self.degree,
            "depth": self.depth,
            "products_per_value": self.products,
        }


def interpolate_mod(xs: list[int], ys: list[int], t: int) -> list[int]:
    """Coefficients (c_0 first) mod prime t of the polynomial through (xs, ys); O(n²)."""
    n = len(xs)
    coef = list(ys)  # Newton divided differences, in place
    for j in range(1, n):
        for i in range(n - 1, j - 1, -1):
            coef[i] = (coef[i] - coef[i - 1]) * pow(xs[i] - xs[i - j], -1, t) % t
    poly = [0] * n  # Newton form → power basis, Horner from the top
    for i in range(n - 1, -1, -1):
        # poly = poly·(x − xs[i]) + coef[i]
        for d in range(n - 1, 0, -1):
            poly[d] = (poly[d - 1] - xs[i] * poly[d]) % t
        poly[0] = (coef[i] - xs[i] * poly[0]) % t
    return poly


def eval_poly_plain(coeffs: list[int], x: int, t: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % t
    return acc


class PolyEvaluator:
    """p(x) over BFV ciphertexts of one context (evaluator, relinearisation keys, t)."""

    def __init__(self, evaluator: seal.Evaluator, relin: seal.RelinKeys, t: int) -> None:
        self.ev, self.relin, self.t = evaluator, relin, t

    def _mul(self, a: seal.Ciphertext, b: seal.Ciphertext) -> seal.Ciphertext:
        out = seal.Ciphertext()
        if a is b:
            self.ev.square(a, out)
        else:
            self.ev.multiply(a, b, out)
        self.ev.relinearize_inplace(out, self.relin)
        return out

    def powers(self, x: seal.Ciphertext, top: int) -> dict[int, seal.Ciphertext]:
        """x^1…x^top, each at depth ⌈log2 e⌉ (x^e = x^(2^m)·x^(e − 2^m))."""
        out = {1: x}
        for e in range(2, top + 1):
            high = 1 << (e.bit_length() - 1)
            out[e] = (
                self._mul(out[e // 2], out[e // 2])
                if high == e
                else self._mul(out[high], out[e - high])
            )
        return out

    def _scaled(self, ct: seal.Ciphertext, c: int) -> seal.Ciphertext | None:
        if c % self.t == 0:
            return None
        out = seal.Ciphertext()
        self.ev.multiply_plain(ct, seal.Plaintext(format(c % self.t, "x")), out)
        return out

    def run(self, x: seal.Ciphertext, table: IntPolyTable) -> seal.Ciphertext:
        coeffs = table.coeffs(self.t)
        k, m = table.baby, table.giants
        baby = self.powers(x, k - 1) if k > 1 else {}
        y = self._mul(baby[k // 2], baby[k // 2]) if k > 1 else x
        giant = self.powers(y, m - 1) if m > 1 else {}
        acc = None
        for j in range(m):
            block = coeffs[j * k : (j + 1) * k]
            inner = None
            for i, c in enumerate(block[1:], start=1):
                term = self._scaled(baby[i], c)
                if term is not None:
                    inner = term if inner is None else self._add(inner, term)
            const = block[0] % self.t if block else 0
            if j == 0:  # c_0 is added last, as a plaintext
                term = inner
            elif inner is None:
                term = self._scaled(giant[j], const)
            else:
                if const:
                    self.ev.add_plain_inplace(inner, seal.Plaintext(format(const, "x")))
                term = self._mul(inner, giant[j])
            if term is not None:
                acc = term if acc is None else self._add(acc, term)
        if acc is None:
            raise ValueError("the table is constant on its domain: fold it as a constant")
        if coeffs[0] % self.t:
            self.ev.add_plain_inplace(acc, seal.Plaintext(format(coeffs[0] % self.t, "x")))
        return acc

    def _add(self, a: seal.Ciphertext, b: seal.Ciphertext) -> seal.Ciphertext:
        self.ev.add_inplace(a, b)
        return a
