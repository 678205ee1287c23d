"""Request bodies, read before any evaluation slot is taken: bounded in size, in time and
in how many are read at once, and refused from their first bytes when the format is wrong.

A client that sends six bytes and stops holds an upload slot for at most the idle timeout
and never an evaluation slot; a body whose header lies about its length, names the wrong
format or arrives with the wrong Content-Type is refused before the rest is read.

Nothing slow runs on the event loop: a body streamed to disk is written by a thread in
blocks of :data:`WRITE_BLOCK` (a full page cache makes ``write`` block for seconds, and
``/healthz`` must still answer), and a body that fails drops its chunks at once rather
than when a garbage collection frees the exception's frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from crypto_nn.errors import ContextError

BINARY = "application/octet-stream"
WRITE_BLOCK = 4 << 20  # bytes gathered before a thread writes them to a job's input file


class Uploads:
    """Requests reading or holding a body: at most ``limit`` in all and ``per_client`` per
    peer address, so one client's stalled uploads cannot starve the others. Memory is
    charged as bytes arrive (a stalled upload holds none), at most ``max_bytes`` in all;
    past any bound, 503 + Retry-After."""

    def __init__(self, limit: int, per_client: int, max_bytes: int) -> None:
        self.limit, self.per_client, self.max_bytes = limit, per_client, max_bytes
        self.active, self.held = 0, 0
        self.by_client: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, client: str):
        mine = self.by_client.get(client, 0)
        if self.active >= self.limit or mine >= self.per_client:
            raise HTTPException(
                503,
                f"busy: {self.active} uploads in progress ({mine} from {client}) — retry later",
                headers={"Retry-After": "2"},
            )
        self.active += 1
        self.by_client[client] = mine + 1
        ticket = Ticket(self)
        try:
            yield ticket
        finally:
            self.active -= 1
            self.held -= ticket.held
            left = self.by_client[client] - 1
            if left:
                self.by_client[client] = left
            else:
                del self.by_client[client]


class Ticket:
    """One request's share of the memory budget."""

    def __init__(self, uploads: Uploads) -> None:
        self.uploads, self.held = uploads, 0

    def charge(self, nbytes: int) -> None:
        if self.uploads.held + nbytes > self.uploads.max_bytes:
            raise HTTPException(
                503,
                f"busy: {self.uploads.held} bytes of request bodies held — retry later",
                headers={"Retry-After": "5"},
            )
        self.held += nbytes
        self.uploads.held += nbytes


def client_of(request: Request) -> str:
    """The peer address (a reverse proxy in front should enforce its own per-client limits)."""
    return request.client.host if request.client else "unknown"


def _check_content_type(request: Request) -> None:
    declared = request.headers.get("content-type")
    if declared is not None and declared.split(";")[0].strip().lower() != BINARY:
        raise HTTPException(415, f"Content-Type {declared[:60]!r}: send the payload as {BINARY}")


async def read_body(
    request: Request,
    *,
    limit: int,
    magic: bytes,
    declared_length: Callable[[bytes], int | None],
    idle_timeout_s: float,
    total_timeout_s: float,
    what: str,
    ticket: Ticket | None = None,
    to_file: Path | None = None,
) -> bytes | int:
    """The body (or, with ``to_file``, its length once written there).

    413 past ``limit``; 408 when no byte arrives for ``idle_timeout_s`` or the whole body
    takes longer than ``total_timeout_s``; 415 for another Content-Type; 422 (ContextError)
    as soon as the first bytes are not ``magic`` or the header's declared length is not
    the body's."""
    _check_content_type(request)
    header = request.headers.get("content-length")
    sent = int(header) if header is not None and header.isdigit() else None
    if sent is not None and sent > limit:
        raise HTTPException(413, f"body too large: {sent} bytes, the limit here is {limit}")
    deadline = time.monotonic() + total_timeout_s
    chunks, size, prefix, expected = [], 0, b"", None
    pending, pending_bytes = [], 0  # to_file: chunks not yet written
    sink = to_file.open("wb") if to_file is not None else None
    stream = request.stream().__aiter__()
    ok = False
    try:
        while True:
            wait = min(idle_timeout_s, deadline - time.monotonic())
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(wait, 0.0))
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"the body arrived too slowly ({size} bytes; no data for "
                    f"{idle_timeout_s:.0f} s, or over {total_timeout_s:.0f} s in all)",
                ) from None
            except ClientDisconnect:
                raise HTTPException(400, "the client disconnected before the body ended") from None
            if not chunk:
                continue
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"body too large: over {limit} bytes")
            if expected is None:
                prefix += chunk
                if not magic.startswith(prefix[: len(magic)]):
                    raise ContextError(
                        f"not a {what} (the body does not start with {magic.strip().decode()})"
                    )
                if len(prefix) >= len(magic):
                    expected = declared_length(prefix)
                    if expected is not None:
                        _check_declared(expected, sent, limit)
                        prefix = b""
            if sink is not None:
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= WRITE_BLOCK:
                    await asyncio.to_thread(_write, sink, pending)
                    pending, pending_bytes = [], 0
            else:
                if ticket is not None:
                    ticket.charge(len(chunk))
                chunks.append(chunk)
        if pending:
            await asyncio.to_thread(_write, sink, pending)
        ok = True
    finally:
        pending.clear()
        if not ok:
            chunks.clear()  # a failed body is freed now, not when its traceback is
        if sink is not None:
            await asyncio.to_thread(sink.close)
    if size == 0:
        raise HTTPException(400, "empty body: send the binary payload as the request body")
    if expected is None:
        declared_length(prefix)  # raises for a header that is malformed or never ends
        raise ContextError("the body ends inside its header")
    if expected != size:
        chunks.clear()
        raise ContextError(f"the header declares a {expected}-byte body; {size} bytes came")
    if sink is not None:
        return size
    body = b"".join(chunks)
    chunks.clear()
    return body


def _write(sink, chunks: list[bytes]) -> None:
    sink.write(b"".join(chunks))


def _check_declared(expected: int, sent: int | None, limit: int) -> None:
    if expected > limit:
        raise HTTPException(
            413, f"body too large: its header declares {expected} bytes, the limit here is {limit}"
        )
    if sent is not None and sent != expected:
        raise ContextError(
            f"the header declares a {expected}-byte body, Content-Length says {sent}"
        )
