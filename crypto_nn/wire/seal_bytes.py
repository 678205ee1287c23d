"""SEAL objects to bytes and back.

TenSEAL's ``sealapi`` exposes SEAL's ``save``/``load`` only with a file name, so the
bytes pass through a private temporary file (in RAM under /dev/shm when it exists).
SEAL's own format is kept as is: a 16-byte header (magic 0xA15E, version, compression,
size) and a zstd-compressed body, validated by SEAL on load. What SEAL is given to load is
first inflated by :mod:`crypto_nn.wire.inflate` within what the object can hold
(:func:`bound`), so SEAL itself never decompresses client bytes and refuses any byte its
members leave unread.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import tenseal.sealapi as seal

from crypto_nn.errors import ContextError
from crypto_nn.wire import inflate

_TMP = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
HEADER_BYTES = 16
MAGIC = b"\x5e\xa1"  # 0xA15E little-endian


def _tmp_path() -> str:
    fd, name = tempfile.mkstemp(dir=_TMP, prefix="cryptorobust-")
    os.close(fd)
    return name


def dumps(obj) -> bytes:
    """Serialise any SEAL object with a ``save(path)`` method (incl. seeded ciphertexts)."""
    path = _tmp_path()
    try:
        obj.save(path)
        return Path(path).read_bytes()
    finally:
        os.unlink(path)


def check_whole(data: bytes, *, what: str = "payload") -> None:
    """Refuse anything but exactly one SEAL object: the 0xA15E header, a known compression
    mode, and a declared size equal to the bytes given — nothing may trail the object (a
    secret key could ride along unparsed). Reads 16 bytes; SEAL checks the rest on load."""
    check_header(data[:HEADER_BYTES], len(data), what=what)


def check_header(header: bytes, size: int, *, what: str = "payload") -> None:
    """:func:`check_whole` from the object's first 16 bytes and its length alone (a job's
    input is checked on disk, one seek per ciphertext)."""
    if size <= HEADER_BYTES or len(header) < HEADER_BYTES or header[:2] != MAGIC:
        raise ContextError(f"{what} is not a SEAL object ({size} bytes, no 0xA15E header)")
    header_size, compression = header[2], header[5]
    declared = struct.unpack_from("<Q", header, 8)[0]
    if header_size != HEADER_BYTES or compression not in (0, 1, 2):
        raise ContextError(
            f"{what} has a malformed SEAL header (header size {header_size}, "
            f"compression mode {compression})"
        )
    if declared != size:
        raise ContextError(
            f"{what} declares {declared} bytes but {size} were sent: exactly one SEAL "
            "object is allowed, with nothing before or after it"
        )


PARAMS_BOUND = 1 << 16  # scheme, N, ≤ 64 primes and t, each a nested 24-byte object
SLACK = 4096  # headers, parms_id, counts: far less than this in every object


def bound(
    cls, context: seal.SEALContext | None = None, *, size: int = 3, keys: int | None = None
) -> int:
    """The most bytes a ``cls`` object for ``context`` can hold uncompressed: a ciphertext of
    ``size`` polynomials at the first level, a key-switching key set of ``keys`` keys
    (each ``components`` × two key-level polynomials; by default one relinearisation key,
    or SEAL's default Galois key set: 2·log2(N) − 1 keys), a secret key at the key level."""
    if cls is seal.EncryptionParameters or context is None:
        return PARAMS_BOUND
    n = context.key_context_data().parms().poly_modulus_degree()
    k_data = len(context.first_context_data().parms().coeff_modulus())
    k_key = len(context.key_context_data().parms().coeff_modulus())
    if cls is seal.Ciphertext:
        return 8 * size * k_data * n + SLACK
    public_key = 8 * 2 * k_key * n + SLACK
    if cls is seal.PublicKey:
        return public_key
    if cls is seal.SecretKey:
        return 8 * k_key * n + SLACK
    if cls in (seal.RelinKeys, seal.GaloisKeys):  # + one 8-byte count per empty slot (< N)
        if keys is None:
            keys = 1 if cls is seal.RelinKeys else 2 * n.bit_length() - 3
        return keys * k_data * public_key + 8 * n + SLACK
    raise TypeError(f"no size bound known for {cls.__name__}")


def loads(
    cls,
    data: bytes,
    context: seal.SEALContext | None = None,
    *,
    what: str = "payload",
    most: int | None = None,
):
    """A new ``cls`` (Ciphertext, EncryptionParameters, ...) from exactly one SEAL object.

    The body is inflated here within ``most`` bytes (default :func:`bound`) and SEAL loads
    it uncompressed, so every byte of it must belong to the object's members. Whatever
    SEAL raises on hostile bytes (RuntimeError, ValueError, IndexError from its bindings …)
    becomes a :class:`ContextError` that names ``what``."""
    check_whole(data, what=what)
    data = inflate.uncompressed(data, bound(cls, context) if most is None else most, what=what)
    obj = cls(seal.SCHEME_TYPE.CKKS) if cls is seal.EncryptionParameters else cls()
    path = _tmp_path()
    try:
        Path(path).write_bytes(data)
        del data
        obj.load(path) if context is None else obj.load(context, path)
    except Exception as exc:  # every failure of SEAL's parser is the input's fault
        raise ContextError(
            f"{what} is corrupt or does not fit the parameters ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        os.unlink(path)
    return obj


def load_fresh_ciphertexts(
    context: seal.SEALContext, payloads: list[bytes], *, scale: float
) -> list:
    """Client inputs: each a fresh (size-2) ciphertext at the first level, at ``scale``
    (the plan's input scale; 1.0 for BFV), at most a fresh ciphertext's bytes."""
    first = context.first_parms_id()
    most = bound(seal.Ciphertext, context, size=2)
    cts = []
    for i, data in enumerate(payloads):
        ct = loads(seal.Ciphertext, data, context, what=f"input {i}", most=most)
        if ct.parms_id() != first or ct.size() != 2:
            raise ContextError(f"input {i} is not a fresh ciphertext at the plan's first level")
        if ct.scale != scale:
            raise ContextError(
                f"input {i} has scale {ct.scale!r}; this plan encodes inputs at {scale!r} — "
                "encrypt with this plan's Client"
            )
        cts.append(ct)
    return cts
