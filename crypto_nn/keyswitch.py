"""SEAL's key switching on RNS residue arrays, bit for bit (issue 23, step 2): relinearise
and rotate, and hoisted rotations (one decomposition, many Galois automorphisms).

``switch_key`` (SEAL ``evaluator.cpp``, CKKS branch; our code): the target polynomial's
limbs in coefficient form are the digits; each digit, reduced and NTT'd mod every prime of
the key level (the special prime last), is multiplied by its key and summed; the sum is
divided by the special prime with rounding (mod-down). A rotation applies SEAL's NTT-form
Galois permutation first. Plain arrays in and out, numba-parallel over ciphertexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from crypto_nn import ntt
from crypto_nn.ntt import U64
from crypto_nn.ring import _add, _moduli, _ratio, _rows, _sub, add


@numba.njit(cache=True)
def _digit(c2, t_target, key_moduli, ratios, roots, roots_s, k, ntt_form, i_out, j, row):
    """One key-switching digit: limb J of ``c2`` as an NTT-form polynomial mod the prime of
    RNS index I (the special prime last), into ``row``. ``t_target``: ``c2`` in coefficient
    form (``c2`` itself when not ``ntt_form``: BFV)."""
    n = c2.shape[1]
    kall = key_moduli.shape[0]
    key_index = i_out if i_out < k else kall - 1
    q, ratio = key_moduli[key_index], ratios[key_index]
    if ntt_form and i_out == j:  # already this limb's NTT form
        row[:] = c2[j, :]
        return
    if key_moduli[j] <= q:  # no reduction needed (SEAL's shortcut too)
        row[:] = t_target[j, :]
    else:
        for x in range(n):
            row[x] = ntt._barrett64(t_target[j, x], q, ratio)
    ntt._forward_row(row, q, roots[key_index], roots_s[key_index])


@numba.njit(cache=True)
def _decompose(c2, t_target, key_moduli, ratios, roots, roots_s, k, ntt_form, digits):
    """SEAL's key-switching digits of one polynomial: digits[I, J] (see :func:`_digit`)."""
    for i_out in range(k + 1):
        for j in range(k):
            _digit(c2, t_target, key_moduli, ratios, roots, roots_s, k, ntt_form, i_out, j,
                   digits[i_out, j])  # fmt: skip


@numba.njit(cache=True)
def _inner_row(digits, perm, identity, keys, keys_s, key_moduli, k, comp, i_out, out):
    """out = Σ_J digit[I, J] · key_J[comp] at index I; ``perm``: read every digit through
    this NTT-form permutation (a Galois automorphism), unless ``identity`` (none). The keys'
    Shoup companions are made once per key set; the first digit writes, the rest add."""
    n = digits.shape[2]
    kall = key_moduli.shape[0]
    key_index = i_out if i_out < k else kall - 1
    q = key_moduli[key_index]
    for j in range(k):
        key, key_s = keys[j, comp, key_index], keys_s[j, comp, key_index]
        digit = digits[i_out, j]
        if identity:
            if j == 0:
                for x in range(n):
                    out[x] = ntt._mul_shoup(digit[x], key[x], key_s[x], q)
            else:
                for x in range(n):
                    out[x] = _add(out[x], ntt._mul_shoup(digit[x], key[x], key_s[x], q), q)
        else:
            if j == 0:
                for x in range(n):
                    out[x] = ntt._mul_shoup(digit[perm[x]], key[x], key_s[x], q)
            else:
                for x in range(n):
                    prod = ntt._mul_shoup(digit[perm[x]], key[x], key_s[x], q)
                    out[x] = _add(out[x], prod, q)


@numba.njit(cache=True)
def _inner(digits, perm, identity, keys, keys_s, key_moduli, k, acc):
    """acc[comp, I] for every component and index (:func:`_inner_row`)."""
    for i_out in range(k + 1):
        for comp in range(2):
            _inner_row(digits, perm, identity, keys, keys_s, key_moduli, k, comp, i_out,
                       acc[comp, i_out])  # fmt: skip


