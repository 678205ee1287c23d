"""What every evaluation worker keeps between requests, whatever the backend: plans
loaded from their files, and the evaluators of recently used (plan, key) pairs (loading
a context's keys costs ~0.1–2 s). One module, so the process pool and Ray workers cache
alike."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from crypto_nn import roles
from crypto_nn.errors import ContextError
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import seal_version


class EvaluatorCache:
    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._plans: dict[tuple[str, float], roles.Plan] = {}  # by (path, mtime)
        self._evaluators: OrderedDict[tuple[str, str], roles.Evaluator] = OrderedDict()

    def plan(self, path: str) -> tuple[roles.Plan, str]:
        """The plan saved at ``path`` (reloaded if the server saved a new one) and the key
        its evaluators are cached under."""
        key = (path, Path(path).stat().st_mtime)
        if key not in self._plans:
            self._plans = {k: v for k, v in self._plans.items() if k[0] != path}
            self._plans[key] = roles.load(path)
        return self._plans[key], f"{path}@{key[1]}"

    def evaluator(
        self, plan: roles.Plan, plan_key: str, key_id: str, context: bytes | Path
    ) -> roles.Evaluator:
        """The evaluator of ``plan`` for this key; ``context`` (bytes, or the path of the
        stored context) is read only when it is not cached."""
        cache_key = (plan_key, key_id)
        evaluator = self._evaluators.pop(cache_key, None)
        if evaluator is None:
            data = context if isinstance(context, bytes) else Path(context).read_bytes()
            evaluator = plan.evaluator(data)
            if ctx_format.unpack(data)[0].get("seal") is not None:  # a SEAL 4.1 client
                evaluator = seal_version.Translating(evaluator)
        self._evaluators[cache_key] = evaluator
        while len(self._evaluators) > self.size:
            self._evaluators.popitem(last=False)
        return evaluator


def run(evaluator: roles.Evaluator, payloads: list[bytes], on_progress, segment: int):
    """Evaluate; anything SEAL raises on a hostile but loadable ciphertext becomes a
    ContextError the client reads (never a worker's traceback); ``MemoryError`` stays
    itself (the worker's memory limit: the pool replaces the worker)."""
    try:
        return evaluator.run(payloads, on_progress, segment=segment)
    except (ContextError, MemoryError):
        raise
    except Exception as exc:
        raise ContextError(
            f"evaluation failed on these ciphertexts ({type(exc).__name__}: {exc})"
        ) from None
