"""Batch jobs: submit ciphertexts (streamed to disk), poll the status, fetch the result."""

import asyncio

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import FileResponse

from crypto_nn.wire import framing
from server.body import client_of
from server.deps import Auth, ServicesDep
from server.inference import (
    KEY_ID,
    SEGMENT,
    check_job_input,
    checked,
    expected,
    read_ciphertext_body,
)
from server.jobs import JobStore
from server.schemas import BINARY_BODY, BINARY_RESPONSE, JobAccepted, JobStatus
from server.services import Services

router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=[Auth])
JOB_ID = Path(pattern=r"^[0-9a-f]{32}$")


@router.post(
    "/models/{name}/jobs",
    status_code=202,
    response_model=JobAccepted,
    openapi_extra=BINARY_BODY,
)
async def submit_job(
    name: str,
    request: Request,
    services: ServicesDep,
    key_id: str = KEY_ID,
    segment: int = SEGMENT,
) -> JobAccepted:
    """Queue a batch; poll ``GET /v1/jobs/{id}``, fetch ``GET /v1/jobs/{id}/result``.

    The input streams to disk; at most ``max_jobs`` jobs (``max_jobs_per_key`` per key)
    are queued or running — past that, 503 + Retry-After before the body is read."""
    model, ctx_path = checked(services, name, key_id)
    expected(model, name, segment)
    jobs = services.jobs
    jobs.admit(key_id)
    job_id, input_path = jobs.new_dir()
    try:
        with services.uploads.slot(client_of(request)):
            await read_ciphertext_body(request, services.settings, to_file=input_path)
        n_inputs = await asyncio.to_thread(check_job_input, input_path, model, name, segment)
        jobs.admit(key_id)  # others may have been admitted while this body arrived
    except BaseException:
        jobs.discard(job_id)
        raise
    jobs.create(job_id, name, key_id, n_inputs)

    async def run() -> None:
        try:
            async with services.job_slots:
                jobs.update(job_id, state="running", progress=0.0)
                outputs, ran_on = await services.job_backend.evaluate(
                    model,
                    key_id,
                    ctx_path,
                    input_path,
                    segment,
                    progress_path=jobs.progress_path(job_id),
                )
                jobs.update(job_id, ran_on=ran_on)
                result = framing.pack(outputs)
        except asyncio.CancelledError:
            jobs.fail(job_id, "the server stopped during the job; submit it again")
            raise
        except Exception as exc:  # a job records any failure; it must never kill the server
            jobs.fail(job_id, str(getattr(exc, "detail", exc)))
            return
        jobs.finish(job_id, result)

    services.tasks.add(task := asyncio.create_task(run()))
    task.add_done_callback(services.tasks.discard)
    return JobAccepted(job_id=job_id, state="queued")


def _existing(services: Services, job_id: str) -> JobStore:
    jobs = services.jobs
    if not jobs.exists(job_id):
        raise HTTPException(404, f"unknown job {job_id}")
    return jobs


@router.get("/jobs/{job_id}", response_model=JobStatus)
def job_status(services: ServicesDep, job_id: str = JOB_ID) -> JobStatus:
    """State (queued, running, done, failed), progress, and the error of a failed job."""
    return JobStatus(**_existing(services, job_id).status(job_id))


@router.get("/jobs/{job_id}/result", response_class=FileResponse, responses=BINARY_RESPONSE)
def job_result(services: ServicesDep, job_id: str = JOB_ID) -> FileResponse:
    """The encrypted logits (crypto_nn.wire.framing bytes) of a finished job."""
    jobs = _existing(services, job_id)
    status = jobs.status(job_id)
    if status["state"] != "done":
        raise HTTPException(
            409,
            f"job {job_id} is {status['state']}"
            + (f": {status['error']}" if status.get("error") else ""),
        )
    return FileResponse(jobs.result_path(job_id), media_type="application/octet-stream")
