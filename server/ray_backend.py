"""``--backend ray``: batch jobs as Ray tasks, on a local Ray or a cluster (``--ray-address``).

A task gets everything as values — the compiled plan, the context bytes, the ciphertext
bytes — so it runs on any node, with no shared disk and no data sets there. Ray workers
are long-lived processes: each keeps the evaluators of recent (plan, key) pairs, like the
local process pool does. Ray is an optional extra (``pip install cryptorobust[ray]``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from crypto_nn.plan import Plan
from nets.errors import UserError

_evaluators: OrderedDict[tuple[str, str], object] = OrderedDict()
CACHE_SIZE = 4


def evaluate_task(
    plan: Plan, key_id: str, context: bytes, payloads: list[bytes]
) -> tuple[list[bytes], dict]:
    """Runs inside a Ray worker → (output ciphertexts, where it ran)."""
    import os

    import ray

    from server.worker import EVALUATORS

    key = (plan.name, key_id)
    evaluator = _evaluators.pop(key, None) or EVALUATORS[plan.packing](plan, context)
    _evaluators[key] = evaluator
    while len(_evaluators) > CACHE_SIZE:
        _evaluators.popitem(last=False)
    ran_on = {
        "backend": "ray",
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }
    return evaluator.run_bytes(payloads), ran_on


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

    async def evaluate(
        self, plan: Plan, key_id: str, context: bytes, payloads: list[bytes]
    ) -> tuple[list[bytes], dict]:
        ref = self._task.remote(plan, key_id, context, payloads)
        return await asyncio.wrap_future(ref.future())

    def shutdown(self) -> None:
        self.ray.shutdown()
