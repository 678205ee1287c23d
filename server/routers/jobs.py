from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import FileResponse

from server.deps import Auth

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Auth])
JOB_ID = Path(pattern=r"^[0-9a-f]{32}$")


def _existing(request: Request, job_id: str):
    jobs = request.app.state.jobs
    if not jobs.exists(job_id):
        raise HTTPException(404, f"unknown job {job_id}")
    return jobs


@router.get("/{job_id}")
def job_status(request: Request, job_id: str = JOB_ID) -> dict:
    """State (queued, running, done, failed), progress, and the error of a failed job."""
    return _existing(request, job_id).status(job_id)


@router.get("/{job_id}/result", response_class=FileResponse)
def job_result(request: Request, job_id: str = JOB_ID) -> FileResponse:
    """The encrypted logits (crypto_nn.wire.framing bytes) of a finished job."""
    jobs = _existing(request, job_id)
    status = jobs.status(job_id)
    if status["state"] != "done":
        raise HTTPException(
            409,
            f"job {job_id} is {status['state']}"
            + (f": {status['error']}" if status.get("error") else ""),
        )
    return FileResponse(jobs.result_path(job_id), media_type="application/octet-stream")
