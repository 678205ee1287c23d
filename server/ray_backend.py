"""``--backend ray``: evaluations as Ray tasks, on a local Ray or a cluster (``--ray-address``).

A task gets everything as values — the compiled plan (put in Ray's object store once per
model), the context bytes, the ciphertext bytes — so it runs on any node, with no shared
disk and no data sets there. A job's progress comes back through a Ray queue (an actor)
that the server drains into the job's progress file. Ray workers are long-lived
processes: each keeps plans and evaluators in the same
:class:`server.evaluators.EvaluatorCache` the local pool uses.
Ray is an optional extra (``pip install cryptorobust[ray]``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from crypto_nn.wire import framing
from nets.errors import UserError
from server.backends import Inputs
from server.evaluators import EvaluatorCache, run
from server.worker import write_progress

_cache = EvaluatorCache()


def evaluate_task(
    plan,
    plan_key: str,
    key_id: str,
    context: bytes,
    payloads: list[bytes],
    segment: int,
    progress=None,
) -> tuple[list[bytes], dict]:
    """Runs inside a Ray worker → (output ciphertexts, where it ran). ``progress``: a
    ``ray.util.queue.Queue`` that receives the fraction done, or None."""
    import os

    import ray

    evaluator = _cache.evaluator(plan, plan_key, key_id, context)
    ran_on = {
        "backend": "ray",
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }
    report = None if progress is None else (lambda f: progress.put_nowait(float(f)))
    return run(evaluator, payloads, report, segment), ran_on


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
        self,
        model,
        key_id: str,
        ctx_path: Path,
        inputs: Inputs,
        segment: int = 0,
        progress_path: Path | None = None,
    ) -> tuple[list[bytes], dict]:
        plan_key = f"{model.plan_path}@{model.plan_path.stat().st_mtime}"
        if plan_key not in self._plans:
            self._plans[plan_key] = self.ray.put(model.plan)
        if isinstance(inputs, Path):  # a job's input: Ray gets values, no shared disk
            inputs = framing.unpack(inputs.read_bytes(), nonempty=True)[1]
        queue = None
        if progress_path is not None:
            from ray.util.queue import Queue

            queue = Queue(actor_options={"num_cpus": 0})
        ref = self._task.remote(
            self._plans[plan_key], plan_key, key_id, ctx_path.read_bytes(), inputs, segment, queue
        )
        del inputs
        future = asyncio.wrap_future(ref.future())
        try:
            while queue is not None and not future.done():
                await asyncio.wait({future}, timeout=0.2)
                await asyncio.to_thread(drain_progress, queue, progress_path)  # Ray calls block
            result = await future
            if queue is not None:
                await asyncio.to_thread(drain_progress, queue, progress_path)
            return result
        finally:
            if queue is not None:
                await asyncio.to_thread(queue.shutdown)

    def shutdown(self) -> None:
        self.ray.shutdown()


def drain_progress(queue, progress_path: Path) -> None:
    """The latest fraction the task reported, written where the job's status reads it."""
    last = None
    while not queue.empty():
        last = queue.get_nowait()
    if last is not None:
        write_progress(progress_path, last)
