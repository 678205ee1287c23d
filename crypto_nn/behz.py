"""BFV's ciphertext multiplication on residue arrays, bit for bit what SEAL computes (issue 23,
step 4): the BEHZ tensor product (Bajard, Eynard, Hasan, Zucca 2016) as SEAL 4.1's
``Evaluator::bfv_multiply`` / ``bfv_square`` and ``util::RNSTool`` run it — our code, written
from reading theirs (``evaluator.cpp``, ``util/rns.cpp``, ``util/numth.cpp``).

A BFV product is ⌊t/q · c·d⌉ over the integers, which no single RNS base can hold. BEHZ
extends each input from the base q to an auxiliary base Bsk = B ∪ {m_sk} (with an extra
m̃ = 2³² for a Montgomery step that removes the q-overflow of the fast conversion), takes
the negacyclic products in both bases, multiplies by t, divides by q with a fast floor in
Bsk, and converts back to q with Shenoy–Kumaresan's exact conversion. SEAL picks B, m_sk
and γ as the largest 61-bit primes ≡ 1 mod 2N (``get_primes``), |B| = |q| unless
32 + log t + log q ≥ 61·(|q| + 1), when B gets one more prime.

Every step is a function of fully reduced residues: the conversions are exact sums of
products reduced mod a prime (or mod 2³²), and the NTTs of the product are undone before
anything non-modular happens — so the result does not depend on SEAL's lazy reductions or
on which root the auxiliary primes' transforms use, and equals SEAL's residues exactly.
Constants are Shoup pairs (``ntt._mul_shoup``): 64-bit integer operations only, plain arrays
in and out, parallel over polynomials.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from crypto_nn import ntt, ring
from crypto_nn.ntt import U64, _mul_shoup

AUX_BITS = 61  # SEAL_INTERNAL_MOD_BIT_COUNT
M_TILDE = 1 << 32
MASK32 = U64(0xFFFFFFFF)
_WITNESSES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)  # exact below 3.3·10²⁴


def _is_prime(n: int) -> bool:
    """Miller–Rabin with the first twelve prime bases: deterministic for 64-bit n (SEAL's
    test is probabilistic; on primes both say yes)."""
    if n < 2:
        return False
    for p in _WITNESSES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in _WITNESSES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def aux_primes(n: int, count: int, bits: int = AUX_BITS) -> list[int]:
    """SEAL's ``get_primes(2N, bits, count)``: the largest ``bits``-bit primes ≡ 1 mod 2N,
    descending."""
    factor = 2 * n
    value = ((1 << bits) - 1) // factor * factor + 1
    out: list[int] = []
    while len(out) < count and value > 1 << (bits - 1):
        if _is_prime(value):
            out.append(value)
        value -= factor
    if len(out) < count:
        raise ValueError(f"fewer than {count} {bits}-bit primes ≡ 1 mod {factor}")
    return out


def _shoup_pair(values, moduli) -> tuple[np.ndarray, np.ndarray]:
    """Values reduced mod their moduli (broadcast) and their Shoup companions ⌊w·2⁶⁴/q⌋."""
    v = np.asarray(values, dtype=object)
    m = np.broadcast_to(np.asarray(moduli, dtype=object), v.shape)
    w = [int(a) % int(q) for a, q in zip(v.ravel(), m.ravel(), strict=True)]
    s = [(a << 64) // int(q) for a, q in zip(w, m.ravel(), strict=True)]
    return (np.array(w, dtype=U64).reshape(v.shape), np.array(s, dtype=U64).reshape(v.shape))


def _punctured(base: list[int]) -> tuple[int, list[int], list[int]]:
    """Π base, the punctured products Π/b_i and their inverses mod b_i."""
    prod = 1
    for b in base:
        prod *= b
    punct = [prod // b for b in base]
    return prod, punct, [pow(p % b, -1, b) for p, b in zip(punct, base, strict=True)]


@dataclass(frozen=True)
class Tool:
    """SEAL's RNSTool for one BFV level: the bases and every constant its BEHZ steps use,
    as Shoup pairs (value, companion) for the kernels."""

    n: int
    q: np.ndarray  # (k,) the level's primes
    bsk: np.ndarray  # (kb,) B then m_sk
    t: int
    # fastbconv_m_tilde: x·m̃·(Q/q_i)⁻¹ mod q_i, then Σ over i of that·(Q/q_i) mod p_j, mod m̃
    in_mt: tuple  # (k,) m̃·(Q/q_i)⁻¹ mod q_i
    q_to_bsk: tuple  # (kb, k) (Q/q_i) mod p_j
    q_to_mt: np.ndarray  # (k,) (Q/q_i) mod 2³²
    neg_inv_q_mt: int  # −Q⁻¹ mod m̃
    q_mod_bsk: tuple  # (kb,) Q mod p_j
    inv_mt_bsk: tuple  # (kb,) m̃⁻¹ mod p_j
    # steps 6 and 7: ×t, then fast_floor
    t_inv_punct_q: tuple  # (k,) t·(Q/q_i)⁻¹ mod q_i
    t_bsk: tuple  # (kb,) t mod p_j
    inv_q_bsk: tuple  # (kb,) Q⁻¹ mod p_j
    # step 8: fastbconv_sk, B → q and B → m_sk
    inv_punct_b: tuple  # (kb−1,) (P/b_l)⁻¹ mod b_l
    b_to_q: tuple  # (k, kb−1) (P/b_l) mod q_i
    b_to_msk: tuple  # (kb−1,) (P/b_l) mod m_sk
    inv_p_msk: tuple  # () P⁻¹ mod m_sk, as 1-element arrays
    p_mod_q: tuple  # (k,) P mod q_i
    neg_p_mod_q: tuple  # (k,) q_i − P mod q_i


@lru_cache(maxsize=16)
def tool(n: int, q: tuple[int, ...], t: int) -> Tool:
    """The constants of SEAL's ``RNSTool::initialize`` for ring dimension ``n``, the level's
    primes ``q`` and plaintext modulus ``t`` (cached per parameters)."""
    k = len(q)
    big_q, punct_q, inv_punct_q = _punctured(list(q))
    b_size = k + (32 + t.bit_length() + big_q.bit_length() >= AUX_BITS * (k + 1))
    primes = aux_primes(n, b_size + 2)
    m_sk, b = primes[0], primes[2:]  # primes[1] is γ, used by decryption only
    bsk = [*b, m_sk]
    big_p, punct_b, inv_punct_b = _punctured(b)
    qs, bs = np.array(q, dtype=object), np.array(bsk, dtype=object)
    return Tool(
        n=n,
        q=np.array(q, dtype=U64),
        bsk=np.array(bsk, dtype=U64),
        t=t,
        in_mt=_shoup_pair([M_TILDE * v for v in inv_punct_q], qs),
        q_to_bsk=_shoup_pair([[pq % p for pq in punct_q] for p in bsk], bs[:, None]),
        q_to_mt=np.array([pq % M_TILDE for pq in punct_q], dtype=U64),
        neg_inv_q_mt=(-pow(big_q % M_TILDE, -1, M_TILDE)) % M_TILDE,
        q_mod_bsk=_shoup_pair([big_q % p for p in bsk], bs),
        inv_mt_bsk=_shoup_pair([pow(M_TILDE % p, -1, p) for p in bsk], bs),
        t_inv_punct_q=_shoup_pair([t * v for v in inv_punct_q], qs),
        t_bsk=_shoup_pair([t] * len(bsk), bs),
        inv_q_bsk=_shoup_pair([pow(big_q % p, -1, p) for p in bsk], bs),
        inv_punct_b=_shoup_pair(inv_punct_b, np.array(b, dtype=object)),
        b_to_q=_shoup_pair([[pb % qi for pb in punct_b] for qi in q], qs[:, None]),
        b_to_msk=_shoup_pair([pb % m_sk for pb in punct_b], [m_sk] * len(b)),
        inv_p_msk=_shoup_pair([pow(big_p % m_sk, -1, m_sk)], [m_sk]),
        p_mod_q=_shoup_pair([big_p % qi for qi in q], qs),
        neg_p_mod_q=_shoup_pair([qi - big_p % qi for qi in q], qs),
    )


BLOCK = 512  # coefficients per pass: every prime's slice of a block stays in L1/L2


@numba.njit(cache=True, inline="always")
def _convert(src, rows_in, w, w_s, p, acc, m):
    """acc[:m] = Σ_c src[c, :m]·w[c] mod p — one output prime of a fast base conversion,
    the coefficients innermost (independent products, no dependency chain per element)."""
    for i in range(m):
        acc[i] = U64(0)
    for c in range(rows_in):
        wc, wc_s = w[c], w_s[c]
        for i in range(m):
            s = acc[i] + _mul_shoup(src[c, i], wc, wc_s, p)
            acc[i] = s - p if s >= p else s


@numba.njit(parallel=True, cache=True)
def _extend(x, q, in_mt, in_mt_s, conv, conv_s, to_mt, neg_inv_q_mt, bsk, q_bsk, q_bsk_s,
            inv_mt, inv_mt_s, out):  # fmt: skip
    """Steps (1)–(2) per polynomial row: fastbconv_m_tilde (x·m̃ from q to Bsk ∪ {m̃}) then
    sm_mrq (add q·r, r centred mod m̃, and divide by m̃) → the row in base Bsk."""
    rows, k, n = x.shape
    kb = bsk.shape[0]
    half = U64(1) << U64(31)
    m_tilde = U64(1) << U64(32)
    blocks = (n + BLOCK - 1) // BLOCK
    for task in numba.prange(rows * blocks):
        r, i0 = task // blocks, (task % blocks) * BLOCK
        m = min(BLOCK, n - i0)
        y = np.empty((k, BLOCK), dtype=np.uint64)
        r_mt = np.zeros(BLOCK, dtype=np.uint64)
        acc = np.empty(BLOCK, dtype=np.uint64)
        for a in range(k):
            for i in range(m):
                y[a, i] = _mul_shoup(x[r, a, i0 + i], in_mt[a], in_mt_s[a], q[a])
                r_mt[i] += y[a, i] * to_mt[a]  # wraps mod 2⁶⁴: its low word is the sum mod m̃
        for i in range(m):
            r_mt[i] = (r_mt[i] * neg_inv_q_mt) & MASK32
        for j in range(kb):
            p = bsk[j]
            _convert(y, k, conv[j], conv_s[j], p, acc, m)
            for i in range(m):
                centred = r_mt[i] + p - m_tilde if r_mt[i] >= half else r_mt[i]
                s = _mul_shoup(centred, q_bsk[j], q_bsk_s[j], p) + acc[i]
                s = s - p if s >= p else s
                out[r, j, i0 + i] = _mul_shoup(s, inv_mt[j], inv_mt_s[j], p)


@numba.njit(parallel=True, cache=True)
def _floor_to_q(yq, yb, q, tq, tq_s, conv, conv_s, bsk, tb, tb_s, inv_q, inv_q_s, ib, ib_s,
                b_q, b_q_s, b_m, b_m_s, inv_p_m, inv_p_m_s, p_q, p_q_s, np_q, np_q_s,
                out):  # fmt: skip
    """Steps (6)–(8) per polynomial row: ×t in q ∪ Bsk, fast_floor (divide by Q, floor, in
    Bsk), then fastbconv_sk (Bsk → q, exact with the m_sk correction)."""
    rows, k, n = yq.shape
    kb = bsk.shape[0]
    nb = kb - 1
    m_sk = bsk[nb]
    half_m = m_sk >> U64(1)
    blocks = (n + BLOCK - 1) // BLOCK
    for task in numba.prange(rows * blocks):
        r, i0 = task // blocks, (task % blocks) * BLOCK
        m = min(BLOCK, n - i0)
        a = np.empty((k, BLOCK), dtype=np.uint64)
        f = np.empty((kb, BLOCK), dtype=np.uint64)
        acc = np.empty(BLOCK, dtype=np.uint64)
        alpha = np.empty(BLOCK, dtype=np.uint64)
        for c in range(k):  # t·y·(Q/q_c)⁻¹ mod q_c, the fast conversion's first step
            for i in range(m):
                a[c, i] = _mul_shoup(yq[r, c, i0 + i], tq[c], tq_s[c], q[c])
        for j in range(kb):  # fast_floor: (t·y_Bsk − conv(t·y_q))·Q⁻¹ mod p_j
            p = bsk[j]
            _convert(a, k, conv[j], conv_s[j], p, acc, m)
            for i in range(m):
                yt = _mul_shoup(yb[r, j, i0 + i], tb[j], tb_s[j], p)
                f[j, i] = _mul_shoup(yt + (p - acc[i]), inv_q[j], inv_q_s[j], p)
        for b in range(nb):  # the fast conversion's first step from B
            for i in range(m):
                f[b, i] = _mul_shoup(f[b, i], ib[b], ib_s[b], bsk[b])
        _convert(f, nb, b_m, b_m_s, m_sk, acc, m)  # B → m_sk
        for i in range(m):
            alpha[i] = _mul_shoup(acc[i] + (m_sk - f[nb, i]), inv_p_m, inv_p_m_s, m_sk)
        for c in range(k):  # B → q, corrected by α·P (α centred mod m_sk)
            qc = q[c]
            _convert(f, nb, b_q[c], b_q_s[c], qc, acc, m)
            for i in range(m):
                if alpha[i] > half_m:  # α stands for α − m_sk: add (m_sk − α)·P
                    corr = _mul_shoup(m_sk - alpha[i], p_q[c], p_q_s[c], qc)
                else:  # subtract α·P
                    corr = _mul_shoup(alpha[i], np_q[c], np_q_s[c], qc)
                s = corr + acc[i]
                out[r, c, i0 + i] = s - qc if s >= qc else s


def _forward(values: np.ndarray, moduli: np.ndarray) -> np.ndarray:
    t = ntt.tables(values.shape[-1], tuple(int(m) for m in moduli))
    ntt._forward(values, t.moduli, t.roots, t.roots_shoup)
    return values


def _inverse(values: np.ndarray, moduli: np.ndarray) -> np.ndarray:
    t = ntt.tables(values.shape[-1], tuple(int(m) for m in moduli))
    ntt._inverse(values, t.moduli, t.inv_roots, t.inv_roots_shoup, t.inv_n, t.inv_n_shoup)
    return values


def extend(x: np.ndarray, tl: Tool) -> np.ndarray:
    """Rows (r, k, N) in base q → (r, kb, N) in base Bsk: BEHZ steps (1)–(2)."""
    out = np.empty((x.shape[0], len(tl.bsk), x.shape[-1]), dtype=U64)
    _extend(x, tl.q, *tl.in_mt, *tl.q_to_bsk, tl.q_to_mt, U64(tl.neg_inv_q_mt), tl.bsk,
            *tl.q_mod_bsk, *tl.inv_mt_bsk, out)  # fmt: skip
    return out


def floor_to_q(yq: np.ndarray, yb: np.ndarray, tl: Tool) -> np.ndarray:
    """Products in q ∪ Bsk, coefficient form → ⌊t·y/Q⌉'s residues in q: steps (6)–(8)."""
    out = np.empty_like(yq)
    _floor_to_q(yq, yb, tl.q, *tl.t_inv_punct_q, *tl.q_to_bsk, tl.bsk, *tl.t_bsk, *tl.inv_q_bsk,
                *tl.inv_punct_b, *tl.b_to_q, *tl.b_to_msk, tl.inv_p_msk[0][0],
                tl.inv_p_msk[1][0], *tl.p_mod_q, *tl.neg_p_mod_q, out)  # fmt: skip
    return out


