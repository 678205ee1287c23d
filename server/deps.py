"""Dependencies shared by the routers: settings and bearer-token auth."""

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
