"""Dependencies shared by the routers: the app's services, its settings, bearer-token auth.

The only place that reads ``app.state``: handlers declare what they need instead."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.services import Services
from server.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="Set when the server runs with --token.")


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


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
