import asyncio
import json
from concurrent.futures.process import BrokenProcessPool

from fastapi import APIRouter, HTTPException, Query, Request, Response

from crypto_nn import framing
from server import worker
from server.deps import Auth, SettingsDep, read_body

router = APIRouter(prefix="/v1/models", tags=["inference"], dependencies=[Auth])
KEY_ID = Query(pattern=r"^[0-9a-f]{32}$", description="From POST /v1/keys.")


@router.post(
    "/{name}/infer",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def infer(
    name: str, request: Request, settings: SettingsDep, key_id: str = KEY_ID
) -> Response:
    """Encrypted batch in (crypto_nn.framing bytes), encrypted logits out (same framing)."""
    state = request.app.state
    if name not in state.models:
        raise HTTPException(
            404, f"unknown model {name!r}; served: {', '.join(sorted(state.models))}"
        )
    ctx_path = settings.state_dir / "keys" / f"{key_id}.ctx"
    meta_path = settings.state_dir / "keys" / f"{key_id}.json"
    if not ctx_path.is_file() or not meta_path.is_file():
        raise HTTPException(404, f"unknown key_id {key_id}; register a context with POST /v1/keys")
    if name not in json.loads(meta_path.read_text()).get("models", []):
        raise HTTPException(422, f"key {key_id} was made for other parameters than model {name!r}")
    model = state.models[name]
    with state.gate.slot():
        body = await read_body(request, settings.max_infer_bytes)
        _, payloads = framing.unpack(body, max_count=model.plan.n_inputs)
        if len(payloads) != model.plan.n_inputs:
            raise HTTPException(
                422,
                f"{len(payloads)} ciphertexts; model {name!r} takes "
                f"{model.plan.n_inputs} (one per input value)",
            )
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(
                state.pool.executor,
                worker.evaluate,
                str(model.checkpoint),
                settings.calibration_images,
                key_id,
                str(ctx_path),
                payloads,
                settings.cache_size,
            )
        except BrokenProcessPool:
            state.pool.replace()
            raise HTTPException(
                503,
                "evaluation worker died; it has been replaced — retry",
                headers={"Retry-After": "1"},
            ) from None
    return Response(framing.pack(outputs), media_type="application/octet-stream")
