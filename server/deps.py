"""Dependencies shared by the routers: settings, auth, bounded body reading, the pool gate."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="Set when the server runs with --token.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_token(
    settings: SettingsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if settings.token is None:
        return
    if creds is None or not secrets.compare_digest(creds.credentials, settings.token):
        raise HTTPException(
            401,
            "unauthorized: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


Auth = Depends(require_token)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body too large: {declared} bytes, the limit here is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body too large: over {limit} bytes")
        chunks.append(chunk)
    if size == 0:
        raise HTTPException(400, "empty body: send the binary payload as the request body")
    return b"".join(chunks)
