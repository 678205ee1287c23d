"""Drops this package's numba cache when any kernel source changed.

Why our own check: numba keys a cached function by its *own* file's timestamp, but the
machine code it stores also holds every kernel it calls from other modules, compiled in.
Change ``ntt._forward_row`` and ``keyswitch._keyswitch`` keeps running the old transform
from its cache — here that means wrong ciphertexts, not slow ones (seen while making the NTT
lazy: the key switch went on using the old tables' convention). So the sources of every
module with a numba kernel are hashed together; when the hash differs from the one stamped
beside the cache, the package's cached kernels are deleted and recompiled on first use.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
STAMP = "numba-sources.sha256"


def sources_digest(root: Path = PACKAGE) -> str:
    """One hash over every module that mentions numba (each file read once: this runs at
    import)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        source = path.read_bytes()
        if b"numba" in source:
            h.update(str(path.relative_to(root)).encode())
            h.update(source)
    return h.hexdigest()


def ensure_fresh(root: Path = PACKAGE) -> bool:
    """Delete ``root``'s cached kernels when the sources changed since they were stamped;
    True when it deleted. A relocated cache (``NUMBA_CACHE_DIR``) is left to its owner."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return False
    digest = sources_digest(root)
    stamp = root / "__pycache__" / STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    for cache in root.rglob("__pycache__"):
        for path in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            path.unlink(missing_ok=True)  # another process may have removed it first
    try:
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only install: numba cannot cache there either
        pass
    return True
