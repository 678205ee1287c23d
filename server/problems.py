"""Every error as RFC 9457 problem+json: ``type``, ``title``, ``status``, ``detail``."""

from __future__ import annotations

import traceback
from http import HTTPStatus

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from crypto_nn.errors import ContextError
from nets.errors import UserError

PROBLEM = "application/problem+json"


def problem(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def forget(exc: BaseException | None) -> None:
    """Drop the locals of the frames an exception keeps alive: a request's body is a local
    in them, and an exception kept past its request (logged, chained, in a reference
    cycle) would keep every failed request's body in memory until a garbage collection.
    Frames still running (the handler's callers) are left as they are."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)
            exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        forget(exc)
        return problem(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        forget(exc)
        return problem(
            422,
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
        )

    @app.exception_handler(ContextError)
    async def _context(_: Request, exc: ContextError) -> JSONResponse:
        forget(exc)
        return problem(422, str(exc))

    @app.exception_handler(UserError)
    async def _user(_: Request, exc: UserError) -> JSONResponse:
        forget(exc)
        return problem(400, str(exc))
