"""Seeded ciphertexts without SEAL: c0 from the bytes, c1 expanded from the 64-byte seed.

A client's symmetric encryption sends c0 and the seed of the uniform c1 (half the
upload). SEAL's ``load`` expands the seed; taking the residues out of SEAL again costs a
zstd-compressed ``save`` per ciphertext — the largest cost of the GEMM route's first layer.
So the expansion is done here, exactly as SEAL 4.x does it
(``../shared/notes/seal-wire-format.md``, checked bit for bit against SEAL in the tests):

- the stream is 4,096-byte blocks, block i = BLAKE2Xb(key = seed, message = i as 8
  little-endian bytes, output length 4,096);
- c1 takes one bulk draw of k·N words; limb by limb, a word ≥ 2⁶⁴ − 1 − ((2⁶⁴ − 1) mod q) − 1
  is replaced by the next word of the stream after the bulk draw (again while rejected),
  and the value kept is the word mod q.

Why our own BLAKE2b: BLAKE2Xb's output nodes need depth = 0, which CPython's ``hashlib``
refuses; the compression function is 40 lines (RFC 7693), in numba so 784 ciphertexts
expand in parallel. Only PRNG type 1 (BLAKE2Xb, SEAL's default) is read; SHAKE-256 seeds
go through SEAL.
"""

from __future__ import annotations

import struct

import numba
import numpy as np
import tenseal.sealapi as seal

from crypto_nn.errors import ContextError
from crypto_nn.wire import inflate, residues, seal_bytes

BLAKE2XB = 1
BLOCK_BYTES = 4096
_IV = np.array(
    [
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
        0x9B05688C2B3E6C1F,
        0x1F83D9ABFB41BD6B,
        0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)
_SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    ],
    dtype=np.int64,
)


@numba.njit(cache=True, inline="always")
def _rotr(x, n):
    return (x >> np.uint64(n)) | (x << np.uint64(64 - n))


@numba.njit(cache=True, inline="always")
def _g(a, b, c, d, x, y):
    a = a + b + x
    d = _rotr(d ^ a, 32)
    c = c + d
    b = _rotr(b ^ c, 24)
    a = a + b + y
    d = _rotr(d ^ a, 16)
    c = c + d
    b = _rotr(b ^ c, 63)
    return a, b, c, d


@numba.njit(cache=True)
def _compress(h, m, t, last, iv, sigma):
    """RFC 7693's F: h (8 words) updated in place by the 16-word block m (the working
    vector in scalars, so it stays in registers)."""
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11 = iv[0], iv[1], iv[2], iv[3]
    v12 = iv[4] ^ np.uint64(t)
    v13 = iv[5]
    v14 = ~iv[6] if last else iv[6]
    v15 = iv[7]
    for rnd in range(12):
        s = sigma[rnd]
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, m[s[0]], m[s[1]])
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, m[s[2]], m[s[3]])
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, m[s[4]], m[s[5]])
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, m[s[6]], m[s[7]])
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, m[s[8]], m[s[9]])
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, m[s[10]], m[s[11]])
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, m[s[12]], m[s[13]])
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, m[s[14]], m[s[15]])
    h[0] ^= v0 ^ v8
    h[1] ^= v1 ^ v9
    h[2] ^= v2 ^ v10
    h[3] ^= v3 ^ v11
    h[4] ^= v4 ^ v12
    h[5] ^= v5 ^ v13
    h[6] ^= v6 ^ v14
    h[7] ^= v7 ^ v15


