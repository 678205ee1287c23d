"""The one-line JSON header both wire formats (contexts, ciphertext lists) start with.

``MAGIC``, a JSON object on one line, ``\\n``, the body. Everything here is hostile input:
the JSON may be nested thousands deep, hold numbers with thousands of digits, or give the
right keys the wrong types — each is a :class:`ContextError` naming the field, never a
``RecursionError`` or ``TypeError`` that would surface as a 500.
"""

from __future__ import annotations

import json

from crypto_nn.errors import ContextError


def read(data: bytes, *, magic: bytes, fmt: str, version: int, max_header: int, what: str):
    """→ (header dict, offset of the body); the format tag and version are checked."""
    if not data.startswith(magic):
        raise ContextError(f"{what}: missing the {magic.strip().decode()} header")
    end = data.find(b"\n", len(magic), len(magic) + max_header)
    if end < 0:
        raise ContextError(f"{what}: header has no end within {max_header} bytes")
    try:
        header = json.loads(data[len(magic) : end])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, nesting
        raise ContextError(f"{what}: header is not plain JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise ContextError(f"{what}: header has the wrong format tag (want {fmt!r})")
    got = header.get("version")
    if not is_int(got) or not 1 <= got <= version:
        raise ContextError(f"{what}: version {str(got)[:20]!r} is not one of 1..{version}")
    return header, end + 1


def is_int(value: object) -> bool:
    """An int that is not a bool (JSON ``true`` is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def sizes(value: object, *, field: str, what: str, max_count: int, nonempty: bool) -> list[int]:
    """A list of at most ``max_count`` byte lengths (≥ 1 when ``nonempty``)."""
    low = 1 if nonempty else 0
    if (
        not isinstance(value, list)
        or len(value) > max_count
        or not all(is_int(s) and s >= low for s in value)
    ):
        raise ContextError(
            f"{what}: {field!r} must be a list of at most {max_count} integers ≥ {low}"
        )
    return value
