"""The public evaluation context: what a client registers with a server. Bytes, no pickle.

Layout: ``b"CRCTX\\n"``, one line of JSON (format, version, scheme, optionally the
client's id, the byte length of each part), then the parts back to back. Parts are SEAL's
own serialisations: ``params`` always; ``relin_keys`` / ``galois_keys`` only when a plan
needs them (batch CKKS needs neither). A secret key has no part name here, so it cannot
be sent.

``seal``: ``"4.1"`` when the parts (and the client's ciphertexts) are SEAL 4.1 objects —
node-seal, the browser client. The server rewrites their version headers
(:mod:`crypto_nn.wire.seal_version`) at registration and for every request of that key;
without it, parts are read as the server's own SEAL version.

``client``: 32 hex digits a client derives from its secret key (:func:`client_id`). The
server's key id hashes the whole context, so two clients whose contexts hold no key
(a client-aided BFV plan needs only the public parameters) still get different ids —
and their own job quotas — while one client re-registering gets its own id back.
"""

from __future__ import annotations

import hashlib
import json
import re

from crypto_nn.errors import ContextError
from crypto_nn.wire import header as _header

MAGIC = b"CRCTX\n"
FORMAT = "cryptorobust.context"
VERSION = 1
KNOWN_PARTS = ("params", "relin_keys", "galois_keys")
MAX_HEADER = 4096
MAX_PARTS = 64
_PART = re.compile(r"(params|relin_keys|galois_keys)(\.(0|[1-9][0-9]{0,3}))?", re.ASCII)
_CLIENT = re.compile(r"[0-9a-f]{32}", re.ASCII)


def _known_part(name: object) -> bool:
    """``params``, ``relin_keys``, ``galois_keys``, or one of them with ``.i`` (BFV: per
    t_i): ASCII digits, no sign, no space, no leading zero — one spelling per part."""
    return isinstance(name, str) and _PART.fullmatch(name) is not None


def client_id(secret: bytes) -> str:
    """A client's id from its serialised secret key: stable for the same keys, unlinkable
    to them (a keyed hash of a high-entropy secret), never the key itself."""
    return hashlib.blake2b(secret, digest_size=16, person=b"cryptorobust.id").hexdigest()


SEAL_VERSIONS = ("4.1",)  # a ``seal`` a client may declare (absent: the server's own)


def pack(
    scheme: str, parts: dict[str, bytes], client: str | None = None, seal: str | None = None
) -> bytes:
    header = {"format": FORMAT, "version": VERSION, "scheme": scheme}
    if client is not None:
        header["client"] = client
    if seal is not None:
        header["seal"] = seal
    header["parts"] = [[name, len(data)] for name, data in parts.items()]
    return MAGIC + json.dumps(header).encode() + b"\n" + b"".join(parts.values())


def unpack(data: bytes) -> tuple[dict[str, object], dict[str, bytes]]:
    """Split a context into (header, parts), checking every length; never trusts the sender."""
    if not data.startswith(MAGIC):
        raise ContextError(
            "not a cryptorobust context (missing CRCTX header); make one with the plan's "
            "Client (python -m client keygen)"
        )
    header, offset = _header.read(
        data, magic=MAGIC, fmt=FORMAT, version=VERSION, max_header=MAX_HEADER, what="context"
    )
    if not isinstance(header.get("scheme"), str):
        raise ContextError("context header needs a 'scheme' (ckks or bfv)")
    client = header.get("client")
    if client is not None and not (isinstance(client, str) and _CLIENT.fullmatch(client)):
        raise ContextError("context header: 'client' must be 32 lowercase hex digits")
    if "seal" in header and header["seal"] not in SEAL_VERSIONS:
        raise ContextError(
            f"context header: 'seal' {str(header['seal'])[:20]!r} — declare one of "
            f"{SEAL_VERSIONS}, or leave it out for the server's own SEAL version"
        )
    entries = header.get("parts")
    if not isinstance(entries, list) or len(entries) > MAX_PARTS:
        raise ContextError(f"context header needs 'parts': a list of at most {MAX_PARTS}")
    parts = {}
    for entry in entries:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not _known_part(entry[0])
            or not _header.is_int(entry[1])
            or entry[1] <= 0
        ):
            raise ContextError(
                f"context part {str(entry)[:80]} is not one of {KNOWN_PARTS} with a length ≥ 1"
            )
        name, size = entry
        if name in parts:
            raise ContextError(f"context part {name} appears twice")
        if offset + size > len(data):
            raise ContextError(
                f"context part {name} declares {size} bytes, only "
                f"{len(data) - offset} remain: truncated"
            )
        parts[name] = data[offset : offset + size]
        offset += size
    if offset != len(data):
        raise ContextError(f"{len(data) - offset} unexpected bytes after the context parts")
    if not any(name.partition(".")[0] == "params" for name in parts):
        raise ContextError("context has no 'params' part")
    return header, parts


def declared_length(prefix: bytes) -> int | None:
    """The context's length as its header declares it (None until the header ends)."""
    if b"\n" not in prefix[len(MAGIC) :]:
        if len(prefix) > len(MAGIC) + MAX_HEADER:
            unpack(prefix)  # raises: the header never ends
        return None
    header, offset = _header.read(
        prefix, magic=MAGIC, fmt=FORMAT, version=VERSION, max_header=MAX_HEADER, what="context"
    )
    entries = header.get("parts")
    if not isinstance(entries, list) or not all(
        isinstance(e, list) and len(e) == 2 and _header.is_int(e[1]) and e[1] > 0 for e in entries
    ):
        raise ContextError("context header needs 'parts': a list of [name, length ≥ 1]")
    return offset + sum(e[1] for e in entries)
