"""``create_app(settings)``: the FastAPI application, importable and testable."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from multiprocessing import get_context

from fastapi import FastAPI, HTTPException, Request

from server import problems
from server.jobs import JobStore
from server.models import load_models
from server.routers import health, infer, jobs, keys, models
from server.settings import Settings


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


class Pool:
    """The evaluation process pool; a pool whose worker died is replaced, not reused."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))

    def replace(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._new()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for task in app.state.tasks:
            task.cancel()
        app.state.pool.executor.shutdown(wait=False, cancel_futures=True)
        if app.state.ray is not None:
            app.state.ray.shutdown()

    app = FastAPI(
        title="cryptorobust",
        version="0.1.0",
        lifespan=lifespan,
        description="Encrypted inference: CKKS batch plans over TenSEAL/SEAL.",
    )
    app.state.settings = settings
    app.state.models = load_models(
        settings.models_dir, settings.calibration_images, settings.packings
    )
    app.state.gate = Gate(settings.max_queued)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app.state.jobs = JobStore(settings.state_dir)
    app.state.pool = Pool(settings.workers)  # processes start on the first evaluation
    app.state.job_slots = asyncio.Semaphore(settings.workers)
    app.state.tasks = set()
    app.state.ray = None
    if settings.backend == "ray":
        from server.ray_backend import RayBackend

        app.state.ray = RayBackend(settings.ray_address, settings.ray_num_cpus)

    @app.middleware("http")
    async def timing(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Process-Time"] = f"{time.perf_counter() - start:.6f}"
        return response

    problems.install(app)
    for router in (health.router, models.router, keys.router, infer.router, jobs.router):
        app.include_router(router)
    return app
