"""What an inference request (``/infer``) or a job (``/jobs``) must be: its model and key,
its segment, its ciphertext count and their SEAL headers — checked before any evaluation."""

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from crypto_nn.errors import ContextError
from crypto_nn.wire import framing, seal_bytes
from server import keycheck
from server.body import read_body
from server.services import Services
from server.settings import Settings

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


def checked(services: Services, name: str, key_id: str):
    """The served model and the stored context path, or the 404/422 that says why not."""
    model = services.model(name)
    meta = services.keys.get(key_id)
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
    services.keys.touch(key_id)
    return model, services.keys.ctx_path(key_id)


def expected(model, name: str, segment: int) -> int:
    """How many ciphertexts this model's segment takes (422 for a segment it lacks)."""
    try:
        return model.plan.input_count(segment)
    except ContextError as exc:
        raise HTTPException(422, f"model {name!r}: {exc}") from None


def _want(model, name: str, count: int, segment: int) -> None:
    want = expected(model, name, segment)
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


def payloads_of(body: bytes, model, name: str, segment: int) -> list[bytes]:
    _, payloads = framing.unpack(body, max_count=_most(model), nonempty=True)
    _want(model, name, len(payloads), segment)
    for i, blob in enumerate(payloads):
        seal_bytes.check_whole(blob, what=f"input {i}")
    return payloads


def check_job_input(path, model, name: str, segment: int) -> int:
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


def read_ciphertext_body(request: Request, settings: Settings, **kwargs):
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
