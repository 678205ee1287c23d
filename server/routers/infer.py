"""Inference on encrypted inputs: synchronous (``/infer``) or as a job (``/jobs``)."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from crypto_nn.errors import ContextError
from crypto_nn.wire import framing, seal_bytes
from server import keycheck
from server.body import client_of, read_body
from server.deps import Auth, SettingsDep

router = APIRouter(prefix="/v1/models", tags=["inference"], dependencies=[Auth])
KEY_ID = Query(pattern=r"^[0-9a-f]{32}$", description="From POST /v1/keys.")


def _segment(
    segment: Annotated[
        str,
        Query(
            pattern=r"^(0|[1-9][0-9]{0,3})$",
            description="Client-aided plans: which segment these ciphertexts are for "
            "(ASCII digits, no sign, space or leading zero).",
        ),
    ] = "0",
) -> int:
    """A query integer parsed strictly: `` 0``, ``+1``, ``01`` and ``٣`` are 422, not 0–3."""
    return int(segment)


SEGMENT = Depends(_segment)
BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _checked(request: Request, name: str, key_id: str):
    """The served model and the stored context path, or the 404/422 that says why not."""
    state = request.app.state
    if name not in state.models:
        raise HTTPException(
            404, f"unknown model {name!r}; served: {', '.join(sorted(state.models))}"
        )
    meta = state.keys.get(key_id)
    if meta is None:
        raise HTTPException(
            404,
            f"unknown key_id {key_id} (never registered, or evicted as least recently used); "
            "register a context with POST /v1/keys",
        )
    if meta.check_version < keycheck.CHECK_VERSION:
        raise HTTPException(
            422, f"key {key_id} was registered before keys were fully checked; register it again"
        )
    if name not in meta.models:
        why = meta.refused.get(name, "it was made for other parameters")
        raise HTTPException(422, f"key {key_id} cannot be used with model {name!r}: {why}")
    state.keys.touch(key_id)
    return state.models[name], state.keys.ctx_path(key_id)


def _expected(model, name: str, segment: int) -> int:
    """How many ciphertexts this model's segment takes (422 for a segment it lacks)."""
    try:
        return model.plan.input_count(segment)
    except ContextError as exc:
        raise HTTPException(422, f"model {name!r}: {exc}") from None


def _want(model, name: str, count: int, segment: int) -> None:
    want = _expected(model, name, segment)
    if count != want:
        per = "one per input value" if model.plan.packing == "batch" else "one image's layouts"
        if model.plan.scheme == "bfv":
            per += ", per plaintext prime"
        at = f" at segment {segment}" if segment else ""
        raise HTTPException(422, f"{count} ciphertexts; model {name!r} takes {want}{at} ({per})")


def _most(model) -> int:
    """The most ciphertexts any request to this model may carry (the wrong count for a
    segment then gets the message that names the segment, not a framing error)."""
    segments = getattr(model.plan, "segment_count", 1)
    return max(model.plan.input_count(k) for k in range(segments))


def _payloads(body: bytes, model, name: str, segment: int) -> list[bytes]:
    _, payloads = framing.unpack(body, max_count=_most(model), nonempty=True)
    _want(model, name, len(payloads), segment)
    for i, blob in enumerate(payloads):
        seal_bytes.check_whole(blob, what=f"input {i}")
    return payloads


def _check_job_input(path, model, name: str, segment: int) -> int:
    """A job's input on disk: the header and every blob's SEAL header, read with seeks."""
    with path.open("rb") as f:
        head = f.read(framing.MAX_HEADER + len(framing.MAGIC) + 1)
        header, offset = framing.read_header(head)
        sizes = framing.header_sizes(header, max_count=_most(model), nonempty=True)
        _want(model, name, len(sizes), segment)
        for i, size in enumerate(sizes):
            f.seek(offset)
            seal_bytes.check_header(f.read(seal_bytes.HEADER_BYTES), size, what=f"input {i}")
            offset += size
    return len(sizes)


def _read(request: Request, settings, **kwargs):
    return read_body(
        request,
        limit=settings.max_infer_bytes,
        magic=framing.MAGIC,
        declared_length=framing.declared_length,
        what="cryptorobust ciphertext list (crypto_nn.wire.framing)",
        idle_timeout_s=settings.body_idle_timeout_s,
        total_timeout_s=settings.body_timeout_s,
        **kwargs,
    )


@router.post("/{name}/infer", response_class=Response, openapi_extra=BINARY_BODY)
async def infer(
    name: str,
    request: Request,
    settings: SettingsDep,
    key_id: str = KEY_ID,
    segment: int = SEGMENT,
) -> Response:
    """Encrypted batch in (crypto_nn.wire.framing bytes), encrypted logits out (same framing).

    Client-aided BFV plans take one request per segment, naming it (``segment``): the
    server keeps nothing between them. The body is read (bounded in size and time)
    before an evaluation slot is taken."""
    model, ctx_path = _checked(request, name, key_id)
    _expected(model, name, segment)
    state = request.app.state
    with state.uploads.slot(client_of(request)) as ticket:
        body = await _read(request, settings, ticket=ticket)
        try:  # splitting ~100 MB copies it: off the event loop
            payloads = await asyncio.to_thread(_payloads, body, model, name, segment)
        finally:
            del body
        with state.gate.slot():
            outputs, _ = await state.backend.evaluate(model, key_id, ctx_path, payloads, segment)
        del payloads
    return Response(framing.pack(outputs), media_type="application/octet-stream")


@router.post("/{name}/jobs", status_code=202, openapi_extra=BINARY_BODY)
async def submit_job(
    name: str,
    request: Request,
    settings: SettingsDep,
    key_id: str = KEY_ID,
    segment: int = SEGMENT,
) -> dict:
    """Queue a batch; poll ``GET /v1/jobs/{id}``, fetch ``GET /v1/jobs/{id}/result``.

    The input streams to disk; at most ``max_jobs`` jobs (``max_jobs_per_key`` per key)
    are queued or running — past that, 503 + Retry-After before the body is read."""
    model, ctx_path = _checked(request, name, key_id)
    _expected(model, name, segment)
    state = request.app.state
    jobs = state.jobs
    jobs.admit(key_id)
    job_id, input_path = jobs.new_dir()
    try:
        with state.uploads.slot(client_of(request)):
            await _read(request, settings, to_file=input_path)
        n_inputs = await asyncio.to_thread(_check_job_input, input_path, model, name, segment)
        jobs.admit(key_id)  # others may have been admitted while this body arrived
    except BaseException:
        jobs.discard(job_id)
        raise
    jobs.create(job_id, name, key_id, n_inputs)

    async def run() -> None:
        try:
            async with state.job_slots:
                jobs.update(job_id, state="running", progress=0.0)
                if state.ray is not None:  # Ray gets values: no shared disk there
                    payloads = framing.unpack(input_path.read_bytes(), nonempty=True)[1]
                    outputs, ran_on = await state.ray.evaluate(
                        model, key_id, ctx_path, payloads, segment
                    )
                    del payloads
                else:
                    outputs, ran_on = await state.backend.evaluate(
                        model,
                        key_id,
                        ctx_path,
                        str(input_path),
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

    state.tasks.add(task := asyncio.create_task(run()))
    task.add_done_callback(state.tasks.discard)
    return {"job_id": job_id, "state": "queued"}
