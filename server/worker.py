"""Evaluation in worker processes: TenSEAL holds the GIL, so the event loop never runs it.

Each worker compiles a model's plan once and keeps the evaluators of recently used
contexts (loading one costs ~0.1–2 s). Everything crossing the process boundary is bytes
and paths.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from crypto_nn.ckks_batch import BatchEvaluator
from crypto_nn.errors import ContextError
from crypto_nn.plan import Plan
from server.models import compile_checkpoint

_plans: dict[str, Plan] = {}
_evaluators: OrderedDict[tuple[str, str], BatchEvaluator] = OrderedDict()


def evaluate(
    model_path: str,
    calibration_images: int,
    key_id: str,
    context_path: str,
    payloads: list[bytes],
    cache_size: int,
) -> list[bytes]:
    if model_path not in _plans:
        _plans[model_path] = compile_checkpoint(Path(model_path), calibration_images)
    cache_key = (model_path, key_id)
    evaluator = _evaluators.pop(cache_key, None)
    if evaluator is None:
        evaluator = BatchEvaluator(_plans[model_path], Path(context_path).read_bytes())
    _evaluators[cache_key] = evaluator
    while len(_evaluators) > cache_size:
        _evaluators.popitem(last=False)
    try:
        return evaluator.run_bytes(payloads)
    except (RuntimeError, ValueError) as exc:  # SEAL refusing a hostile but loadable ciphertext
        raise ContextError(f"evaluation failed on these ciphertexts ({exc})") from None
