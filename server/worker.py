"""Evaluation in worker processes: TenSEAL holds the GIL, so the event loop never runs it.

Each worker compiles a model's plan once and keeps the evaluators of recently used
contexts (loading one costs ~0.1–2 s). Everything crossing the process boundary is bytes
and paths.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from crypto_nn import framing
from crypto_nn.ckks_batch import BatchEvaluator
from crypto_nn.ckks_single import SingleEvaluator
from crypto_nn.errors import ContextError
from crypto_nn.plan import Plan
from server.models import compile_checkpoint


def _progress_writer(path: Path):
    """A job's progress, written where the API process reads it (atomic replace)."""

    def write(fraction: float) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{fraction:.4f}")
        tmp.replace(path)

    return write


_plans: dict[tuple[str, str], Plan] = {}
_evaluators: OrderedDict[tuple[str, str, str], BatchEvaluator | SingleEvaluator] = OrderedDict()
EVALUATORS = {"batch": BatchEvaluator, "single": SingleEvaluator}


def evaluate(
    model_path: str,
    packing: str,
    calibration_images: int,
    key_id: str,
    context_path: str,
    payloads: list[bytes] | str,
    cache_size: int,
    progress_path: str | None = None,
) -> list[bytes]:
    """``payloads``: the ciphertexts, or the path of a job's input (framing bytes on disk,
    so a queued job's inputs never sit in the API process)."""
    if isinstance(payloads, str):
        payloads = framing.unpack(Path(payloads).read_bytes(), nonempty=True)[1]
    plan_key = (model_path, packing)
    if plan_key not in _plans:
        _plans[plan_key] = compile_checkpoint(Path(model_path), calibration_images, packing)
    cache_key = (model_path, packing, key_id)
    evaluator = _evaluators.pop(cache_key, None)
    if evaluator is None:
        plan = _plans[plan_key]
        evaluator = EVALUATORS[packing](plan, Path(context_path).read_bytes())
    _evaluators[cache_key] = evaluator
    while len(_evaluators) > cache_size:
        _evaluators.popitem(last=False)
    try:
        if progress_path and packing == "batch":
            return evaluator.run_bytes(payloads, _progress_writer(Path(progress_path)))
        return evaluator.run_bytes(payloads)
    except ContextError:
        raise
    except Exception as exc:  # SEAL refusing a hostile but loadable ciphertext, in any type
        raise ContextError(
            f"evaluation failed on these ciphertexts ({type(exc).__name__}: {exc})"
        ) from None
