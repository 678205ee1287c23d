import hashlib
import json

from fastapi import APIRouter, HTTPException, Request

from crypto_nn import context as ctx_format
from crypto_nn.ckks_single import load_rotation_keys
from crypto_nn.errors import ContextError
from server.deps import Auth, SettingsDep, read_body

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Auth])


@router.post(
    "",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def register_key(request: Request, settings: SettingsDep) -> dict:
    """Register a public evaluation context (crypto_nn.context bytes) → ``key_id``.

    Refused (422, nothing stored): not a context, a context whose parameters are outside
    the 128-bit table or match no served plan, or one lacking keys a plan needs.
    """
    body = await read_body(request, settings.max_key_bytes)
    _, parts = ctx_format.unpack(body)
    parms = ctx_format.read_params(parts)
    matches, reasons = [], []
    for name, model in request.app.state.models.items():
        try:
            ctx_format.check_matches(parms, model.plan.params)
        except ContextError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        if model.plan.needs_relin_keys and "relin_keys" not in parts:
            reasons.append(f"{name}: the plan needs relinearisation keys, the context has none")
            continue
        if model.plan.rotations:
            try:
                load_rotation_keys(model.plan, parts)
            except ContextError as exc:
                reasons.append(f"{name}: {exc}")
                continue
        matches.append(name)
    if not matches:
        raise HTTPException(422, "parameters match no served plan: " + "; ".join(reasons))
    key_id = hashlib.sha256(body).hexdigest()[:32]
    keys_dir = settings.state_dir / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    tmp = keys_dir / f"{key_id}.ctx.tmp"
    tmp.write_bytes(body)
    tmp.replace(keys_dir / f"{key_id}.ctx")
    refused = dict(reason.split(": ", 1) for reason in reasons)
    (keys_dir / f"{key_id}.json").write_text(json.dumps({"models": matches, "refused": refused}))
    return {"key_id": key_id, "models": matches, "refused": refused}
