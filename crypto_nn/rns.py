"""A batch-packed affine layer as one integer matrix product over the ciphertexts' RNS limbs.

In batch packing every weight is the same scalar in every slot, and a scalar plaintext is
the constant ``round(w·Δ) mod q_j`` in every coefficient of limb j (CKKS, NTT form too) or
the constant polynomial w (BFV). So ``Σ_i w_ij · x_i`` over ciphertexts is, for every limb
and both polynomials, ``Y = W̃ · X (mod q_j)`` with X the (inputs × N) residues — what SEAL
computes term by term with ``multiply_plain`` + ``add_inplace``, bit for bit, here in one
pass (numba, both cores).

Exactness without 128-bit integers: a residue x < 2^61 is cut into ``pieces`` of ``bits``
bits (int32); each piece's weighted sum stays below 2^62 in int64 (``bits`` follows from the
layer's largest row sum Σ|w̃|), each is reduced mod q, and the pieces are recombined by
Horner's rule, ``y·2^bits mod q`` with a float64 quotient estimate (exact up to ±1, fixed by
one comparison: the quotient is < 2^bits ≤ 2^30, well inside float64's 53 bits).

Speed: the product is bound by memory, not arithmetic. Rows are grouped in blocks of
``ROWS`` outputs that read overlapping inputs (the channels of one conv window, or any
``ROWS`` rows of a dense layer), so each input piece is read once per block, and the
accumulators of a block cover ``BLOCK`` coefficients at a time (they stay in L1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

MAX_SUM_BITS = 62  # |Σ w·piece| stays below 2^62: int64 with a bit to spare
ROWS = 8  # outputs per block
BLOCK = 256  # coefficients per pass


@dataclass(frozen=True)
class Layer:
    """One affine layer's integer weights, arranged for the kernel (compiled once)."""

    n_in: int
    n_out: int
    bits: int  # bits per piece
    pieces: int
    block_rows: np.ndarray  # int64 (blocks, ROWS): the output row of each slot, −1 none
    cols_ptr: np.ndarray  # int64 (blocks + 1,): block b reads cols[cols_ptr[b]:cols_ptr[b+1]]
    cols: np.ndarray  # int64: the inputs each block reads
    weights: np.ndarray  # int64 (len(cols), ROWS): their weights per slot

    @classmethod
    def from_weights(cls, weight: np.ndarray, modulus_bits: int) -> Layer | None:
        """None when the weights are too large to slice exactly (use the term route)."""
        weight = np.asarray(weight, dtype=np.int64)
        n_out, n_in = weight.shape
        peak = int(np.abs(weight).max()) if weight.size else 0
        if peak * max(n_in, 1) < 1 << 62:  # no int64 overflow in the sums themselves
            row_sum = int(np.abs(weight).sum(axis=1).max()) if weight.size else 0
        else:
            row_sum = max(sum(abs(int(v)) for v in row) for row in weight)
        room = MAX_SUM_BITS - max(1, row_sum).bit_length()
        # small weights (BFV's): the whole residue as one int64 piece, no cutting at all
        bits = modulus_bits if modulus_bits <= room else min(30, room)
        if bits < 1:
            return None
        first = np.where(weight.any(axis=1), (weight != 0).argmax(axis=1), n_in)
        order = np.argsort(first, kind="stable")  # rows reading the same inputs side by side
        blocks = -(-n_out // ROWS)
        block_rows = np.full((blocks, ROWS), -1, np.int64)
        block_rows.reshape(-1)[:n_out] = order
        cols_ptr, cols, weights = [0], [], []
        for rows in block_rows:
            used = rows[rows >= 0]
            sub = weight[used]
            union = np.flatnonzero(sub.any(axis=0))
            block = np.zeros((len(union), ROWS), np.int64)
            block[:, : len(used)] = sub[:, union].T
            cols.append(union)
            weights.append(block)
            cols_ptr.append(cols_ptr[-1] + len(union))
        return cls(
            n_in,
            n_out,
            bits,
            -(-modulus_bits // bits),
            block_rows,
            np.asarray(cols_ptr, np.int64),
            np.concatenate(cols).astype(np.int64),
            np.concatenate(weights).astype(np.int64),
        )


def piece_dtype(bits: int):
    """int32 pieces up to 31 bits; a whole residue (one piece) is int64."""
    return np.int32 if bits <= 31 else np.int64


def piece_buffer(buffers: dict, shape: tuple, bits: int) -> np.ndarray:
    """A pieces buffer of this shape and ``bits``' dtype, kept in ``buffers`` between calls
    (no page faults on the next request)."""
    dtype = piece_dtype(bits)
    key = (shape, np.dtype(dtype).str)
    if key not in buffers:
        buffers[key] = np.empty(shape, dtype)
    return buffers[key]


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


@numba.njit(cache=True)
def split_into(residues, bits, out):
    """uint64 (rows, N) → out (pieces, rows, N): the ``bits``-bit pieces (int32, or int64
    for one whole piece)."""
    mask = np.uint64((1 << bits) - 1)
    rows, n = residues.shape
    for s in range(out.shape[0]):
        shift = np.uint64(s * bits)
        for r in range(rows):
            for c in range(n):
                out[s, r, c] = (residues[r, c] >> shift) & mask


@numba.njit(parallel=True, cache=True)
def split_many(residues, bits, out):
    """uint64 (m, rows, N) → out (pieces, m, rows, N): :func:`split_into` for many
    ciphertexts at once, in parallel over them (one call, every core)."""
    mask = np.uint64((1 << bits) - 1)
    m, rows, n = residues.shape
    for task in numba.prange(m * rows):
        i, r = task // rows, task % rows
        for s in range(out.shape[0]):
            shift = np.uint64(s * bits)
            for c in range(n):
                out[s, i, r, c] = (residues[i, r, c] >> shift) & mask


@numba.njit(parallel=True, cache=True)
def _affine(xs, moduli, block_rows, cols_ptr, cols, weights, bits, out):
    pieces, _, rows, n = xs.shape
    blocks = block_rows.shape[0]
    for task in numba.prange(blocks * rows):
        b, r = task // rows, task % rows
        q = np.int64(moduli[r])
        acc = np.empty((ROWS, pieces, BLOCK), np.int64)
        for start in range(0, n, BLOCK):
            width = min(BLOCK, n - start)
            acc[:] = 0
            for u in range(cols_ptr[b], cols_ptr[b + 1]):
                i = cols[u]
                for s in range(pieces):
                    piece = xs[s, i, r, start : start + width]
                    for jj in range(ROWS):
                        w = weights[u, jj]
                        if w != 0:
                            row = acc[jj, s]
                            for c in range(width):
                                row[c] += w * np.int64(piece[c])
            for jj in range(ROWS):
                j = block_rows[b, jj]
                if j < 0:
                    continue
                for c in range(width):
                    y = _reduce(acc[jj, pieces - 1, c], q)
                    for s in range(pieces - 2, -1, -1):
                        y = _shift_mod(y, bits, q) + _reduce(acc[jj, s, c], q)
                        if y >= q:
                            y -= q
                    out[j, r, start + c] = np.uint64(y)


def affine(pieces: np.ndarray, moduli: np.ndarray, layer: Layer) -> np.ndarray:
    """pieces: int32 (layer.pieces, inputs, rows, N) of residues reduced mod ``moduli[r]``
    per row → uint64 (outputs, rows, N) = W̃·x mod q per row."""
    out = np.empty((layer.n_out, pieces.shape[2], pieces.shape[3]), np.uint64)
    _affine(
        pieces,
        np.asarray(moduli, np.uint64),
        layer.block_rows,
        layer.cols_ptr,
        layer.cols,
        layer.weights,
        layer.bits,
        out,
    )
    return out


def modulus_bits(moduli) -> int:
    return int(max(int(m) for m in moduli).bit_length())


def affine_residues(x: np.ndarray, moduli: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    """The whole route on a residue array: x uint64 (inputs, rows, N) → (outputs, rows, N);
    None when the weights are too large to slice."""
    layer = Layer.from_weights(weight, modulus_bits(moduli))
    if layer is None:
        return None
    pieces = np.empty((layer.pieces, *x.shape), piece_dtype(layer.bits))
    split_many(np.ascontiguousarray(x), layer.bits, pieces)
    return affine(pieces, moduli, layer)


def seal_round(values: np.ndarray) -> np.ndarray:
    """``std::round`` (half away from zero) exactly, as SEAL's encoder rounds w·Δ; numpy's
    ``round`` goes half to even, and ``floor(|v| + 0.5)`` errs just below one half."""
    values = np.asarray(values, dtype=np.float64)
    mag = np.abs(values)
    whole = np.floor(mag)
    whole += (mag - whole) >= 0.5  # the fraction is exact for |v| < 2^52
    return (np.sign(values) * whole).astype(np.int64)


def warm_up() -> None:
    """Compile the kernels now (numba caches them on disk after the first time), so a
    timed run or a worker's first request does not pay for it."""
    affine_residues(np.zeros((1, 1, 8), np.uint64), np.array([97], np.uint64), np.ones((1, 1)))
    split_many(np.zeros((1, 1, 8), np.uint64), 8, np.zeros((1, 1, 2, 8), np.int32)[:, :, 1:])
    whole = np.zeros((1, 1, 2, 8), np.int64)[:, :, 1:]  # one int64 piece (BFV's small weights)
    split_many(np.zeros((1, 1, 8), np.uint64), 40, whole)
    affine(whole, np.array([97], np.uint64), Layer.from_weights(np.ones((1, 1), np.int64), 40))
