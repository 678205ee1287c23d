"""A list of ciphertexts as one binary body: ``b"CRCTS\\n"``, a JSON line, the blobs.

The JSON line carries the format tag, version, free metadata (``meta``) and every blob's
length; :func:`unpack` checks each length against what is left, so a truncated or padded
body is refused before any SEAL parser sees it. No pickle, no base64.
"""

from __future__ import annotations

import json

from crypto_nn.errors import ContextError

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


def unpack(data: bytes, *, max_count: int = 100_000) -> tuple[dict, list[bytes]]:
    """→ (meta, blobs); a :class:`ContextError` naming the problem for anything malformed."""
    if not data.startswith(MAGIC):
        raise ContextError("body is not a cryptorobust ciphertext list (missing CRCTS header)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER)
    if end < 0:
        raise ContextError("ciphertext list header is missing its end or is too long")
    try:
        header = json.loads(data[len(MAGIC) : end])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContextError(f"ciphertext list header is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ContextError("ciphertext list header has the wrong format tag")
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise ContextError(
            f"ciphertext list version {header.get('version')} is newer than {VERSION}"
        )
    sizes = header.get("sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) > max_count
        or not all(isinstance(s, int) and s >= 0 for s in sizes)
    ):
        raise ContextError(f"ciphertext list needs 'sizes': at most {max_count} non-negative ints")
    if end + 1 + sum(sizes) != len(data):
        raise ContextError(
            f"ciphertext list declares {sum(sizes)} bytes of blobs, the body holds "
            f"{len(data) - end - 1}"
        )
    blobs, offset = [], end + 1
    for size in sizes:
        blobs.append(data[offset : offset + size])
        offset += size
    meta = header.get("meta", {})
    return (meta if isinstance(meta, dict) else {}), blobs
