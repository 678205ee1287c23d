"""A list of ciphertexts as one binary body: ``b"CRCTS\\n"``, a JSON line, the blobs.

The JSON line carries the format tag, version, free metadata (``meta``) and every blob's
length; :func:`unpack` checks each length against what is left, so a truncated or padded
body is refused before any SEAL parser sees it. No pickle, no base64.
"""

from __future__ import annotations

import json

from crypto_nn.errors import ContextError
from crypto_nn.wire import header as _header

MAGIC = b"CRCTS\n"
FORMAT = "cryptorobust.ciphertexts"
VERSION = 1
MAX_HEADER = 1 << 20


def pack(blobs: list[bytes], meta: dict | None = None) -> bytes:
    header = {
        "format": FORMAT,
        "version": VERSION,
        "meta": meta or {},
        "sizes": [len(b) for b in blobs],
    }
    return MAGIC + json.dumps(header).encode() + b"\n" + b"".join(blobs)


def unpack(
    data: bytes, *, max_count: int = 100_000, nonempty: bool = False
) -> tuple[dict, list[bytes]]:
    """→ (meta, blobs); a :class:`ContextError` naming the problem for anything malformed.

    ``nonempty``: every blob must hold at least one byte (what a server asks of inputs)."""
    header, offset = read_header(data)
    sizes = header_sizes(header, max_count=max_count, nonempty=nonempty)
    if offset + sum(sizes) != len(data):
        raise ContextError(
            f"ciphertext list declares {sum(sizes)} bytes of blobs, the body holds "
            f"{len(data) - offset}"
        )
    blobs = []
    for size in sizes:
        blobs.append(data[offset : offset + size])
        offset += size
    return header.get("meta", {}), blobs


def read_header(data: bytes) -> tuple[dict, int]:
    """The checked JSON header and where the blobs start (the server reads it early, from
    the first bytes of a body, to refuse a lying body before the rest arrives)."""
    return _header.read(
        data,
        magic=MAGIC,
        fmt=FORMAT,
        version=VERSION,
        max_header=MAX_HEADER,
        what="ciphertext list (CRCTS)",
    )


def declared_length(prefix: bytes) -> int | None:
    """The whole body's length as its header declares it, from the first bytes of a body
    (None until the header line is complete); malformed headers raise at once."""
    if b"\n" not in prefix[len(MAGIC) :]:
        if len(prefix) > len(MAGIC) + MAX_HEADER:
            read_header(prefix)  # raises: the header never ends
        return None
    header, offset = read_header(prefix)
    return offset + sum(header_sizes(header, max_count=10**7, nonempty=False))


def header_sizes(header: dict, *, max_count: int, nonempty: bool) -> list[int]:
    """The blob lengths a checked header declares (a ContextError if they, or the header's
    ``meta``, are malformed)."""
    if not isinstance(header.get("meta", {}), dict):
        raise ContextError("ciphertext list: 'meta' must be a JSON object")
    return _header.sizes(
        header.get("sizes"),
        field="sizes",
        what="ciphertext list",
        max_count=max_count,
        nonempty=nonempty,
    )
