"""What request handlers use, built once per app (``build_services``) and handed to them
as FastAPI dependencies (``server.deps``): handlers never read ``app.state`` themselves,
and every field here is typed."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi import HTTPException

from server import worker
from server.backends import Backend, ProcessBackend
from server.body import Uploads
from server.jobs import JobStore
from server.keycheck import PlanNeeds
from server.keystore import KeyStore
from server.models import ServedModel, load_models
from server.pool import ProcessSlots
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


@dataclass
class Services:
    settings: Settings
    models: dict[str, ServedModel]
    plan_needs: list[PlanNeeds]  # what each served plan needs of a key (the key checker's)
    gate: Gate  # evaluations in flight or waiting
    uploads: Uploads  # bodies being read
    keys: KeyStore
    jobs: JobStore
    workers: ProcessSlots  # the evaluation workers
    checker: ProcessSlots  # the key checker (a crash there fails one registration)
    backend: Backend  # synchronous requests: always the local pool
    job_backend: Backend  # jobs: the configured backend (the pool or Ray)
    job_slots: asyncio.Semaphore
    tasks: set[asyncio.Task] = field(default_factory=set)  # running jobs, warm-ups

    def model(self, name: str) -> ServedModel:
        """The served model ``name``, or the 404 that lists the served ones."""
        if name not in self.models:
            served = ", ".join(sorted(self.models))
            raise HTTPException(404, f"unknown model {name!r}; served: {served}")
        return self.models[name]

    def shutdown(self) -> None:
        """Every queued or running job marked failed on disk, then every worker stopped."""
        for job_id in self.jobs.active():
            self.jobs.fail(job_id, "the server stopped during the job; submit it again")
        for task in list(self.tasks):
            task.cancel()
        self.backend.shutdown()
        self.checker.shutdown()
        if self.job_backend is not self.backend:
            with contextlib.suppress(Exception):
                self.job_backend.shutdown()


def build_services(settings: Settings) -> Services:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    models = load_models(
        settings.models_dir,
        settings.calibration_images,
        settings.packings,
        plans_dir=settings.plans_dir or settings.state_dir / "plans",
        bfv_bits=settings.bfv_bits,
    )
    workers = ProcessSlots(settings.workers, "evaluation worker", warm=worker.warm_up)
    backend = ProcessBackend(workers, settings.cache_size, settings.worker_memory_mb)
    job_backend: Backend = backend
    if settings.backend == "ray":
        from server.ray_backend import RayBackend

        job_backend = RayBackend(settings.ray_address, settings.ray_num_cpus)
    return Services(
        settings=settings,
        models=models,
        plan_needs=[PlanNeeds.of(name, m.plan) for name, m in models.items()],
        gate=Gate(settings.max_queued),
        uploads=Uploads(
            settings.max_uploads, settings.max_uploads_per_client, settings.max_buffered_bytes
        ),
        keys=KeyStore(
            settings.state_dir, max_keys=settings.max_keys, max_bytes=settings.max_key_store_bytes
        ),
        jobs=JobStore(
            settings.state_dir,
            max_active=settings.max_jobs,
            max_active_per_key=settings.max_jobs_per_key,
            ttl_s=settings.job_ttl_s,
        ),
        workers=workers,
        checker=ProcessSlots(1, "key checker"),
        backend=backend,
        job_backend=job_backend,
        job_slots=asyncio.Semaphore(settings.workers),
    )
