"""``--backend ray``: evaluations as Ray tasks, on a local Ray or a cluster (``--ray-address``).

A task gets everything as values — the compiled plan (put in Ray's object store once per
model), the context bytes, the ciphertext bytes — so it runs on any node, with no shared
disk and no data sets there. Ray workers are long-lived processes: each keeps plans and
evaluators in the same :class:`server.evaluators.EvaluatorCache` the local pool uses.
Ray is an optional extra (``pip install cryptorobust[ray]``).
"""

from __future__ import annotations

import asyncio

from nets.errors import UserError
from server.evaluators import EvaluatorCache, run

_cache = EvaluatorCache()


def evaluate_task(
    plan, plan_key: str, key_id: str, context: bytes, payloads: list[bytes], segment: int
) -> tuple[list[bytes], dict]:
    """Runs inside a Ray worker → (output ciphertexts, where it ran)."""
    import os

    import ray

    evaluator = _cache.evaluator(plan, plan_key, key_id, context)
    ran_on = {
        "backend": "ray",
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }
    return run(evaluator, payloads, None, segment), ran_on


class RayBackend:
    def __init__(self, address: str | None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError(
                "--backend ray needs Ray: pip install 'cryptorobust[ray]' (or pip install ray)"
            ) from None
        self.ray = ray
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
            )
        self._task = ray.remote(max_retries=0)(evaluate_task)
        self._plans: dict[str, object] = {}  # plan key → object ref

    async def evaluate(
        self, model, key_id: str, ctx_path, payloads: list[bytes], segment: int = 0
    ) -> tuple[list[bytes], dict]:
        plan_key = f"{model.plan_path}@{model.plan_path.stat().st_mtime}"
        if plan_key not in self._plans:
            self._plans[plan_key] = self.ray.put(model.plan)
        ref = self._task.remote(
            self._plans[plan_key], plan_key, key_id, ctx_path.read_bytes(), payloads, segment
        )
        return await asyncio.wrap_future(ref.future())

    def shutdown(self) -> None:
        self.ray.shutdown()
