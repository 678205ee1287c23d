"""Negacyclic number-theoretic transforms per RNS prime that give SEAL's own NTT-form residues,
bit for bit (issue 23, step 1 of our own evaluator).

SEAL's conventions (read from ``util/ntt.cpp`` and ``util/numth.cpp``, v4.1.2; our code):

- the root ψ of prime q is the *minimal* primitive 2N-th root of unity mod q — the smallest
  of ψ₀^(2i+1) for any primitive ψ₀ — so the tables are deterministic;
- ``root_powers[bitrev(i)] = ψ^i`` (i ≥ 1, ``root_powers[0] = 1``): powers in bit-reversed
  order; the forward transform is Cooley–Tukey on natural-order input, stage m using
  ``root_powers[m + i]``, so its output is in bit-reversed order — what SEAL stores;
- the inverse is any exact inverse of that map (its result is unique): here Gentleman–Sande
  with the inverse powers in the matching order, then × N⁻¹.

Both reduce lazily as SEAL does (values up to 4q between stages, Harvey's butterflies) and
reduce fully at the end, so the results are equal (residues mod q are unique).

Products are Shoup's: with
w' = ⌊w·2⁶⁴/q⌋ precomputed, x·w mod q = x·w − ⌊x·w'/2⁶⁴⌋·q, less q at most once — 64-bit
integer arithmetic only, plain arrays in and out (what a CUDA version needs), parallel over
the rows (ciphertext polynomials × primes) with numba.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

U64 = np.uint64
MASK32 = U64(0xFFFFFFFF)
S32 = U64(32)
ONE = U64(1)


def _bitrev(i: int, bits: int) -> int:
    return int(format(i, f"0{bits}b")[::-1], 2) if bits else 0


def _primitive_root(two_n: int, q: int) -> int:
    """Some primitive 2N-th root of unity mod q (deterministic search, q ≡ 1 mod 2N)."""
    if (q - 1) % two_n:
        raise ValueError(f"{q} is not 1 mod {two_n}: no negacyclic NTT of this size")
    for x in range(2, q):
        root = pow(x, (q - 1) // two_n, q)
        if pow(root, two_n // 2, q) == q - 1:
            return root
    raise ValueError(f"no primitive {two_n}-th root mod {q}")


def minimal_root(two_n: int, q: int) -> int:
    """SEAL's ψ: the smallest primitive 2N-th root (every odd power of one is one too)."""
    root = _primitive_root(two_n, q)
    square = root * root % q
    best, current = root, root
    for _ in range(two_n // 2):
        best = min(best, current)
        current = current * square % q
    return best


@dataclass(frozen=True)
class Tables:
    """Per prime: the forward and inverse powers (and their Shoup companions), N⁻¹ mod q."""

    moduli: np.ndarray  # (k,) uint64
    roots: np.ndarray  # (k, N) ψ^bitrev order
    roots_shoup: np.ndarray
    inv_roots: np.ndarray  # (k, N) ψ⁻¹ in Gentleman–Sande order, the last one × N⁻¹
    inv_roots_shoup: np.ndarray
    inv_n: np.ndarray  # (k,)
    inv_n_shoup: np.ndarray


def _shoup(w: int, q: int) -> int:
    return (w << 64) // q


@lru_cache(maxsize=32)
def tables(n: int, moduli: tuple[int, ...]) -> Tables:
    """SEAL's NTT tables for ring dimension ``n`` and these primes (cached)."""
    bits = n.bit_length() - 1
    if 1 << bits != n:
        raise ValueError(f"N = {n} is not a power of two")
    k = len(moduli)
    roots = np.zeros((k, n), dtype=U64)
    roots_s = np.zeros((k, n), dtype=U64)
    inv = np.zeros((k, n), dtype=U64)
    inv_s = np.zeros((k, n), dtype=U64)
    inv_n = np.zeros(k, dtype=U64)
    inv_n_s = np.zeros(k, dtype=U64)
    for j, q in enumerate(moduli):
        if not 2 <= q < 1 << 62:
            raise ValueError(f"prime {q}: SEAL's primes are below 2^61")
        psi = minimal_root(2 * n, q)
        psi_inv = pow(psi, -1, q)
        fwd = [1] * n
        power = psi
        for i in range(1, n):
            fwd[_bitrev(i, bits)] = power
            power = power * psi % q
        back = [1] * n
        power = psi_inv
        for i in range(1, n):
            back[_bitrev(i - 1, bits) + 1] = power
            power = power * psi_inv % q
        roots[j] = fwd
        roots_s[j] = [_shoup(w, q) for w in fwd]
        ni = pow(n, -1, q)
        back[n - 1] = back[n - 1] * ni % q  # the last stage's root, scaled by N⁻¹
        inv[j] = back
        inv_s[j] = [_shoup(w, q) for w in back]
        inv_n[j], inv_n_s[j] = ni, _shoup(ni, q)
    return Tables(np.asarray(moduli, dtype=U64), roots, roots_s, inv, inv_s, inv_n, inv_n_s)


@intrinsic
def _mulhi_u128(typingctx, a, b):
    """The high word of a 128-bit product as one LLVM ``mul i128`` (x86-64: one ``mul``)."""
    if a != types.uint64 or b != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))

    return types.uint64(types.uint64, types.uint64), codegen


