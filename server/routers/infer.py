"""Synchronous inference on encrypted inputs: ciphertexts in, encrypted logits out."""

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from crypto_nn.wire import framing
from server.body import client_of
from server.deps import Auth, ServicesDep
from server.inference import KEY_ID, SEGMENT, checked, expected, payloads_of, read_ciphertext_body
from server.schemas import BINARY_BODY, BINARY_RESPONSE

router = APIRouter(prefix="/v1/models", tags=["inference"], dependencies=[Auth])
uploads = logging.getLogger("server.uploads")


@router.post(
    "/{name}/infer",
    response_class=Response,
    responses=BINARY_RESPONSE,
    openapi_extra=BINARY_BODY,
)
async def infer(
    name: str,
    request: Request,
    services: ServicesDep,
    key_id: str = KEY_ID,
    segment: int = SEGMENT,
) -> Response:
    """Encrypted batch in (crypto_nn.wire.framing bytes), encrypted logits out (same framing).

    Client-aided BFV plans take one request per segment, naming it (``segment``): the
    server keeps nothing between them. The body is read (bounded in size and time)
    before an evaluation slot is taken."""
    model, ctx_path = checked(services, name, key_id)
    expected(model, name, segment)
    with services.uploads.slot(client_of(request)) as ticket:
        body = await read_ciphertext_body(request, services.settings, ticket=ticket)
        try:  # splitting ~100 MB copies it: off the event loop
            payloads = await asyncio.to_thread(payloads_of, body, model, name, segment)
        finally:
            del body
        sizes = sorted({len(p) for p in payloads})
        uploads.info(
            "ciphertexts for %s (key %s, segment %d): %d of sizes %s, %d bytes",
            name, key_id, segment, len(payloads), sizes, sum(map(len, payloads)),
        )  # fmt: skip
        with services.gate.slot():
            outputs, _ = await services.backend.evaluate(model, key_id, ctx_path, payloads, segment)
        del payloads
    return Response(framing.pack(outputs), media_type="application/octet-stream")
