"""Inference on encrypted inputs: synchronous (``/infer``) or as a job (``/jobs``)."""

import asyncio
import json
from concurrent.futures.process import BrokenProcessPool

from fastapi import APIRouter, HTTPException, Query, Request, Response

from crypto_nn import framing
from server import worker
from server.deps import Auth, SettingsDep, read_body

router = APIRouter(prefix="/v1/models", tags=["inference"], dependencies=[Auth])
KEY_ID = Query(pattern=r"^[0-9a-f]{32}$", description="From POST /v1/keys.")
BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _checked(request: Request, settings, name: str, key_id: str):
    """The served model and the stored context path, or the 404/422 that says why not."""
    state = request.app.state
    if name not in state.models:
        raise HTTPException(
            404, f"unknown model {name!r}; served: {', '.join(sorted(state.models))}"
        )
    ctx_path = settings.state_dir / "keys" / f"{key_id}.ctx"
    meta_path = settings.state_dir / "keys" / f"{key_id}.json"
    if not ctx_path.is_file() or not meta_path.is_file():
        raise HTTPException(404, f"unknown key_id {key_id}; register a context with POST /v1/keys")
    meta = json.loads(meta_path.read_text())
    if name not in meta.get("models", []):
        why = meta.get("refused", {}).get(name, "it was made for other parameters")
        raise HTTPException(422, f"key {key_id} cannot be used with model {name!r}: {why}")
    return state.models[name], ctx_path


def _payloads(body: bytes, model, name: str) -> list[bytes]:
    want = model.plan.n_input_ciphertexts
    _, payloads = framing.unpack(body, max_count=want)
    if len(payloads) != want:
        per = "one per input value" if model.plan.packing == "batch" else "one image's layouts"
        raise HTTPException(
            422, f"{len(payloads)} ciphertexts; model {name!r} takes {want} ({per})"
        )
    return payloads


async def evaluate(
    request: Request, settings, model, key_id: str, ctx_path, payloads, progress_path=None
) -> bytes:
    """Run one evaluation in the process pool; a dead worker's pool is replaced (503)."""
    pool = request.app.state.pool
    loop = asyncio.get_running_loop()
    try:
        outputs = await loop.run_in_executor(
            pool.executor,
            worker.evaluate,
            str(model.checkpoint),
            model.plan.packing,
            settings.calibration_images,
            key_id,
            str(ctx_path),
            payloads,
            settings.cache_size,
            None if progress_path is None else str(progress_path),
        )
    except BrokenProcessPool:
        pool.replace()
        raise HTTPException(
            503,
            "evaluation worker died; it has been replaced — retry",
            headers={"Retry-After": "1"},
        ) from None
    return framing.pack(outputs)


@router.post("/{name}/infer", response_class=Response, openapi_extra=BINARY_BODY)
async def infer(
    name: str, request: Request, settings: SettingsDep, key_id: str = KEY_ID
) -> Response:
    """Encrypted batch in (crypto_nn.framing bytes), encrypted logits out (same framing)."""
    model, ctx_path = _checked(request, settings, name, key_id)
    with request.app.state.gate.slot():
        body = await read_body(request, settings.max_infer_bytes)
        payloads = _payloads(body, model, name)
        result = await evaluate(request, settings, model, key_id, ctx_path, payloads)
    return Response(result, media_type="application/octet-stream")


@router.post("/{name}/jobs", status_code=202, openapi_extra=BINARY_BODY)
async def submit_job(
    name: str, request: Request, settings: SettingsDep, key_id: str = KEY_ID
) -> dict:
    """Queue a batch; poll ``GET /v1/jobs/{id}``, fetch ``GET /v1/jobs/{id}/result``."""
    model, ctx_path = _checked(request, settings, name, key_id)
    body = await read_body(request, settings.max_infer_bytes)
    payloads = _payloads(body, model, name)
    jobs = request.app.state.jobs
    job_id = jobs.create(name, key_id, body, len(payloads))

    async def run() -> None:
        async with request.app.state.job_slots:
            jobs.update(job_id, state="running", progress=0.0)
            try:
                if request.app.state.ray is not None:
                    outputs, ran_on = await request.app.state.ray.evaluate(
                        model.plan, key_id, ctx_path.read_bytes(), payloads
                    )
                    jobs.update(job_id, ran_on=ran_on)
                    result = framing.pack(outputs)
                else:
                    jobs.update(job_id, ran_on={"backend": "process"})
                    result = await evaluate(
                        request,
                        settings,
                        model,
                        key_id,
                        ctx_path,
                        payloads,
                        progress_path=jobs.progress_path(job_id),
                    )
            except Exception as exc:  # a job records any failure; it must never kill the server
                jobs.update(job_id, state="failed", error=str(getattr(exc, "detail", exc)))
                return
            jobs.finish(job_id, result)

    request.app.state.tasks.add(task := asyncio.create_task(run()))
    task.add_done_callback(request.app.state.tasks.discard)
    return {"job_id": job_id, "state": "queued"}
