"""``create_app(settings)``: the FastAPI application, importable and testable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import asynccontextmanager, contextmanager

from fastapi import FastAPI, HTTPException

from server import problems, worker
from server.backends import ProcessBackend
from server.body import Uploads
from server.jobs import JobStore
from server.keycheck import PlanNeeds
from server.keystore import KeyStore
from server.models import load_models
from server.pool import ProcessSlots
from server.routers import health, infer, jobs, keys, limits, models
from server.settings import Settings

log = logging.getLogger(__name__)


class Gate:
    """Bounds the requests being evaluated or waiting; past the bound, 503 + Retry-After."""

    def __init__(self, limit: int) -> None:
        self.limit, self.active = limit, 0

    @contextmanager
    def slot(self):
        if self.active >= self.limit:
            raise HTTPException(
                503,
                f"busy: {self.active} evaluations in flight — retry later",
                headers={"Retry-After": "5"},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class ProblemMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware task group holding exceptions): times every request
    and turns an exception no handler took into a 500 problem+json — the connection stays
    up, the traceback goes to the log, and nothing of the request stays referenced."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, started = time.perf_counter(), False

        async def timed_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                elapsed = f"{time.perf_counter() - start:.6f}".encode()
                message["headers"] = [*message.get("headers", []), (b"x-process-time", elapsed)]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception as exc:  # the last line of defence: log, forget, answer
            log.error("internal error on %s %s", scope["method"], scope["path"], exc_info=exc)
            problems.forget(exc)
            del exc
            if not started:
                await problems.problem(
                    500, "internal error (logged on the server); the request was not served"
                )(scope, receive, timed_send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sweeper = asyncio.create_task(_sweep(app))
        if settings.warm_workers:  # start the workers now, not in the first request
            for _ in range(settings.workers):
                app.state.tasks.add(task := asyncio.create_task(_warm(app)))
                task.add_done_callback(app.state.tasks.discard)
        try:
            yield
        finally:
            sweeper.cancel()
            _stop(app)

    app = FastAPI(
        title="cryptorobust",
        version="0.1.0",
        lifespan=lifespan,
        description=(
            "Encrypted inference: CKKS batch and single plans, exact BFV plans (batch, "
            "client-aided tables) over TenSEAL/SEAL."
        ),
    )
    state = app.state
    state.settings = settings
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    state.models = load_models(
        settings.models_dir,
        settings.calibration_images,
        settings.packings,
        plans_dir=settings.state_dir / "plans",
        bfv_bits=settings.bfv_bits,
    )
    state.plan_needs = [PlanNeeds.of(name, m.plan) for name, m in state.models.items()]
    state.gate = Gate(settings.max_queued)
    state.uploads = Uploads(
        settings.max_uploads, settings.max_uploads_per_client, settings.max_buffered_bytes
    )
    state.keys = KeyStore(
        settings.state_dir, max_keys=settings.max_keys, max_bytes=settings.max_key_store_bytes
    )
    state.jobs = JobStore(
        settings.state_dir,
        max_active=settings.max_jobs,
        max_active_per_key=settings.max_jobs_per_key,
        ttl_s=settings.job_ttl_s,
    )
    state.workers = ProcessSlots(settings.workers, "evaluation worker", warm=worker.warm_up)
    state.checker = ProcessSlots(1, "key checker")
    state.job_slots = asyncio.Semaphore(settings.workers)
    state.tasks = set()
    state.backend = ProcessBackend(state.workers, settings.cache_size, settings.worker_memory_mb)
    state.ray = None
    if settings.backend == "ray":
        from server.ray_backend import RayBackend

        state.ray = RayBackend(settings.ray_address, settings.ray_num_cpus)
    state.job_backend = state.ray or state.backend

    app.add_middleware(ProblemMiddleware)
    problems.install(app)
    for router in (
        health.router,
        limits.router,
        models.router,
        keys.router,
        infer.router,
        jobs.router,
    ):
        app.include_router(router)
    return app


async def _warm(app: FastAPI) -> None:
    """One worker process started and its imports and numba kernels loaded, in the
    background: the first request then meets a ready worker (seconds saved)."""
    try:
        await app.state.workers.warm()
    except Exception as exc:  # a failed warm-up costs only the time it would have saved
        log.warning("worker warm-up failed: %s", exc)


async def _sweep(app: FastAPI) -> None:
    """Expired jobs go every ``sweep_interval_s`` (and once at startup, in JobStore)."""
    while True:
        await asyncio.sleep(app.state.settings.sweep_interval_s)
        try:
            removed = app.state.jobs.sweep()
        except OSError as exc:
            log.warning("job sweep failed: %s", exc)
            continue
        if removed:
            log.info("removed %d expired jobs", removed)


def _stop(app: FastAPI) -> None:
    """On shutdown (SIGTERM, SIGINT, end of a test client): every queued or running job is
    marked failed on disk, then every worker process is stopped and waited for."""
    state = app.state
    for job_id in state.jobs.active():
        state.jobs.fail(job_id, "the server stopped during the job; submit it again")
    for task in list(state.tasks):
        task.cancel()
    state.workers.shutdown()
    state.checker.shutdown()
    if state.ray is not None:
        with contextlib.suppress(Exception):
            state.ray.shutdown()
