"""Where evaluations run, behind one interface: ``await backend.evaluate(model, key_id,
context path, payloads, segment, progress_path) → (outputs, where it ran)``.

:class:`ProcessBackend` is the local pool of worker processes (``server.pool``), which
read the plan and the context from the state directory; ``server.ray_backend.RayBackend``
ships them as values to Ray tasks. Both cache plans and evaluators in workers alike
(``server.evaluators``). Sync requests always run on the local pool; jobs run on the
configured backend.
"""

from __future__ import annotations

from fastapi import HTTPException

from server import memory, worker
from server.pool import ProcessSlots, WorkerCrashed


class ProcessBackend:
    def __init__(self, slots: ProcessSlots, cache_size: int, memory_mb: int | None = None) -> None:
        self.slots, self.cache_size, self.memory_mb = slots, cache_size, memory_mb

    async def evaluate(
        self, model, key_id: str, ctx_path, payloads, segment: int = 0, progress_path=None
    ) -> tuple[list[bytes], dict]:
        """A crash fails this call only (500), running out of the plan's memory budget
        too (507): the worker is replaced and the calls waiting for a worker never see it."""
        budget = memory.budget_for(model.plan, self.memory_mb)
        try:
            outputs = await self.slots.run(
                worker.evaluate,
                str(model.plan_path),
                key_id,
                str(ctx_path),
                payloads,
                self.cache_size,
                None if progress_path is None else str(progress_path),
                segment,
                memory_budget=budget,
            )
        except WorkerCrashed:
            raise HTTPException(
                500,
                "the evaluation worker crashed on this request and has been replaced; the "
                "inputs or keys are malformed in a way the checks did not catch",
            ) from None
        except memory.WorkerOutOfMemory:
            raise HTTPException(
                507,
                f"this evaluation of {model.name!r} needed more than its memory limit "
                f"({budget // memory.MiB} MiB on top of the worker's own); the worker was "
                "replaced. Send fewer ciphertexts per request, or ask the operator to raise "
                "CRYPTOROBUST_WORKER_MEMORY_MB",
            ) from None
        return outputs, {"backend": "process"}

    def shutdown(self) -> None:
        self.slots.shutdown()