@numba.njit(cache=True)
def _special_limb(acc_special, key_moduli, inv_roots, inv_roots_s, inv_n, inv_n_s, last):
    """The mod-down's correction: the special prime's limb in coefficient form + ⌊p/2⌋."""
    n = last.shape[0]
    kall = key_moduli.shape[0]
    special = key_moduli[kall - 1]
    last[:] = acc_special
    ntt._inverse_row(last, special, inv_roots[kall - 1], inv_roots_s[kall - 1],
                     inv_n[kall - 1], inv_n_s[kall - 1])  # fmt: skip
    half = special >> np.uint64(1)
    for x in range(n):
        last[x] = _add(last[x], half, special)


@numba.njit(cache=True)
def _mod_down_row(acc_row, last, key_moduli, ratios, roots, roots_s, inv_roots, inv_roots_s,
                  inv_n, inv_n_s, inv_special, inv_special_s, i, ntt_form, temp, out):  # fmt: skip
    """Limb i of (acc − correction)·p⁻¹: SEAL's CKKS branch of switch_key (the correction
    NTT'd, the result in NTT form), or with ``ntt_form`` False its BFV branch (the sums
    brought back to coefficient form instead; the same values, INTT'd — ``acc_row`` is
    transformed in place)."""
    n = last.shape[0]
    kall = key_moduli.shape[0]
    special = key_moduli[kall - 1]
    half = special >> np.uint64(1)
    q, ratio = key_moduli[i], ratios[i]
    fix = q - ntt._barrett64(half, q, ratio)
    if special > q:
        for x in range(n):
            temp[x] = _add(ntt._barrett64(last[x], q, ratio), fix, q)
    else:
        for x in range(n):
            temp[x] = _add(last[x], fix, q)
    if ntt_form:
        ntt._forward_row(temp, q, roots[i], roots_s[i])
    else:
        ntt._inverse_row(acc_row, q, inv_roots[i], inv_roots_s[i], inv_n[i], inv_n_s[i])
    for x in range(n):
        d = _sub(acc_row[x], temp[x], q)
        out[x] = ntt._mul_shoup(d, inv_special[i], inv_special_s[i], q)


@numba.njit(cache=True)
def _mod_down(acc, key_moduli, ratios, roots, roots_s, inv_roots, inv_roots_s, inv_n, inv_n_s,
              inv_special, inv_special_s, k, ntt_form, last, temp, out):  # fmt: skip
    """Divide by the special prime with rounding, both components."""
    for comp in range(2):
        _special_limb(acc[comp, k], key_moduli, inv_roots, inv_roots_s, inv_n, inv_n_s, last)
        for i in range(k):
            _mod_down_row(acc[comp, i], last, key_moduli, ratios, roots, roots_s, inv_roots,
                          inv_roots_s, inv_n, inv_n_s, inv_special, inv_special_s, i,
                          ntt_form, temp, out[comp, i])  # fmt: skip


@numba.njit(parallel=True, cache=True)
def _keyswitch(c2, t_target, perms, identity, keys, keys_s, key_rows, key_moduli, ratios, roots,
               roots_s, inv_roots, inv_roots_s, inv_n, inv_n_s, inv_special, inv_special_s,
               ntt_form, out):  # fmt: skip
    """out[r, g] = switch_key(σ_g(c2[r])) for every permutation g, the digits of c2[r]
    made once (hoisting: one decomposition, many automorphisms and key products).
    One task per polynomial: for many ciphertexts."""
    rows, k, n = c2.shape
    for r in numba.prange(rows):
        digits = np.empty((k + 1, k, n), dtype=np.uint64)
        acc = np.empty((2, k + 1, n), dtype=np.uint64)
        last = np.empty(n, dtype=np.uint64)
        temp = np.empty(n, dtype=np.uint64)
        _decompose(c2[r], t_target[r], key_moduli, ratios, roots, roots_s, k, ntt_form, digits)
        for g in range(perms.shape[0]):
            kr = key_rows[g]
            _inner(digits, perms[g], identity, keys[kr], keys_s[kr], key_moduli, k, acc)
            _mod_down(acc, key_moduli, ratios, roots, roots_s, inv_roots, inv_roots_s, inv_n,
                      inv_n_s, inv_special, inv_special_s, k, ntt_form, last, temp,
                      out[r, g])  # fmt: skip