@numba.njit(cache=True, inline="always")
def _mulhi(a, b):
    """The high 64 bits of a·b (64 × 64 → 128): one widening multiply. (Four 32-bit
    products before; a CUDA version is ``__umul64hi``.)"""
    return _mulhi_u128(U64(a), U64(b))


@numba.njit(cache=True, inline="always")
def _mul_shoup(x, w, w_shoup, q):
    r = x * w - _mulhi(x, w_shoup) * q  # wraps mod 2^64 to the exact value in [0, 2q)
    return r - q if r >= q else r


@numba.njit(cache=True, inline="always")
def _barrett64(x, q, ratio_hi):
    """x mod q for any 64-bit x, no division: SEAL's barrett_reduce_64, ``ratio_hi`` =
    ⌊2⁶⁴/q⌋ (the high word of its const_ratio)."""
    r = x - _mulhi(x, ratio_hi) * q  # in [0, 2q)
    return r - q if r >= q else r


def ratio_hi(moduli) -> np.ndarray:
    """⌊2⁶⁴/q⌋ per prime, for :func:`_barrett64`."""
    return np.asarray([(1 << 64) // int(q) for q in moduli], dtype=U64)


@numba.njit(cache=True, inline="always")
def _mul_shoup_lazy(x, w, w_shoup, q):
    """x·w mod q up to one extra q: in [0, 2q) for any 64-bit x (Harvey)."""
    return x * w - _mulhi(x, w_shoup) * q


@numba.njit(cache=True)
def _forward_row(a, q, roots, roots_s):
    """In place, Cooley–Tukey with Harvey's lazy butterflies as SEAL runs them: values stay
    in [0, 4q) between stages (q < 2⁶²), one final pass reduces them below q."""
    n = a.shape[0]
    two_q = q + q
    t = n
    m = 1
    while m < n >> 1:
        t >>= 1
        for i in range(m):
            w, ws = roots[m + i], roots_s[m + i]
            start = 2 * i * t
            for j in range(start, start + t):
                u = a[j]
                if u >= two_q:
                    u -= two_q
                v = _mul_shoup_lazy(a[j + t], w, ws, q)
                a[j] = u + v
                a[j + t] = u + two_q - v
        m <<= 1
    for i in range(m):  # the last stage (t = 1), its own loop as in SEAL
        j = 2 * i
        u = a[j]
        if u >= two_q:
            u -= two_q
        v = _mul_shoup_lazy(a[j + 1], roots[m + i], roots_s[m + i], q)
        a[j] = u + v
        a[j + 1] = u + two_q - v
    for j in range(n):
        x = a[j]
        if x >= two_q:
            x -= two_q
        a[j] = x - q if x >= q else x


@numba.njit(cache=True)
def _inverse_row(a, q, inv, inv_s, inv_n, inv_n_s):
    """In place, Gentleman–Sande with lazy butterflies (values in [0, 2q)); the last stage
    multiplies by N⁻¹ as it goes (its root in the table is already scaled by N⁻¹)."""
    n = a.shape[0]
    two_q = q + q
    t = 1
    m = n
    root = 1
    h = m >> 1
    for i in range(h):  # the first stage (t = 1), its own loop as in SEAL
        j = 2 * i
        u, v = a[j], a[j + 1]
        s = u + v
        a[j] = s - two_q if s >= two_q else s
        a[j + 1] = _mul_shoup_lazy(u + two_q - v, inv[root + i], inv_s[root + i], q)
    root += h
    t, m = 2, h
    while m > 2:
        h = m >> 1
        for i in range(h):
            w, ws = inv[root], inv_s[root]
            root += 1
            start = 2 * i * t
            for j in range(start, start + t):
                u, v = a[j], a[j + t]
                s = u + v
                a[j] = s - two_q if s >= two_q else s
                a[j + t] = _mul_shoup_lazy(u + two_q - v, w, ws, q)
        t <<= 1
        m = h
    w, ws = inv[root], inv_s[root]  # ψ⁻¹·N⁻¹
    for j in range(t):
        u, v = a[j], a[j + t]
        s = u + v
        if s >= two_q:
            s -= two_q
        x = _mul_shoup_lazy(s, inv_n, inv_n_s, q)
        y = _mul_shoup_lazy(u + two_q - v, w, ws, q)
        a[j] = x - q if x >= q else x
        a[j + t] = y - q if y >= q else y


@numba.njit(parallel=True, cache=True)
def _forward(values, moduli, roots, roots_s):
    rows, k = values.shape[0], values.shape[1]
    for task in numba.prange(rows * k):
        r, j = task // k, task % k
        _forward_row(values[r, j], moduli[j], roots[j], roots_s[j])


@numba.njit(parallel=True, cache=True)
def _inverse(values, moduli, inv, inv_s, inv_n, inv_n_s):
    rows, k = values.shape[0], values.shape[1]
    for task in numba.prange(rows * k):
        r, j = task // k, task % k
        _inverse_row(values[r, j], moduli[j], inv[j], inv_s[j], inv_n[j], inv_n_s[j])


def _checked(values: np.ndarray, t: Tables) -> np.ndarray:
    v = np.ascontiguousarray(values, dtype=U64)
    if v.ndim != 3 or v.shape[1] != len(t.moduli) or v.shape[2] != t.roots.shape[1]:
        raise ValueError(
            f"residues of shape {v.shape}: want (polynomials, {len(t.moduli)} primes, "
            f"N = {t.roots.shape[1]})"
        )
    if (v >= t.moduli[None, :, None]).any():
        raise ValueError("residues must be reduced below their primes")
    return v.copy()


def inverse_unchecked(values: np.ndarray, t: Tables) -> np.ndarray:
    """:func:`inverse` for our own kernels' arrays (already reduced, already uint64): a copy
    transformed, without the checks an outside caller's array gets."""
    out = np.array(values, dtype=U64, order="C", copy=True)
    _inverse(out, t.moduli, t.inv_roots, t.inv_roots_shoup, t.inv_n, t.inv_n_shoup)
    return out


def forward(values: np.ndarray, moduli) -> np.ndarray:
    """(polynomials, k, N) coefficient-form residues → SEAL's NTT form (a new array)."""
    t = tables(values.shape[-1], tuple(int(q) for q in moduli))
    out = _checked(values, t)
    _forward(out, t.moduli, t.roots, t.roots_shoup)
    return out


def inverse(values: np.ndarray, moduli) -> np.ndarray:
    """SEAL's NTT form → coefficient-form residues (a new array)."""
    t = tables(values.shape[-1], tuple(int(q) for q in moduli))
    out = _checked(values, t)
    _inverse(out, t.moduli, t.inv_roots, t.inv_roots_shoup, t.inv_n, t.inv_n_shoup)
    return out
