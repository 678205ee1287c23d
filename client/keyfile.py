"""The client's key file: the secret key, the plan it was made for and its server key_id.

``b"CRKEY\\n"`` + one JSON line (format, version, server, model, key_id, plan description)
+ the SEAL secret key. Written with mode 0600 and never sent anywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nets.errors import UserError

MAGIC = b"CRKEY\n"
FORMAT = "cryptorobust.keyfile"


def write(path: Path, *, header: dict, secret: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(MAGIC + json.dumps({"format": FORMAT, "version": 1, **header}).encode() + b"\n")
        f.write(secret)
    os.chmod(path, 0o600)  # also when the file existed with wider permissions


def read(path: Path) -> tuple[dict, bytes]:
    if not path.is_file():
        raise UserError(f"key file {path} not found; make one with `python -m client keygen`")
    raw = path.read_bytes()
    end = raw.find(b"\n", len(MAGIC))
    if not raw.startswith(MAGIC) or end < 0:
        raise UserError(f"{path} is not a cryptorobust key file")
    try:
        header = json.loads(raw[len(MAGIC) : end])
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: unreadable header ({exc})") from None
    if header.get("format") != FORMAT:
        raise UserError(f"{path} is not a cryptorobust key file")
    return header, raw[end + 1 :]