@numba.njit(parallel=True, cache=True)
def _keyswitch_wide(c2, t_target, perms, identity, keys, keys_s, key_rows, key_moduli, ratios,
                    roots, roots_s, inv_roots, inv_roots_s, inv_n, inv_n_s, inv_special,
                    inv_special_s, ntt_form, out):  # fmt: skip
    """:func:`_keyswitch`, parallel *inside* one key switch — over the digits, the key
    products and the mod-down's limbs — for the few ciphertexts of a single-image request
    (a rotation chain), where one task per ciphertext would leave cores idle. Bit-equal."""
    rows, k, n = c2.shape
    digits = np.empty((k + 1, k, n), dtype=np.uint64)
    acc = np.empty((2, k + 1, n), dtype=np.uint64)
    last = np.empty((2, n), dtype=np.uint64)
    for r in range(rows):
        for task in numba.prange((k + 1) * k):
            i_out, j = task // k, task % k
            _digit(c2[r], t_target[r], key_moduli, ratios, roots, roots_s, k, ntt_form, i_out,
                   j, digits[i_out, j])  # fmt: skip
        for g in range(perms.shape[0]):
            for task in numba.prange(2 * (k + 1)):
                comp, i_out = task // (k + 1), task % (k + 1)
                kr = key_rows[g]
                _inner_row(digits, perms[g], identity, keys[kr], keys_s[kr], key_moduli, k, comp,
                           i_out, acc[comp, i_out])  # fmt: skip
            for comp in numba.prange(2):
                _special_limb(acc[comp, k], key_moduli, inv_roots, inv_roots_s, inv_n, inv_n_s,
                              last[comp])  # fmt: skip
            for task in numba.prange(2 * k):
                comp, i = task // k, task % k
                temp = np.empty(n, dtype=np.uint64)
                _mod_down_row(acc[comp, i], last[comp], key_moduli, ratios, roots, roots_s,
                              inv_roots, inv_roots_s, inv_n, inv_n_s, inv_special,
                              inv_special_s, i, ntt_form, temp, out[r, g, comp, i])  # fmt: skip


@numba.njit(parallel=True, cache=True)
def _shoup_rows(w, moduli, ratios, out):
    """⌊w·2⁶⁴/q⌋ for w < q < 2⁶²: the quotient estimated from ⌊2¹²⁸/q⌋ (two words r1, r0)
    as w·r1 + ⌊w·r0/2⁶⁴⌋ = ⌊w·⌊2¹²⁸/q⌋/2⁶⁴⌋ — the true one or one below — then corrected by
    its remainder w·2⁶⁴ − e·q (< 2q: it fits a word, and its low word is all we need)."""
    rows, k, n = w.shape
    for task in numba.prange(rows * k):
        r, j = task // k, task % k
        q, r0, r1 = moduli[j], ratios[j, 0], ratios[j, 1]
        for x in range(n):
            v = w[r, j, x]
            quot = v * r1 + ntt._mulhi(v, r0)
            rem = np.uint64(0) - quot * q  # w·2⁶⁴ − quot·q, mod 2⁶⁴
            while rem >= q:
                rem -= q
                quot += np.uint64(1)
            out[r, j, x] = quot


def key_shoup(keys: np.ndarray, key_moduli) -> np.ndarray:
    """⌊w·2⁶⁴/q⌋ of every key residue (…, K, N): the Shoup companions of a key set."""
    k, n = keys.shape[-2], keys.shape[-1]
    w = np.ascontiguousarray(keys, dtype=U64).reshape(-1, k, n)
    out = np.empty_like(w)
    _shoup_rows(w, _moduli(key_moduli), _ratio(key_moduli), out)
    return out.reshape(keys.shape)


