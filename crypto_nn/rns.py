"""A batch-packed affine layer as one integer matrix product over the ciphertexts' RNS limbs.

In batch packing every weight is the same scalar in every slot, and a scalar plaintext is
the constant ``round(w·Δ) mod q_j`` in every coefficient of limb j (CKKS, NTT form too) or
the constant polynomial w (BFV). So ``Σ_i w_ij · x_i`` over ciphertexts is, for every limb
and both polynomials, ``Y = W̃ · X (mod q_j)`` with X the (inputs × N) residues — what SEAL
computes term by term with ``multiply_plain`` + ``add_inplace``, bit for bit, here in one
pass (numba, both cores).

Exactness without 128-bit integers: a residue x < 2^61 is cut into ``slices`` pieces of
``bits`` bits; each piece's weighted sum stays below 2^62 in int64 (``bits`` is chosen from
the layer's largest row sum Σ|w̃|), each is reduced mod q, and the pieces are recombined
by Horner's rule, ``y·2^bits mod q`` with a float64 quotient estimate (exact up to ±1,
fixed by one comparison: the quotient is < 2^bits ≤ 2^30, well inside float64's 53 bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

MAX_SUM_BITS = 62  # |Σ w·piece| stays below 2^62: int64 with a bit to spare


@dataclass(frozen=True)
class SparseWeights:
    """A layer's integer weights as CSR rows (int64, signed)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_in: int

    @classmethod
    def from_dense(cls, weight: np.ndarray) -> SparseWeights:
        weight = np.asarray(weight, dtype=np.int64)
        rows, cols = np.nonzero(weight)
        indptr = np.zeros(weight.shape[0] + 1, np.int64)
        np.add.at(indptr, rows + 1, 1)
        return cls(np.cumsum(indptr), cols.astype(np.int64), weight[rows, cols], weight.shape[1])

    @property
    def n_out(self) -> int:
        return len(self.indptr) - 1

    def max_row_sum(self) -> int:
        """max_j Σ_i |w̃_ij| (Python int: no overflow in the bound itself)."""
        sums = np.zeros(self.n_out, dtype=object)
        np.add.at(sums, np.repeat(np.arange(self.n_out), np.diff(self.indptr)),
                  np.abs(self.values).astype(object))  # fmt: skip
        return int(max(sums, default=0))


def slicing(max_row_sum: int, modulus_bits: int) -> tuple[int, int] | None:
    """(bits per piece, pieces) keeping every partial sum below 2^62, or None when even
    one-bit pieces would not (weights too large: use the per-term route)."""
    bits = min(30, MAX_SUM_BITS - max(1, max_row_sum).bit_length())
    if bits < 1:
        return None
    return bits, -(-modulus_bits // bits)


@numba.njit(cache=True, inline="always")
def _reduce(a: np.int64, q: np.int64) -> np.int64:
    """a mod q in [0, q) for |a| < 2^62, q < 2^61: float quotient, one fix-up each way."""
    quo = np.int64(np.floor(np.float64(a) / np.float64(q)))
    r = a - quo * q
    while r < 0:
        r += q
    while r >= q:
        r -= q
    return r


@numba.njit(cache=True, inline="always")
def _shift_mod(y: np.int64, bits: np.int64, q: np.int64) -> np.int64:
    """y·2^bits mod q for 0 ≤ y < q < 2^61, bits ≤ 30 (wrapping uint64 arithmetic: the
    true remainder lies in (−q, 2q), which int64 holds)."""
    quo = np.uint64(np.floor(np.float64(y) * np.float64(1 << bits) / np.float64(q)))
    r = np.int64((np.uint64(y) << np.uint64(bits)) - quo * np.uint64(q))
    while r < 0:
        r += q
    while r >= q:
        r -= q
    return r


@numba.njit(parallel=True, cache=True)
def _split(x, bits, pieces, out):
    """x uint64 (n, rows, N) → out int32 (pieces, n, rows, N): the ``bits``-bit pieces."""
    mask = np.uint64((1 << bits) - 1)
    n, rows, width = x.shape
    for task in numba.prange(n * rows):
        i, r = task // rows, task % rows
        for s in range(pieces):
            shift = np.uint64(s * bits)
            for c in range(width):
                out[s, i, r, c] = np.int32((x[i, r, c] >> shift) & mask)


BLOCK = 1024  # coefficients per pass: the accumulators stay in L1


@numba.njit(parallel=True, cache=True)
def _affine(xs, moduli, indptr, indices, values, bits, out):
    pieces, _, rows, n = xs.shape
    n_out = len(indptr) - 1
    for task in numba.prange(n_out * rows):
        j, r = task // rows, task % rows
        q = np.int64(moduli[r])
        acc = np.empty((pieces, BLOCK), np.int64)
        for start in range(0, n, BLOCK):
            width = min(BLOCK, n - start)
            acc[:, :width] = 0
            for s in range(pieces):
                for t in range(indptr[j], indptr[j + 1]):
                    w = values[t]
                    piece = xs[s, indices[t], r, start : start + width]
                    for c in range(width):
                        acc[s, c] += w * np.int64(piece[c])
            for c in range(width):
                y = _reduce(acc[pieces - 1, c], q)
                for s in range(pieces - 2, -1, -1):
                    y = _shift_mod(y, bits, q) + _reduce(acc[s, c], q)
                    if y >= q:
                        y -= q
                out[j, r, start + c] = np.uint64(y)


def affine(x: np.ndarray, moduli: np.ndarray, weights: SparseWeights) -> np.ndarray | None:
    """x: uint64 (inputs, rows, N) residues, row r reduced mod ``moduli[r]`` → uint64
    (outputs, rows, N) = W̃·x mod q per row; None when the weights are too large to slice."""
    bits_needed = int(max(int(m) for m in moduli).bit_length())
    plan = slicing(weights.max_row_sum(), bits_needed)
    if plan is None:
        return None
    bits, pieces = plan
    split = np.empty((pieces, *x.shape), np.int32)
    _split(x, bits, pieces, split)
    out = np.empty((weights.n_out, x.shape[1], x.shape[2]), np.uint64)
    _affine(
        split,
        np.asarray(moduli, np.uint64),
        weights.indptr,
        weights.indices,
        weights.values,
        bits,
        out,
    )
    return out


def seal_round(values: np.ndarray) -> np.ndarray:
    """``std::round`` (half away from zero) exactly, as SEAL's encoder rounds w·Δ; numpy's
    ``round`` goes half to even, and ``floor(|v| + 0.5)`` errs just below one half."""
    values = np.asarray(values, dtype=np.float64)
    mag = np.abs(values)
    whole = np.floor(mag)
    whole += (mag - whole) >= 0.5  # the fraction is exact for |v| < 2^52
    return (np.sign(values) * whole).astype(np.int64)
