"""A SEAL object's compressed body, inflated within a bound *before* anything is allocated
— the one place every reader of client bytes (key parts, ciphertexts, seeded inputs,
residues) decompresses.

Why our own frame walk around ``zstandard``: python-zstandard's one-shot ``decompress``
allocates whatever size the frame header declares (a 33 KB frame declaring 2 GiB made a
worker inflate 2 GB), silently ignores anything after the first frame (a second frame,
a skippable frame, plain bytes: places to hide a secret key), and SEAL 4.3's own loader
inflates a whole stream into memory before parsing it. So a zstd body must be exactly one
frame, walked block by block (RFC 8878 §3.1) to prove where it ends and how much it can
produce at most; the frame is refused when its declared content size or that maximum
exceeds the bound, and only then decompressed, into at most the bound.

:func:`uncompressed` hands SEAL the inflated body with compression mode *none*, for which
SEAL's loader checks that its members used every byte ("invalid data size"): nothing can
ride inside a stream after the members either. Every failure (a malformed frame, the
decompressor's own errors, ``MemoryError``) is the same :class:`ContextError`.
"""

from __future__ import annotations

import struct
import zlib

import zstandard

from crypto_nn.errors import ContextError

MAGIC = b"\x5e\xa1"
HEADER = struct.Struct("<2sBBBBHQ")  # magic, header size, major, minor, compression, 0, total
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BLOCK_MAX = 1 << 17  # a zstd block regenerates at most 128 KiB
NONE, ZLIB, ZSTD = 0, 1, 2
_ZSTD = zstandard.ZstdDecompressor()


def header(data: bytes, *, what: str) -> tuple[tuple[int, int], int]:
    """(SEAL version, compression mode) of exactly one SEAL object."""
    if len(data) <= HEADER.size:
        raise ContextError(f"{what} is shorter than SEAL's 16-byte header")
    magic, hsize, major, minor, compression, _, total = HEADER.unpack_from(data)
    if magic != MAGIC or hsize != HEADER.size or total != len(data):
        raise ContextError(f"{what} is not exactly one SEAL object (header or size wrong)")
    if compression not in (NONE, ZLIB, ZSTD):
        raise ContextError(f"{what}: SEAL compression mode {compression} is not known")
    return (major, minor), compression


def body(data: bytes, bound: int, *, what: str = "payload") -> tuple[tuple[int, int], bytes]:
    """(SEAL version, the uncompressed body of at most ``bound`` bytes)."""
    version, compression = header(data, what=what)
    raw = memoryview(data)[HEADER.size :]
    try:
        if compression == ZSTD:
            out = zstd_frame(raw, bound, what=what)
        elif compression == ZLIB:
            out = zlib_stream(raw, bound, what=what)
        else:
            out = bytes(raw)
    except MemoryError:
        raise ContextError(f"{what}: not enough memory to inflate its body") from None
    if len(out) > bound:
        raise ContextError(f"{what}: the body holds {len(out)} bytes, at most {bound} fit")
    return version, out


def uncompressed(data: bytes, bound: int, *, what: str = "payload") -> bytes:
    """The same SEAL object with compression mode *none*: SEAL then parses it in place and
    refuses bytes its members do not use. Uncompressed input comes back as it is."""
    version, compression = header(data, what=what)
    if compression == NONE:
        if len(data) - HEADER.size > bound:
            raise ContextError(f"{what}: {len(data)} bytes, at most {bound} fit")
        return data
    _, out = body(data, bound, what=what)
    return HEADER.pack(MAGIC, HEADER.size, *version, NONE, 0, HEADER.size + len(out)) + out


def zstd_frame(raw: memoryview | bytes, bound: int, *, what: str) -> bytes:
    """Exactly one zstd frame → its content, refused before decompression when it could
    produce more than ``bound`` bytes."""
    raw = memoryview(raw)
    if bytes(raw[:4]) != ZSTD_MAGIC:
        raise ContextError(f"{what}: the body is not one zstd frame (skippable or unknown magic)")
    try:
        params = zstandard.get_frame_parameters(raw)
        start = zstandard.frame_header_size(raw)
    except zstandard.ZstdError as exc:
        raise ContextError(f"{what}: malformed zstd frame header ({exc})") from None
    if params.dict_id:
        raise ContextError(f"{what}: a zstd frame that needs dictionary {params.dict_id}")
    declared = params.content_size
    known = declared != zstandard.CONTENTSIZE_UNKNOWN
    if known and declared > bound:
        raise ContextError(
            f"{what}: the zstd frame declares {declared} bytes; at most {bound} fit this object"
        )
    end, most = _walk_blocks(raw, start, bool(params.has_checksum), bound, what=what)
    if end != len(raw):
        raise ContextError(
            f"{what}: {len(raw) - end} bytes after the zstd frame; one frame, nothing after it"
        )
    capped = not known and most > bound  # decompression stops at the bound
    try:
        return _ZSTD.decompress(raw, max_output_size=0 if known else max(min(most, bound), 1))
    except zstandard.ZstdError as exc:
        if capped:
            raise ContextError(
                f"{what}: the zstd frame unfolds past {bound} bytes, the most this object "
                "can hold (or is corrupt)"
            ) from None
        raise ContextError(f"{what}: the zstd frame does not decompress ({exc})") from None


def _walk_blocks(
    raw: memoryview, offset: int, checksum: bool, bound: int, *, what: str
) -> tuple[int, int]:
    """→ (where the frame ends, the most bytes its blocks can regenerate); refused as soon
    as its raw and RLE blocks alone, whose sizes are exact, pass ``bound``."""
    most = exact = 0
    while True:
        if offset + 3 > len(raw):
            raise ContextError(f"{what}: the zstd frame is truncated (no last block)")
        head = int.from_bytes(raw[offset : offset + 3], "little")
        last, kind, size = head & 1, (head >> 1) & 3, head >> 3
        offset += 3
        if kind == 0:  # raw
            offset, most, exact = offset + size, most + size, exact + size
        elif kind == 1:  # RLE: one byte, repeated size times
            offset, most, exact = offset + 1, most + size, exact + size
        elif kind == 2:  # compressed
            offset, most = offset + size, most + BLOCK_MAX
        else:
            raise ContextError(f"{what}: reserved zstd block type")
        if size > BLOCK_MAX:
            raise ContextError(f"{what}: a zstd block of {size} bytes (at most {BLOCK_MAX})")
        if exact > bound:
            raise ContextError(
                f"{what}: the zstd frame unfolds past {bound} bytes, the most this object can hold"
            )
        if last:
            return offset + (4 if checksum else 0), most


def zlib_stream(raw: memoryview | bytes, bound: int, *, what: str) -> bytes:
    """One zlib stream → its content, at most ``bound`` bytes produced, nothing after it."""
    inflate = zlib.decompressobj()
    try:
        out = inflate.decompress(bytes(raw), bound + 1)
    except zlib.error as exc:
        raise ContextError(f"{what}: the zlib stream does not decompress ({exc})") from None
    if len(out) > bound:
        raise ContextError(f"{what}: the zlib stream unfolds past {bound} bytes")
    if not inflate.eof or inflate.unused_data or inflate.unconsumed_tail:
        raise ContextError(f"{what}: the zlib stream is truncated or followed by other bytes")
    return out