def key_tables(key_bytes: bytes, key_moduli) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """SEAL key-switching keys (relinearisation or Galois, as SEAL saves them) → per key
    vector its residues and their Shoup companions: made once per client key and kept by
    the evaluator (the companions cost a long division per residue)."""
    from crypto_nn.wire.residues import parse_kswitch

    keys = parse_kswitch(key_bytes)
    return keys, [key_shoup(k, key_moduli) if k.shape[0] else k for k in keys]


@dataclass(frozen=True)
class KeyStack:
    """Key-switching keys of one kind (a client's Galois keys) in one array, with their
    Shoup companions: the kernels index it by row, so no call copies a key (stacking the
    keys a call needs cost 3 MB of copying per rotation at N 8,192)."""

    keys: np.ndarray  # (present, digits, 2, K, N)
    shoup: np.ndarray
    rows: np.ndarray  # per key vector index (as parse_kswitch lists them): its row, −1 absent

    @classmethod
    def of(cls, keys: list[np.ndarray], companions: list[np.ndarray], key_moduli) -> KeyStack:
        present = [i for i, key in enumerate(keys) if key.shape[0]]
        rows = np.full(len(keys), -1, np.int64)
        rows[present] = np.arange(len(present))
        if not present:
            empty = np.zeros((0, 1, 2, len(key_moduli), 1), U64)
            return cls(empty, empty, rows)
        return cls(
            np.stack([keys[i] for i in present]), np.stack([companions[i] for i in present]), rows
        )

    def has(self, index: int) -> bool:
        return index < len(self.rows) and self.rows[index] >= 0


def _switch(target: np.ndarray, perms: np.ndarray, keys, key_moduli,
            companions: list[np.ndarray] | None = None, ntt_form: bool = True,
            key_rows: np.ndarray | None = None):  # fmt: skip
    """(…, k, N) targets → (…, len(perms), 2, k, N): switch_key of every permuted target,
    NTT form in and out (CKKS), or coefficient form in and out (``ntt_form`` False: BFV).
    ``keys``: one key vector per permutation (a list), or a :class:`KeyStack` and the row
    of each permutation's key (``key_rows``)."""
    kq = [int(q) for q in key_moduli]
    k, n = target.shape[-2], target.shape[-1]
    if isinstance(keys, KeyStack):
        stacked, companions, rows_of = keys.keys, keys.shoup, np.asarray(key_rows, np.int64)
    else:
        if companions is None:
            companions = [key_shoup(key, kq) for key in keys]
        if len(keys) == 1:  # views, not copies
            stacked, companions = keys[0][None], companions[0][None]
        else:
            stacked, companions = np.stack(keys), np.stack(companions)
        rows_of = np.arange(len(keys), dtype=np.int64)
    if stacked.shape[1] < k or stacked.shape[3] != len(kq):
        raise ValueError(f"keys of shape {stacked.shape[1:]} for a level of {k} primes")
    stacked = np.ascontiguousarray(stacked, dtype=U64)
    companions = np.ascontiguousarray(companions, dtype=U64)
    rows = _rows(target, k)
    t = ntt.tables(n, tuple(kq))
    special = kq[-1]
    inv = [pow(special, -1, q) for q in kq[:k]]
    out = np.empty((rows.shape[0], len(perms), 2, k, n), dtype=U64)
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    identity = perms.shape[0] == 1 and bool((perms[0] == np.arange(n)).all())
    coeff = ntt.inverse_unchecked(rows, ntt.tables(n, tuple(kq[:k]))) if ntt_form else rows
    kernel = _keyswitch if rows.shape[0] >= numba.get_num_threads() else _keyswitch_wide
    kernel(
        rows, coeff, perms, identity,
        stacked, companions, rows_of, _moduli(kq), ntt.ratio_hi(kq), t.roots, t.roots_shoup,
        t.inv_roots, t.inv_roots_shoup,
        t.inv_n, t.inv_n_shoup, np.asarray(inv, dtype=U64),
        np.asarray([ntt._shoup(w, q) for w, q in zip(inv, kq[:k], strict=True)], dtype=U64),
        ntt_form, out,
    )  # fmt: skip
    return out.reshape(*target.shape[:-2], len(perms), 2, k, n)


