"""A ciphertext's RNS residues as a numpy array, and back into SEAL — the bridge the
batch evaluators' matrix products run on.

TenSEAL's ``sealapi`` gives no access to a ciphertext's memory, only ``save``/``load``
through a file, and ``save`` always zstd-compresses. So residues come out as SEAL's own
bytes, decompressed here (``zstandard``), and go back in as an *uncompressed* body, which
SEAL loads and checks like any other (parms_id known to the context, every residue below
its prime). Layout, read from SEAL 4.x (``../shared/notes/seal-wire-format.md``): a 16-byte
header; parms_id (4 × u64), is_ntt_form (u8), size, N, k (u64), scale (f64), correction
factor (u64); the coefficient array with its own 16-byte header, a u64 count and the
residues, polynomial-major, then limb, then coefficient. Seeded ciphertexts (c1 replaced by a
PRNG seed) are refused here: let SEAL load them first.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from crypto_nn.errors import ContextError
from crypto_nn.wire import inflate

MAGIC = b"\x5e\xa1"
HEADER = struct.Struct("<2sBBBBHQ")  # magic, header size, major, minor, compression, 0, total
BODY = struct.Struct("<4QBQQQdQ")  # parms_id, is_ntt_form, size, N, k, scale, correction
COUNT = struct.Struct("<Q")


@dataclass(frozen=True)
class Meta:
    """Everything of a ciphertext but its residues."""

    version: tuple[int, int]
    parms_id: tuple[int, int, int, int]
    is_ntt_form: bool
    size: int
    n: int
    k: int
    scale: float
    correction: int


def meta_of(version: tuple[int, int], body: bytes, *, what: str) -> Meta:
    """The fields before a ciphertext's coefficient array."""
    if len(body) < BODY.size + HEADER.size + COUNT.size:
        raise ContextError(f"{what}: the body is too short for a ciphertext")
    fields = BODY.unpack_from(body)
    return Meta(version, tuple(fields[:4]), bool(fields[4]), *fields[5:8], fields[8], fields[9])


def parse(
    data: bytes, *, copy: bool = True, most: int = 1 << 31, what: str = "ciphertext"
) -> tuple[Meta, np.ndarray]:
    """SEAL ciphertext bytes → (meta, residues uint64 (size, k, N)), inflating at most
    ``most`` bytes; ``copy=False``: a read-only view into the decompressed body."""
    version, body = inflate.body(data, most, what=what)
    meta = meta_of(version, body, what=what)
    offset = BODY.size
    head = HEADER.unpack_from(body, offset)
    if head[0] != MAGIC or head[4] != 0:
        raise ContextError("the coefficient array is not an uncompressed SEAL array")
    (count,) = COUNT.unpack_from(body, offset + HEADER.size)
    start = offset + HEADER.size + COUNT.size
    want = meta.size * meta.k * meta.n
    if count != want or len(body) < start + 8 * count:
        raise ContextError(
            f"the coefficient array holds {count} residues, not size·k·N = {want}: a seeded "
            "ciphertext (load it in SEAL first) or a truncated one"
        )
    view = np.frombuffer(body, dtype="<u8", count=count, offset=start)
    view = view.reshape(meta.size, meta.k, meta.n)
    return meta, view.copy() if copy else view


def serialize(meta: Meta, residues: np.ndarray, *, scale: float | None = None) -> bytes:
    """(meta, residues) → uncompressed SEAL ciphertext bytes (every residue must already be
    reduced below its prime: SEAL's load checks and refuses otherwise)."""
    residues = np.ascontiguousarray(residues, dtype="<u8")
    size, k, n = residues.shape
    array = (
        HEADER.pack(MAGIC, HEADER.size, *meta.version, 0, 0, HEADER.size + 8 + residues.nbytes)
        + COUNT.pack(residues.size)
        + residues.tobytes()
    )
    body = (
        BODY.pack(
            *meta.parms_id,
            int(meta.is_ntt_form),
            size,
            n,
            k,
            meta.scale if scale is None else scale,
            meta.correction,
        )
        + array
    )
    total = HEADER.size + len(body)
    return HEADER.pack(MAGIC, HEADER.size, *meta.version, 0, 0, total) + body


