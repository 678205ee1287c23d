"""Hostile inputs for the server tests: SEAL keys that load but are not whole, and
structure-aware mutations of the two wire formats' framing and part headers.

SEAL's KSwitchKeys layout (kswitchkeys.cpp, ``save_members``): parms_id (4 × uint64), the
number of key slots, then per slot its number of components and each component saved
as a whole SEAL object (uncompressed, 16-byte header with its own total size).
"""

from __future__ import annotations

import json
import struct

import zstandard

from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import framing


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


# --- structure-aware mutations of the wire headers ---------------------------------------
def _framed(magic: bytes, header: object, tail: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return magic + raw + b"\n" + tail


def context_mutations(valid: bytes) -> dict[str, bytes]:
    header, parts = ctx_format.unpack(valid)
    body = b"".join(parts.values())
    good = {"format": ctx_format.FORMAT, "version": 1, "scheme": "ckks"}
    listed = [[n, len(p)] for n, p in parts.items()]
    m = ctx_format.MAGIC
    return {
        "nested JSON": _framed(m, b"[" * 3000 + b"]" * 3000, body),
        "nested in a field": _framed(m, {**good, "parts": json.loads("[" * 500 + "]" * 500)}, body),
        "huge number": _framed(
            m, b'{"format": "cryptorobust.context", "version": ' + b"9" * 5000 + b"}"
        ),
        "huge part size": _framed(m, {**good, "parts": [["params", 10**30]]}, body),
        "version is a string": _framed(m, {**good, "version": "1", "parts": listed}, body),
        "version true": _framed(m, {**good, "version": True, "parts": listed}, body),
        "parts is a dict": _framed(m, {**good, "parts": {"params": 5}}, body),
        "parts is a number": _framed(m, {**good, "parts": 7}, body),
        "parts missing": _framed(m, good, body),
        "scheme missing": _framed(
            m, {k: v for k, v in good.items() if k != "scheme"} | {"parts": listed}, body
        ),
        "scheme bfv": _framed(m, {**good, "scheme": "bfv", "parts": listed}, body),
        "size is a float": _framed(m, {**good, "parts": [["params", 1.5]]}, body),
        "size is bool": _framed(m, {**good, "parts": [["params", True]]}, body),
        "size-0 part": _framed(m, {**good, "parts": [["params", 0], *listed]}, body),
        "size-0 relin_keys": _framed(
            m, {**good, "parts": [listed[0], ["relin_keys", 0]]}, parts["params"]
        ),
        "duplicate part": _framed(
            m, {**good, "parts": [listed[0], listed[0]]}, parts["params"] * 2
        ),
        "numbered part": _framed(
            m,
            {**good, "parts": [*listed, ["relin_keys.1", len(parts["relin_keys"])]]},
            body + parts["relin_keys"],
        ),
        "header is a list": _framed(m, [1, 2, 3], body),
        "header is null": _framed(m, None, body),
        "not UTF-8": _framed(m, b"\xff\xfe{}", body),
        "no newline": m + b"{" * 5000,
        "trailing bytes": valid + b"\x00" * 10,
        "params part holds relin keys": _framed(
            m, {**good, "parts": [["params", len(parts["relin_keys"])]]}, parts["relin_keys"]
        ),
    }


def framing_mutations(cts: list[bytes]) -> dict[str, bytes]:
    good = {"format": framing.FORMAT, "version": 1, "meta": {}}
    sizes = [len(c) for c in cts]
    body = b"".join(cts)
    m = framing.MAGIC
    return {
        "nested JSON": _framed(m, b"[" * 100_000 + b"]" * 100_000, body),
        "huge number": _framed(
            m, b'{"format": "cryptorobust.ciphertexts", "sizes": [' + b"7" * 5000 + b"]}"
        ),
        "sizes missing": _framed(m, good, body),
        "sizes is a dict": _framed(m, {**good, "sizes": {"a": 1}}, body),
        "sizes of strings": _framed(m, {**good, "sizes": [str(s) for s in sizes]}, body),
        "sizes of bools": _framed(m, {**good, "sizes": [True] * len(sizes)}, b"x" * len(sizes)),
        "size-0 ciphertext": _framed(m, {**good, "sizes": [0, *sizes[1:]]}, body[sizes[0] :]),
        "negative size": _framed(m, {**good, "sizes": [-1, *sizes]}, body),
        "version 99": _framed(m, {**good, "version": 99, "sizes": sizes}, body),
        "meta is a list": _framed(m, {**good, "meta": [1], "sizes": sizes}, body),
        "trailing bytes in a ciphertext": framing.pack([cts[0] + b"\x00" * 8, *cts[1:]]),
        "trailing bytes after the list": framing.pack(cts) + b"\x00",
        "a context instead": _framed(ctx_format.MAGIC, {}, body),
        "header never ends": m + b" " * (framing.MAX_HEADER + 10),
        "one ciphertext cut in two": framing.pack([cts[0][:100], cts[0][100:], *cts[1:-1]]),
    }


# --- compressed streams (the second hostile round): bombs, bytes after an object's members
def seal_frame(like: bytes, frame: bytes) -> bytes:
    """A SEAL header copied from ``like`` over ``frame``, declared zstd-compressed."""
    return like[:5] + b"\x02" + like[6:8] + struct.pack("<Q", 16 + len(frame)) + frame


def inside(blob: bytes, extra: bytes) -> bytes:
    """``blob`` with ``extra`` after its members, inside the same zstd frame."""
    return seal_frame(blob, zstandard.ZstdCompressor().compress(_body(blob) + extra))


def declaring(size: int, payload: bytes = b"\0" * 64) -> bytes:
    """A one-block zstd frame whose header declares ``size`` bytes of content."""
    head = b"\x28\xb5\x2f\xfd\xc0\x38" + struct.pack("<Q", size)
    return head + ((len(payload) << 3) | 1).to_bytes(3, "little") + payload


def rle_bomb(gib: int) -> bytes:
    """A zstd frame of RLE blocks, 4 bytes each for 128 KiB of output (32 GiB per MB), with
    no content size in its header."""
    block = ((1 << 17) << 3 | 1 << 1).to_bytes(3, "little") + b"\0"
    last = ((1 << 17) << 3 | 1 << 1 | 1).to_bytes(3, "little") + b"\0"
    return b"\x28\xb5\x2f\xfd\x00\x38" + block * (gib * 8192 - 1) + last
