"""``create_app(settings)``: the FastAPI application, importable and testable."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

from server import problems
from server.routers import health, infer, jobs, keys, limits, models, web
from server.services import Services, build_services
from server.settings import Settings

log = logging.getLogger(__name__)


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
        sweeper = asyncio.create_task(_sweep(services))
        if settings.warm_workers:  # start the workers now, not in the first request
            for _ in range(settings.workers):
                services.tasks.add(task := asyncio.create_task(_warm(services)))
                task.add_done_callback(services.tasks.discard)
        try:
            yield
        finally:
            sweeper.cancel()
            # on shutdown (SIGTERM, SIGINT, the end of a test client): jobs failed, workers
            # stopped and waited for
            services.shutdown()

    app = FastAPI(
        title="cryptorobust",
        version="0.1.0",
        lifespan=lifespan,
        description=(
            "Encrypted inference: CKKS batch and single plans, exact BFV plans (batch, "
            "client-aided tables) over TenSEAL/SEAL."
        ),
    )
    app.state.services = services = build_services(settings)

    app.add_middleware(ProblemMiddleware)
    problems.install(app)
    for router in (
        health.router,
        limits.router,
        models.router,
        keys.router,
        infer.router,
        jobs.router,
        web.router,
    ):
        app.include_router(router)
    return app


async def _warm(services: Services) -> None:
    """One worker process started and its imports and numba kernels loaded, in the
    background: the first request then meets a ready worker (seconds saved)."""
    try:
        await services.workers.warm()
    except Exception as exc:  # a failed warm-up costs only the time it would have saved
        log.warning("worker warm-up failed: %s", exc)


async def _sweep(services: Services) -> None:
    """Expired jobs go every ``sweep_interval_s`` (and once at startup, in JobStore)."""
    while True:
        await asyncio.sleep(services.settings.sweep_interval_s)
        try:
            removed = services.jobs.sweep()
        except OSError as exc:
            log.warning("job sweep failed: %s", exc)
            continue
        if removed:
            log.info("removed %d expired jobs", removed)
