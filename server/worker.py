"""Evaluation in worker processes: TenSEAL holds the GIL, so the event loop never runs it.

A worker receives the path of a compiled plan (``state/plans``), never a checkpoint or a
data set, and keeps plans and evaluators in one :class:`EvaluatorCache`. Everything
crossing the process boundary is bytes and paths.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from crypto_nn.wire import framing
from server.evaluators import EvaluatorCache, run

_cache = EvaluatorCache()


def write_progress(path: Path, fraction: float) -> None:
    """A job's progress, written where the API process reads it (atomic replace)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{fraction:.4f}")
    tmp.replace(path)


def evaluate(
    plan_path: str,
    key_id: str,
    context_path: str,
    payloads: list[bytes] | str,
    cache_size: int,
    progress_path: str | None = None,
    segment: int = 0,
) -> list[bytes]:
    """``payloads``: the ciphertexts, or the path of a job's input (framing bytes on disk,
    so a queued job's inputs never sit in the API process). The pool watches the memory
    it takes (``server.memory``)."""
    if isinstance(payloads, str):
        payloads = framing.unpack(Path(payloads).read_bytes(), nonempty=True)[1]
    _cache.size = cache_size
    plan, plan_key = _cache.plan(plan_path)
    evaluator = _cache.evaluator(plan, plan_key, key_id, Path(context_path))
    progress = None if progress_path is None else partial(write_progress, Path(progress_path))
    return run(evaluator, payloads, progress, segment)


def warm_up() -> int:
    """Import the evaluators and load the GEMM route's and the ring routes' kernels
    (→ this worker's pid)."""
    import os

    import crypto_nn.bfv.batch  # noqa: F401
    import crypto_nn.ckks.batch  # noqa: F401
    import crypto_nn.ckks.single  # noqa: F401
    from crypto_nn import behz, rns
    from crypto_nn.ckks import single_ring
    from crypto_nn.wire import seeded

    rns.warm_up()
    seeded.warm_up()
    single_ring.warm_up()
    behz.warm_up()
    return os.getpid()


def loaded_modules() -> list[str]:
    """The modules this worker has imported (tests: no data set module, ever)."""
    import sys

    return sorted(sys.modules)
