import hashlib
import logging

from fastapi import APIRouter, HTTPException, Request

from crypto_nn.wire import context as ctx_format
from server import keycheck
from server.body import client_of, read_body
from server.deps import Auth, ServicesDep
from server.pool import WorkerCrashed
from server.schemas import BINARY_BODY, KeyRegistered

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Auth])
uploads = logging.getLogger("server.uploads")  # what every upload held: names and sizes


@router.post("", status_code=201, response_model=KeyRegistered, openapi_extra=BINARY_BODY)
async def register_key(request: Request, services: ServicesDep) -> KeyRegistered:
    """Register a public evaluation context (crypto_nn.wire.context bytes) → ``key_id``.

    Refused (422, nothing stored): not a context, a part that is not exactly one SEAL
    object or not needed by the plans it matches, parameters outside the 128-bit table or
    matching no served plan, keys that lack a component or fail a trial relinearisation
    or rotation. Past the key store's bounds the least recently used keys are evicted.
    """
    settings = services.settings
    with services.uploads.slot(client_of(request)) as ticket:
        body = await read_body(
            request,
            limit=settings.max_key_bytes,
            magic=ctx_format.MAGIC,
            declared_length=ctx_format.declared_length,
            what="cryptorobust context; make one with python -m client keygen",
            ticket=ticket,
            idle_timeout_s=settings.body_idle_timeout_s,
            total_timeout_s=settings.body_timeout_s,
        )
        try:
            checked = await services.checker.run(keycheck.check_context, body, services.plan_needs)
        except WorkerCrashed:
            raise HTTPException(
                422,
                "these keys crashed the process that tried them (it has been replaced): they "
                "are malformed for the plan's parameters — make them with python -m client "
                "keygen or crypto_nn.client_for(the model's description)",
            ) from None
        header, parts = ctx_format.unpack(body)  # checked above: only part names and sizes
        del body
    key_id = hashlib.sha256(checked.context).hexdigest()[:32]
    uploads.info(
        "context from %s: parts %s, seal %s → key %s",
        client_of(request),
        [[name, len(data)] for name, data in parts.items()],
        header.get("seal", "server's"),
        key_id,
    )
    del parts
    evicted = services.keys.add(
        key_id,
        checked.context,
        checked.models,
        checked.refused,
        keycheck.CHECK_VERSION,
        services.jobs.in_use,
    )
    return KeyRegistered(
        key_id=key_id,
        models=checked.models,
        refused=checked.refused,
        dropped_parts=checked.dropped,
        evicted=len(evicted),
    )
