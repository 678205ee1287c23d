"""Where evaluations run, behind one interface (:class:`Backend`): ``await
backend.evaluate(model, key_id, context path, inputs, segment, progress_path) → (outputs,
where it ran)``, and ``shutdown()``.

:class:`ProcessBackend` is the local pool of worker processes (``server.pool``), which
read the plan, the context and a job's input from the state directory;
``server.ray_backend.RayBackend`` ships them as values to Ray tasks. Both cache plans and
evaluators in workers alike (``server.evaluators``) and both report a job's progress to
``progress_path``. Sync requests always run on the local pool; jobs run on the configured
backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from fastapi import HTTPException

from server import memory, worker
from server.pool import ProcessSlots, WorkerCrashed

Inputs = list[bytes] | Path  # the ciphertexts, or a job's input file (framing bytes)


class Backend(Protocol):
    async def evaluate(
        self,
        model,
        key_id: str,
        ctx_path: Path,
        inputs: Inputs,
        segment: int = 0,
        progress_path: Path | None = None,
    ) -> tuple[list[bytes], dict]:
        """The output ciphertexts and where the evaluation ran (``{"backend": …}``);
        ``progress_path`` receives the fraction done as the evaluation goes."""
        ...

    def shutdown(self) -> None:
        """Stop every worker this backend started."""
        ...


class ProcessBackend:
    def __init__(self, slots: ProcessSlots, cache_size: int, memory_mb: int | None = None) -> None:
        self.slots, self.cache_size, self.memory_mb = slots, cache_size, memory_mb

    async def evaluate(
        self,
        model,
        key_id: str,
        ctx_path: Path,
        inputs: Inputs,
        segment: int = 0,
        progress_path: Path | None = None,
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
                str(inputs) if isinstance(inputs, Path) else inputs,
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
