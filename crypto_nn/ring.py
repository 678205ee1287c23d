"""CKKS evaluator operations on RNS residue arrays, bit for bit what SEAL computes (issue 23,
step 2): add, multiply by a plaintext, multiply and square (the tensor product in NTT
form), and rescale (SEAL's ``rescale_to_next``). Key switching — relinearisation and
rotations — is in :mod:`crypto_nn.keyswitch`.

Arrays are ciphertexts as ``wire.residues.parse`` gives them, (size, k, N) uint64 in NTT
form, or stacks of them (…, size, k, N); ``moduli`` are the k primes of their level. Every
result is fully reduced, so it equals SEAL's whatever lazy reductions SEAL takes on the way
(residues mod q are unique). Products of two residues are 128-bit; they are reduced with
SEAL's own Barrett scheme (⌊2¹²⁸/q⌋ in two words, ``util/uintarithsmallmod.h``), written
here in 64-bit integer operations so that a CUDA version of the same kernels is mechanical.
"""

from __future__ import annotations

import numba
import numpy as np

from crypto_nn import ntt
from crypto_nn.ntt import U64, _mulhi


def _ratio(moduli) -> np.ndarray:
    """(k, 2) uint64: ⌊2¹²⁸/q⌋ as (low, high) words, SEAL's ``const_ratio``."""
    out = np.zeros((len(moduli), 2), dtype=U64)
    for j, q in enumerate(moduli):
        r = (1 << 128) // int(q)
        out[j] = (r & ((1 << 64) - 1), r >> 64)
    return out


@numba.njit(cache=True, inline="always")
def _mul_full(a, b):
    """a·b as (low, high) 64-bit words."""
    return a * b, _mulhi(a, b)


@numba.njit(cache=True, inline="always")
def _mulmod(a, b, q, r0, r1):
    """a·b mod q for a, b < q < 2⁶¹: SEAL's barrett_reduce_128 of the 128-bit product."""
    lo, hi = _mul_full(a, b)
    carry = _mulhi(lo, r0)
    t2lo, t2hi = _mul_full(lo, r1)
    t1 = t2lo + carry
    t3 = t2hi + (U64(1) if t1 < t2lo else U64(0))
    s2lo, s2hi = _mul_full(hi, r0)
    t1b = t1 + s2lo
    carry2 = s2hi + (U64(1) if t1b < t1 else U64(0))
    t1 = hi * r1 + t3 + carry2
    r = lo - t1 * q
    return r - q if r >= q else r


@numba.njit(cache=True, inline="always")
def _add(a, b, q):
    s = a + b
    return s - q if s >= q else s


@numba.njit(cache=True, inline="always")
def _sub(a, b, q):
    return a - b if a >= b else a + q - b


@numba.njit(parallel=True, cache=True)
def _dyadic(x, y, moduli, ratio, out):
    """out[r, j, :] = x[r, j, :] · y[r, j, :] mod q_j for every row r."""
    rows, k, n = x.shape
    for task in numba.prange(rows * k):
        r, j = task // k, task % k
        q, r0, r1 = moduli[j], ratio[j, 0], ratio[j, 1]
        for i in range(n):
            out[r, j, i] = _mulmod(x[r, j, i], y[r, j, i], q, r0, r1)


@numba.njit(parallel=True, cache=True)
def _tensor(c, d, moduli, ratio, out):
    """Size-2 × size-2 → size 3: (c0d0, c0d1 + c1d0, c1d1), per ciphertext of a stack."""
    cts, _, k, n = c.shape
    for task in numba.prange(cts * k):
        t, j = task // k, task % k
        q, r0, r1 = moduli[j], ratio[j, 0], ratio[j, 1]
        for i in range(n):
            c0, c1, d0, d1 = c[t, 0, j, i], c[t, 1, j, i], d[t, 0, j, i], d[t, 1, j, i]
            out[t, 0, j, i] = _mulmod(c0, d0, q, r0, r1)
            out[t, 1, j, i] = _add(_mulmod(c0, d1, q, r0, r1), _mulmod(c1, d0, q, r0, r1), q)
            out[t, 2, j, i] = _mulmod(c1, d1, q, r0, r1)


@numba.njit(parallel=True, cache=True)
def _add_arrays(x, y, moduli, out):
    rows, k, n = x.shape
    for task in numba.prange(rows * k):
        r, j = task // k, task % k
        q = moduli[j]
        for i in range(n):
            out[r, j, i] = _add(x[r, j, i], y[r, j, i], q)


def _rows(a: np.ndarray, k: int) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=U64).reshape(-1, k, a.shape[-1])


def _moduli(moduli) -> np.ndarray:
    return np.asarray([int(q) for q in moduli], dtype=U64)