def key_switch(target: np.ndarray, keys: np.ndarray, key_moduli) -> np.ndarray:
    """SEAL's switch_key for CKKS: ``target`` (…, k, N) NTT-form polynomials at a level of
    k primes, ``keys`` (key vectors, 2, K, N) one key-switching key set at the key level
    (K primes, the special prime last) → (…, 2, k, N), what SEAL adds to (c0, c1)."""
    identity = np.arange(target.shape[-1], dtype=np.int64)[None]
    return _switch(target, identity, [keys], key_moduli)[..., 0, :, :, :]


def relinearize(
    x: np.ndarray,
    relin_keys: np.ndarray,
    key_moduli,
    companions: np.ndarray | None = None,
    *,
    ntt_form: bool = True,
) -> np.ndarray:
    """SEAL's ``relinearize`` of size-3 ciphertexts (…, 3, k, N) → size 2; ``companions``:
    ``key_shoup(relin_keys, key_moduli)``, kept by a caller that relinearises often.
    ``ntt_form`` False: BFV's coefficient-form ciphertexts (its branch of the key switch)."""
    if x.shape[-3] != 3:
        raise ValueError(f"shape {x.shape}: relinearize takes size-3 ciphertexts")
    k = x.shape[-2]
    identity = np.arange(x.shape[-1], dtype=np.int64)[None]
    target = np.ascontiguousarray(x[..., 2, :, :])
    extra = None if companions is None else [companions]
    switched = _switch(target, identity, [relin_keys], key_moduli, extra, ntt_form=ntt_form)
    return add(
        np.ascontiguousarray(x[..., :2, :, :]), switched[..., 0, :, :, :], list(key_moduli)[:k]
    )


def relinearize_bfv(
    x: np.ndarray, relin_keys: np.ndarray, key_moduli, companions: np.ndarray | None = None
) -> np.ndarray:
    """SEAL's BFV ``relinearize``: :func:`relinearize` on coefficient-form ciphertexts."""
    return relinearize(x, relin_keys, key_moduli, companions, ntt_form=False)


def relinearize_stack(
    x: np.ndarray, keys: np.ndarray, key_moduli, companions, *, chunk: int, ntt_form: bool = True
) -> np.ndarray:
    """:func:`relinearize` of a stack (m, 3, k, N), ``chunk`` ciphertexts at a time: the key
    switch's scratch (k + 1 digits per ciphertext) never exists for the whole stack."""
    out = np.empty((len(x), 2, *x.shape[2:]), U64)
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk]
        out[i : i + chunk] = relinearize(part, keys, key_moduli, companions, ntt_form=ntt_form)
    return out


def galois_elt(step: int, n: int) -> int:
    """SEAL's Galois element for a CKKS rotation by ``step`` slots (left when positive)."""
    m = 2 * n
    if step == 0:
        return m - 1
    if abs(step) >= n // 2:
        raise ValueError(f"step {step}: a rotation moves fewer than N/2 = {n // 2} slots")
    pos = abs(step) & (m - 1)
    exponent = n // 2 - pos if step < 0 else pos
    return pow(3, exponent, m)


@lru_cache(maxsize=64)
def galois_permutation(elt: int, n: int) -> np.ndarray:
    """SEAL's permutation of NTT-form residues for Galois element ``elt``
    (``GaloisTool::generate_table_ntt``): result[i] = operand[table[i]]."""
    bits = n.bit_length() - 1
    table = np.empty(n, dtype=np.int64)
    for i in range(n, 2 * n):
        reversed_i = int(format(i, f"0{bits + 1}b")[::-1], 2)
        raw = ((elt * reversed_i) >> 1) & (n - 1)
        table[i - n] = int(format(raw, f"0{bits}b")[::-1], 2)
    return table