def row_moduli(context, parms_id, size: int) -> np.ndarray:
    """The prime of every (polynomial, limb) row at this level, in the residues' order."""
    primes = [m.value() for m in context.get_context_data(parms_id).parms().coeff_modulus()]
    return np.tile(np.asarray(primes, np.uint64), size)


def stack(cts: list, bits: int, pieces: int, buffers: dict | None = None):
    """Ciphertexts at one level and scale → (their shared meta, int32 (pieces, n, size·k, N)):
    every residue cut into ``pieces`` of ``bits`` bits as it is parsed (``crypto_nn.rns``),
    into a buffer of ``buffers`` kept per shape between calls (no page faults)."""
    from crypto_nn import rns
    from crypto_nn.wire import seal_bytes

    first = None
    for i, ct in enumerate(cts):
        data = seal_bytes.dumps(ct)
        meta, view = parse(data, copy=False)
        if first is None:
            first = meta
            shape = (pieces, len(cts), meta.size * meta.k, meta.n)
            out = rns.piece_buffer({} if buffers is None else buffers, shape, bits)
        elif (meta.parms_id, meta.size, meta.scale) != (first.parms_id, first.size, first.scale):
            raise ContextError("ciphertexts at different levels, sizes or scales: no shared matrix")
        rns.split_into(view.reshape(meta.size * meta.k, meta.n), bits, out[:, i])
    return first, out


def unstack(context, meta: Meta, y: np.ndarray, scale: float | None = None) -> list:
    """uint64 (n, size·k, N) → n SEAL ciphertexts (loaded and checked by SEAL)."""
    import tenseal.sealapi as seal

    from crypto_nn.wire import seal_bytes

    shape = (meta.size, meta.k, meta.n)
    return [
        seal_bytes.loads(seal.Ciphertext, serialize(meta, row.reshape(shape), scale=scale), context)
        for row in y
    ]


PLAIN = struct.Struct("<4QQd")  # parms_id, coefficient count, scale


def parse_plaintext(data: bytes, k: int, *, most: int = 1 << 31, what: str = "plaintext"):
    """SEAL plaintext bytes (CKKS: NTT form at a level of ``k`` primes) → (k, N) uint64."""
    _, body = inflate.body(data, most, what=what)
    if len(body) < PLAIN.size + HEADER.size + COUNT.size:
        raise ContextError(f"{what}: the body is too short for a plaintext")
    coeffs = PLAIN.unpack_from(body)[4]
    (count,) = COUNT.unpack_from(body, PLAIN.size + HEADER.size)
    start = PLAIN.size + HEADER.size + COUNT.size
    if count != coeffs or coeffs % k or len(body) != start + 8 * count:
        raise ContextError(f"{what}: {count} residues do not make {k} limbs")
    return np.frombuffer(body, dtype="<u8", count=count, offset=start).reshape(k, -1).copy()


def parse_kswitch(data: bytes, *, most: int = 1 << 32, what: str = "keys") -> list[np.ndarray]:
    """SEAL key-switching keys (relinearisation or Galois) saved *unseeded* — SEAL loads the
    client's seeded keys and saves them again — → per key vector, an array (keys, 2, K, N)
    of its public keys' residues at the key level (NTT form)."""
    _, body = inflate.body(data, most, what=what)
    at = 32  # parms_id
    (vectors,) = COUNT.unpack_from(body, at)
    at += COUNT.size
    out = []
    for _ in range(vectors):
        (count,) = COUNT.unpack_from(body, at)
        at += COUNT.size
        keys = []
        for _ in range(count):
            total = HEADER.unpack_from(body, at)[6]
            meta, res = parse(bytes(body[at : at + total]), what=what)
            if meta.size != 2:
                raise ContextError(f"{what}: a key of size {meta.size} (seeded? load it in SEAL)")
            keys.append(res)
            at += total
        out.append(np.stack(keys) if keys else np.zeros((0, 2, 0, 0), dtype=np.uint64))
    if at != len(body):
        raise ContextError(f"{what}: {len(body) - at} bytes after the keys")
    return out
