"""Hostile key material for the server tests: SEAL objects that load but are not whole.

SEAL's KSwitchKeys layout (kswitchkeys.cpp, ``save_members``): parms_id (4 × uint64), the
number of key slots, then per slot its number of components and each component saved
as a whole SEAL object (uncompressed, 16-byte header with its own total size).
"""

from __future__ import annotations

import struct

import zstandard


def _body(blob: bytes) -> bytes:
    compression = blob[5]
    if compression == 0:
        return blob[16:]
    assert compression == 2, "TenSEAL saves zstd"
    return zstandard.ZstdDecompressor().decompressobj().decompress(blob[16:])


def _wrap(like: bytes, body: bytes) -> bytes:
    header = bytearray(like[:16])
    header[5] = 0  # uncompressed: SEAL loads it
    header[8:16] = struct.pack("<Q", 16 + len(body))
    return bytes(header) + body


def split_kswitch(blob: bytes) -> tuple[bytes, list[list[bytes]]]:
    """SEAL key-switching keys → (parms_id bytes, per slot the list of component objects)."""
    body = _body(blob)
    parms_id, (slots,) = body[:32], struct.unpack_from("<Q", body, 32)
    offset, out = 40, []
    for _ in range(slots):
        (count,) = struct.unpack_from("<Q", body, offset)
        offset += 8
        components = []
        for _ in range(count):
            (size,) = struct.unpack_from("<Q", body, offset + 8)
            components.append(body[offset : offset + size])
            offset += size
        out.append(components)
    return parms_id, out


def join_kswitch(like: bytes, parms_id: bytes, slots: list[list[bytes]]) -> bytes:
    body = parms_id + struct.pack("<Q", len(slots))
    for components in slots:
        body += struct.pack("<Q", len(components)) + b"".join(components)
    return _wrap(like, body)


def drop_component(blob: bytes) -> bytes:
    """The same keys with the last component of every slot removed."""
    parms_id, slots = split_kswitch(blob)
    return join_kswitch(blob, parms_id, [s[:-1] if s else s for s in slots])


def uncompressed(blob: bytes) -> bytes:
    """The same SEAL object saved without compression (SEAL loads either)."""
    return _wrap(blob, _body(blob))