def square(x: np.ndarray, moduli, plain_modulus: int) -> np.ndarray:
    """SEAL's BFV ``square`` of size-2 coefficient-form ciphertexts (…, 2, k, N) at the level
    of ``moduli`` → size 3 (…, 3, k, N), not relinearised."""
    if x.shape[-3] != 2:
        raise ValueError(f"shape {x.shape}: square takes size-2 ciphertexts")
    return multiply(x, x, moduli, plain_modulus)


def multiply(x: np.ndarray, y: np.ndarray, moduli, plain_modulus: int) -> np.ndarray:
    """SEAL's BFV ``multiply`` of two size-2 coefficient-form ciphertexts → size 3."""
    if x.shape != y.shape or x.shape[-3] != 2:
        raise ValueError(f"shapes {x.shape}, {y.shape}: multiply takes two size-2 ciphertexts")
    n, k = x.shape[-1], x.shape[-2]
    tl = tool(n, tuple(int(q) for q in moduli), int(plain_modulus))
    if k != len(tl.q):
        raise ValueError(f"{k} residue rows for {len(tl.q)} primes")
    lead = x.shape[:-3]
    same = x is y
    cts = np.ascontiguousarray(x, dtype=U64).reshape(-1, 2, k, n)
    other = cts if same else np.ascontiguousarray(y, dtype=U64).reshape(cts.shape)
    m = len(cts)
    kb = len(tl.bsk)

    def lifted(c):  # a ciphertext stack in NTT form in q and in Bsk (steps 1–3)
        rows = c.reshape(-1, k, n)
        xb = _forward(extend(rows, tl), tl.bsk).reshape(m, 2, kb, n)
        xq = _forward(rows.copy(), tl.q).reshape(m, 2, k, n)
        return xq, xb

    cq, cb = lifted(cts)
    dq, db = (cq, cb) if same else lifted(other)
    pq = _inverse(ring.multiply(cq, dq, tl.q).reshape(-1, k, n), tl.q)  # steps 4–5
    pb = _inverse(ring.multiply(cb, db, tl.bsk).reshape(-1, kb, n), tl.bsk)
    return floor_to_q(pq, pb, tl).reshape(*lead, 3, k, n)


def warm_up() -> None:
    """Load the kernels from numba's cache on a tiny ring (N 16, primes 97 and 193), so that
    a worker's first BFV request does not pay for it."""
    x = np.ones((1, 2, 2, 16), dtype=U64)
    square(x, [97, 193], 17)