@numba.njit(cache=True)
def _block(seed, counter, iv, sigma, out):
    """One 4,096-byte BLAKE2Xb block (512 words) of the stream, into ``out``."""
    h = iv.copy()  # root: digest 64, key 64, fanout 1, depth 1, XOF length 4096
    h[0] ^= np.uint64(64 | (64 << 8) | (1 << 16) | (1 << 24))
    h[1] ^= np.uint64(BLOCK_BYTES) << np.uint64(32)
    m = np.zeros(16, np.uint64)
    m[:8] = seed
    _compress(h, m, 128, False, iv, sigma)
    m[:] = 0
    m[0] = np.uint64(counter)
    _compress(h, m, 136, True, iv, sigma)
    root = h.copy()
    for node in range(BLOCK_BYTES // 64):  # output nodes: leaf 64, inner 64, offset node
        g = iv.copy()
        g[0] ^= np.uint64(64 | (64 << 32))
        g[1] ^= np.uint64(node) | (np.uint64(BLOCK_BYTES) << np.uint64(32))
        g[2] ^= np.uint64(64 << 8)
        m[:] = 0
        m[:8] = root
        _compress(g, m, 64, True, iv, sigma)
        out[node * 8 : node * 8 + 8] = g


@numba.njit(cache=True)
def _expand(seed, moduli, n, iv, sigma, out):
    """c1 (k, n) from one seed, as SEAL's sample_poly_uniform draws it."""
    k = len(moduli)
    words = k * n
    blocks = -(-words // 512)
    buf = np.empty(512, np.uint64)
    j, c = 0, 0  # word w of the stream is out[w // n, w % n] (any strides)
    for b in range(blocks):
        _block(seed, b, iv, sigma, buf)
        for i in range(min(512, words - b * 512)):
            out[j, c] = buf[i]
            c += 1
            if c == n:
                j, c = j + 1, 0
    # the stream after the bulk draw, for rejected words
    counter, pos = blocks - 1, words - (blocks - 1) * 512
    all_ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    for j in range(k):
        q = np.uint64(moduli[j])
        max_multiple = all_ones - (all_ones % q) - np.uint64(1)
        for c in range(n):
            w = out[j, c]
            while w >= max_multiple:
                if pos == 512:
                    counter += 1
                    _block(seed, counter, iv, sigma, buf)
                    pos = 0
                w = buf[pos]
                pos += 1
            out[j, c] = w % q


@numba.njit(parallel=True, cache=True)
def _expand_many(seeds, moduli, n, iv, sigma, out):
    for i in numba.prange(seeds.shape[0]):
        _expand(seeds[i], moduli, n, iv, sigma, out[i])


def split(
    data: bytes, most: int = 1 << 31, *, what: str = "ciphertext"
) -> tuple[residues.Meta, np.ndarray, np.ndarray]:
    """A seeded ciphertext's bytes → (meta, c0 uint64 (k, N), seed uint64 (8,)), inflating
    at most ``most`` bytes. ContextError for anything else (a full ciphertext, another
    PRNG, a malformed record)."""
    return split_body(*inflate.body(data, most, what=what), what=what)


def split_body(
    version: tuple[int, int], body: bytes, *, what: str = "ciphertext"
) -> tuple[residues.Meta, np.ndarray, np.ndarray]:
    """:func:`split` of a body already inflated."""
    meta = residues.meta_of(version, body, what=what)
    offset = residues.BODY.size
    head = residues.HEADER.unpack_from(body, offset)
    (count,) = residues.COUNT.unpack_from(body, offset + residues.HEADER.size)
    start = offset + residues.HEADER.size + residues.COUNT.size
    if head[0] != residues.MAGIC or head[4] != 0 or meta.size != 2 or count != meta.k * meta.n:
        raise ContextError("not a seeded ciphertext (c0 and a PRNG seed)")
    record = start + 8 * count
    if len(body) != record + residues.HEADER.size + 1 + 64:
        raise ContextError("seeded ciphertext: the PRNG record is not 16 + 1 + 64 bytes")
    magic, hsize, *_ = residues.HEADER.unpack_from(body, record)
    kind = body[record + residues.HEADER.size]
    if magic != residues.MAGIC or hsize != residues.HEADER.size or kind != BLAKE2XB:
        raise ContextError(f"seeded ciphertext with PRNG type {kind}: only BLAKE2Xb (1) here")
    c0 = np.frombuffer(body, "<u8", count, start).reshape(meta.k, meta.n)
    seed = np.array(struct.unpack_from("<8Q", body, record + residues.HEADER.size + 1), np.uint64)
    return meta, c0, seed


def expand(seeds: np.ndarray, moduli: np.ndarray, n: int) -> np.ndarray:
    """Seeds (m, 8) → c1 residues uint64 (m, k, N), both cores."""
    out = np.empty((len(seeds), len(moduli), n), np.uint64)
    _expand_many(np.asarray(seeds, np.uint64), np.asarray(moduli, np.uint64), n, _IV, _SIGMA, out)
    return out


class SeededInputs:
    """A request's fresh, seeded ciphertexts, parsed without SEAL and checked as SEAL's
    load and ``load_fresh_ciphertexts`` check them: the context's first level, two
    polynomials, the scheme's form, one scale, every c0 residue below its prime. The
    batch evaluators' first matrix product reads them directly (``pieces``)."""

    def __init__(self, context, payloads: list[bytes], metas, c0s, seeds, scale: float) -> None:
        self.context, self.payloads, self.scale = context, payloads, scale
        self.meta, self._c0s, self._seeds = metas[0], c0s, np.stack(seeds)

    @classmethod
    def parse(cls, context, payloads: list[bytes], *, scale: float) -> SeededInputs | None:
        """None when some payload is not a BLAKE2Xb-seeded ciphertext (SEAL loads them);
        ContextError when one does not inflate within a fresh ciphertext's size, or is
        seeded but not a fresh input for these parameters at ``scale`` (the plan's input
        scale; BFV 1.0) — the metadata SEAL's ``is_metadata_valid_for`` checks, and the
        scale the plan needs (SEAL accepts any nonzero CKKS scale, then computes garbage)."""
        if not payloads:
            return None
        first = context.first_context_data()
        n, k = first.parms().poly_modulus_degree(), len(first.parms().coeff_modulus())
        most = seal_bytes.bound(seal.Ciphertext, context, size=2)
        bodies = [inflate.body(data, most, what=f"input {i}") for i, data in enumerate(payloads)]
        try:
            parts = [split_body(*b) for b in bodies]
        except (ContextError, struct.error, ValueError):
            return None
        del bodies
        moduli = np.array([m.value() for m in first.parms().coeff_modulus()], np.uint64)
        ntt = first.parms().scheme() == seal.SCHEME_TYPE.CKKS  # BFV keeps coefficient form
        want = (tuple(context.first_parms_id()), n, k)
        for i, (meta, c0, _) in enumerate(parts):
            if (meta.parms_id, meta.n, meta.k) != want or meta.is_ntt_form != ntt:
                raise ContextError(f"input {i} is not a fresh ciphertext at the plan's first level")
            if meta.correction != 1:
                raise ContextError(f"input {i} has correction factor {meta.correction}, not 1")
            if meta.scale != scale:
                raise ContextError(
                    f"input {i} has scale {meta.scale!r}; this plan encodes inputs at "
                    f"{scale!r} — encrypt with this plan's Client"
                )
            if (c0 >= moduli[:, None]).any():
                raise ContextError(f"input {i} holds residues past their primes: corrupt")
        metas, c0s, seeds = zip(*parts, strict=True)
        return cls(context, payloads, metas, c0s, seeds, scale)

    def __len__(self) -> int:
        return len(self._c0s)

    @property
    def moduli(self) -> np.ndarray:
        parms = self.context.first_context_data().parms()
        return np.array([m.value() for m in parms.coeff_modulus()], np.uint64)

    def pieces(self, bits: int, count: int, buffers: dict) -> np.ndarray:
        """(count, inputs, 2k, N) pieces (int32, or one int64 piece): c0 as sent, c1
        expanded from the seeds."""
        from crypto_nn import rns

        k, n = self.meta.k, self.meta.n
        out = rns.piece_buffer(buffers, (count, len(self), 2 * k, n), bits)
        if out.dtype == np.int64:  # one whole piece: c1 expanded in place, no copy
            c1 = out[0, :, k:].view(np.uint64)
            _expand_many(self._seeds, self.moduli, n, _IV, _SIGMA, c1)
        else:
            rns.split_many(expand(self._seeds, self.moduli, n), bits, out[:, :, k:])
        for i, c0 in enumerate(self._c0s):  # views of the request's bytes: no copy made
            rns.split_into(c0, bits, out[:, i, :k])
        return out

    def load(self) -> list:
        """The same ciphertexts through SEAL (the term route and anything not affine)."""
        return seal_bytes.load_fresh_ciphertexts(self.context, self.payloads, scale=self.scale)


def warm_up() -> None:
    """Compile (or load from numba's cache) the expansion kernels now."""
    expand(np.zeros((1, 8), np.uint64), np.array([97], np.uint64), 8)
