"""SEAL objects to bytes and back.

TenSEAL's ``sealapi`` exposes SEAL's ``save``/``load`` only with a file name, so the
bytes pass through a private temporary file (in RAM under /dev/shm when it exists).
SEAL's own format is kept as is: a 16-byte header (magic 0xA15E, version, compression,
size) and a zstd-compressed body, validated by SEAL on load.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import tenseal.sealapi as seal

from crypto_nn.errors import ContextError

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


def loads(cls, data: bytes, context: seal.SEALContext | None = None, *, what: str = "payload"):
    """A new ``cls`` (Ciphertext, EncryptionParameters, ...) from exactly one SEAL object.

    Whatever SEAL raises on hostile bytes (RuntimeError, ValueError, IndexError from its
    bindings …) becomes a :class:`ContextError` that names ``what``."""
    check_whole(data, what=what)
    obj = cls(seal.SCHEME_TYPE.CKKS) if cls is seal.EncryptionParameters else cls()
    path = _tmp_path()
    try:
        Path(path).write_bytes(data)
        obj.load(path) if context is None else obj.load(context, path)
    except Exception as exc:  # every failure of SEAL's parser is the input's fault
        raise ContextError(
            f"{what} is corrupt or does not fit the parameters ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        os.unlink(path)
    return obj


def load_fresh_ciphertexts(context: seal.SEALContext, payloads: list[bytes]) -> list:
    """Client inputs: each must be a fresh (size-2) ciphertext at the first level."""
    first = context.first_parms_id()
    cts = []
    for i, data in enumerate(payloads):
        ct = loads(seal.Ciphertext, data, context, what=f"input {i}")
        if ct.parms_id() != first or ct.size() != 2:
            raise ContextError(f"input {i} is not a fresh ciphertext at the plan's first level")
        cts.append(ct)
    return cts
