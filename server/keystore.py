"""Registered contexts on disk: ``state/keys/<id>.ctx`` (0600) and ``<id>.json`` (metadata).

Bounded: at most ``max_keys`` contexts and ``max_bytes`` in all; past either, the least
recently used keys are evicted (never one a queued or running job still needs). A key's
use is recorded by touching its metadata file, so the order survives a restart.
Metadata is read once and kept in memory; the files are the truth after a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException


@dataclass
class KeyMeta:
    key_id: str
    models: list[str]
    refused: dict[str, str]
    size: int
    check_version: int
    last_used: float


def _write_private(path: Path, data: bytes) -> None:
    """Atomically, readable by the server's user only (contexts hold the client's keys)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


class KeyStore:
    def __init__(self, root: Path, *, max_keys: int, max_bytes: int) -> None:
        self.root = root / "keys"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_keys, self.max_bytes = max_keys, max_bytes
        self._meta: dict[str, KeyMeta] = {}
        for meta_path in self.root.glob("*.json"):
            ctx_path = meta_path.with_suffix(".ctx")
            try:
                raw = json.loads(meta_path.read_text())
                self._meta[meta_path.stem] = KeyMeta(
                    meta_path.stem,
                    list(raw["models"]),
                    dict(raw.get("refused", {})),
                    ctx_path.stat().st_size,
                    int(raw.get("check_version", 1)),
                    meta_path.stat().st_mtime,
                )
                ctx_path.chmod(0o600)  # files from before keys were private
            except (OSError, ValueError, KeyError, TypeError):
                self._remove(meta_path.stem)  # half-written or foreign: not a usable key
        for stray in self.root.glob("*.tmp"):
            stray.unlink(missing_ok=True)

    def ctx_path(self, key_id: str) -> Path:
        return self.root / f"{key_id}.ctx"

    def get(self, key_id: str) -> KeyMeta | None:
        return self._meta.get(key_id)

    def touch(self, key_id: str) -> None:
        meta = self._meta.get(key_id)
        if meta is not None:
            meta.last_used = time.time()
            with contextlib.suppress(OSError):
                os.utime(self.root / f"{key_id}.json")

    def usage(self) -> dict:
        return {"keys": len(self._meta), "bytes": sum(m.size for m in self._meta.values())}

    def add(
        self,
        key_id: str,
        context: bytes,
        models: list[str],
        refused: dict[str, str],
        check_version: int,
        in_use: Callable[[str], bool],
    ) -> list[str]:
        """Store a checked context; → the key ids evicted to make room (507 if none can go)."""
        if len(context) > self.max_bytes:
            raise HTTPException(507, f"the context ({len(context)} bytes) exceeds the key store")
        evicted = []
        if key_id not in self._meta:
            while (
                len(self._meta) + 1 > self.max_keys
                or self.usage()["bytes"] + len(context) > self.max_bytes
            ):
                victims = sorted(
                    (m for m in self._meta.values() if not in_use(m.key_id)),
                    key=lambda m: m.last_used,
                )
                if not victims:
                    raise HTTPException(
                        507,
                        f"key store full ({len(self._meta)} keys, all in use by jobs); "
                        "retry when jobs finish",
                        headers={"Retry-After": "30"},
                    )
                evicted.append(victims[0].key_id)
                self._remove(victims[0].key_id)
        _write_private(self.ctx_path(key_id), context)
        meta = {"models": models, "refused": refused, "check_version": check_version}
        _write_private(self.root / f"{key_id}.json", json.dumps(meta).encode())
        self._meta[key_id] = KeyMeta(
            key_id, models, refused, len(context), check_version, time.time()
        )
        return evicted

    def _remove(self, key_id: str) -> None:
        self._meta.pop(key_id, None)
        for suffix in (".ctx", ".json"):
            (self.root / f"{key_id}{suffix}").unlink(missing_ok=True)