def add(x: np.ndarray, y: np.ndarray, moduli) -> np.ndarray:
    """SEAL's ``add`` of two ciphertexts of the same size and level."""
    if x.shape != y.shape:
        raise ValueError(f"shapes {x.shape} and {y.shape}: add needs equal sizes and levels")
    q = _moduli(moduli)
    out = np.empty_like(_rows(x, len(q)))
    _add_arrays(_rows(x, len(q)), _rows(y, len(q)), q, out)
    return out.reshape(x.shape)


def multiply_plain(x: np.ndarray, plain: np.ndarray, moduli) -> np.ndarray:
    """SEAL's ``multiply_plain`` (NTT form): every polynomial of ``x`` (…, size, k, N) times
    the plaintext's residues (k, N)."""
    q = _moduli(moduli)
    rows = _rows(x, len(q))
    p = np.broadcast_to(np.asarray(plain, dtype=U64), rows.shape).copy()
    out = np.empty_like(rows)
    _dyadic(rows, p, q, _ratio(q), out)
    return out.reshape(x.shape)


def multiply(x: np.ndarray, y: np.ndarray, moduli) -> np.ndarray:
    """SEAL's ``multiply`` of size-2 ciphertexts (…, 2, k, N) → size 3, not relinearised."""
    if x.shape != y.shape or x.shape[-3] != 2:
        raise ValueError(f"shapes {x.shape}, {y.shape}: multiply takes two size-2 ciphertexts")
    q = _moduli(moduli)
    lead = x.shape[:-3]
    c = np.ascontiguousarray(x, dtype=U64).reshape(-1, 2, len(q), x.shape[-1])
    d = np.ascontiguousarray(y, dtype=U64).reshape(c.shape)
    out = np.empty((c.shape[0], 3, *c.shape[2:]), dtype=U64)
    _tensor(c, d, q, _ratio(q), out)
    return out.reshape(*lead, 3, *c.shape[2:])


def square(x: np.ndarray, moduli) -> np.ndarray:
    """SEAL's ``square``: the same residues as ``multiply(x, x)``."""
    return multiply(x, x, moduli)


@numba.njit(parallel=True, cache=True)
def _rescale(x, last_ntt, moduli, ratios, inv_last, inv_last_shoup, roots, roots_s, half, out):
    """SEAL's divide_and_round_q_last_ntt_inplace, per polynomial: ``last_ntt`` is the
    last prime's limb already in coefficient form plus ⌊q_last/2⌋ (mod q_last)."""
    rows, k1, n = out.shape
    for task in numba.prange(rows * k1):
        r, j = task // k1, task % k1
        q, ratio = moduli[j], ratios[j]
        temp = np.empty(n, dtype=np.uint64)
        neg_half = q - ntt._barrett64(half, q, ratio)
        for i in range(n):
            temp[i] = _add(ntt._barrett64(last_ntt[r, i], q, ratio), neg_half, q)
        ntt._forward_row(temp, q, roots[j], roots_s[j])
        for i in range(n):
            d = _sub(x[r, j, i], temp[i], q)
            out[r, j, i] = ntt._mul_shoup(d, inv_last[j], inv_last_shoup[j], q)


def rescale(x: np.ndarray, moduli) -> np.ndarray:
    """SEAL's ``rescale_to_next``: (…, size, k, N) → (…, size, k − 1, N), divided by the
    last prime with rounding (the ciphertext's scale is divided by it too)."""
    q = [int(v) for v in moduli]
    if len(q) < 2:
        raise ValueError("rescale needs at least two primes at this level")
    n = x.shape[-1]
    rows = _rows(x, len(q))
    last_q = q[-1]
    t = ntt.tables(n, tuple(q))
    last = ntt.inverse_unchecked(rows[:, -1:, :], ntt.tables(n, (last_q,)))[:, 0, :]
    half = last_q >> 1
    last += U64(half)  # coefficient form + ⌊q/2⌋, below 2q < 2^63
    last -= np.where(last >= U64(last_q), U64(last_q), U64(0))
    inv = [pow(last_q, -1, v) for v in q[:-1]]
    inv_arr = np.asarray(inv, dtype=U64)
    inv_s = np.asarray([ntt._shoup(w, v) for w, v in zip(inv, q[:-1], strict=True)], dtype=U64)
    out = np.empty((rows.shape[0], len(q) - 1, n), dtype=U64)
    _rescale(
        rows,
        last,
        _moduli(q[:-1]),
        ntt.ratio_hi(q[:-1]),
        inv_arr,
        inv_s,
        t.roots,
        t.roots_shoup,
        U64(half),
        out,
    )
    return out.reshape(*x.shape[:-2], len(q) - 1, n)