def _galois_key(step: int, n: int, galois_keys) -> tuple[int, np.ndarray]:
    """(index into ``galois_keys`` — a list, or a :class:`KeyStack`'s row — and SEAL's
    NTT-form permutation) for a rotation by ``step``."""
    elt = galois_elt(step, n)
    index = (elt - 1) >> 1
    if isinstance(galois_keys, KeyStack):
        if not galois_keys.has(index):
            raise ValueError(f"no Galois key for step {step} (element {elt})")
        return int(galois_keys.rows[index]), galois_permutation(elt, n)
    if index >= len(galois_keys) or galois_keys[index].shape[0] == 0:
        raise ValueError(f"no Galois key for step {step} (element {elt})")
    return index, galois_permutation(elt, n)


def rotate(
    x: np.ndarray,
    step: int,
    galois_keys: list[np.ndarray],
    key_moduli,
    companions: list[np.ndarray] | None = None,
) -> np.ndarray:
    """SEAL's ``rotate_vector`` (CKKS): size-2 ciphertexts (…, 2, k, N) → the same, slots
    moved left by ``step``; ``galois_keys`` as ``residues.parse_kswitch`` gives them;
    ``companions``: their ``key_shoup``, per key (kept by a caller that rotates often)."""
    n, k = x.shape[-1], x.shape[-2]
    index, perm = _galois_key(step, n, galois_keys)
    moved = np.ascontiguousarray(x[..., perm])  # the automorphism on NTT form: a permutation
    identity = np.arange(n, dtype=np.int64)[None]
    if isinstance(galois_keys, KeyStack):
        switched = _switch(moved[..., 1, :, :], identity, galois_keys, key_moduli,
                           key_rows=np.array([index]))  # fmt: skip
    else:
        extra = None if companions is None else [companions[index]]
        switched = _switch(moved[..., 1, :, :], identity, [galois_keys[index]], key_moduli, extra)
    first = np.stack([moved[..., 0, :, :], np.zeros_like(moved[..., 0, :, :])], axis=-3)
    return add(first, switched[..., 0, :, :, :], list(key_moduli)[:k])


def rotate_many(
    x: np.ndarray,
    steps,
    galois_keys: list[np.ndarray],
    key_moduli,
    companions: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Hoisted rotations: (…, 2, k, N) → (…, len(steps), 2, k, N). The key-switching digits
    of c1 are made once (k·(k+1) NTTs) and permuted per rotation: the automorphism commutes
    with the decomposition up to the digits' sign convention, so each result decrypts to
    what :func:`rotate` gives (same noise bound) but is not byte-equal to SEAL's (SEAL does
    not hoist; its digits of σ(c1) are taken in [0, q_j), ours are σ of them)."""
    n, k = x.shape[-1], x.shape[-2]
    found = [_galois_key(step, n, galois_keys) for step in steps]
    perms = [perm for _, perm in found]
    c1 = np.ascontiguousarray(x[..., 1, :, :])
    if isinstance(galois_keys, KeyStack):
        rows = np.array([index for index, _ in found])
        switched = _switch(c1, np.stack(perms), galois_keys, key_moduli, key_rows=rows)
    else:
        keys = [galois_keys[index] for index, _ in found]
        extra = None if companions is None else [companions[index] for index, _ in found]
        switched = _switch(c1, np.stack(perms), keys, key_moduli, extra)
    c0 = np.ascontiguousarray(x[..., 0, :, :])
    moved = np.stack([c0[..., perm] for perm in perms], axis=-3)  # σ_g(c0), NTT form
    first = np.stack([moved, np.zeros_like(moved)], axis=-3)  # (…, steps, 2, k, N)
    return add(first, switched, list(key_moduli)[:k])
