"""The browser client: the page at ``/``, its modules (``/static``), and node-seal — SEAL
4.1.2 in WebAssembly, installed by ``make web`` from the npm lock file — at
``/vendor/node-seal/``. Only the three files the page loads are served from it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB = Path(__file__).resolve().parents[1] / "web"
STATIC = WEB / "static"
NODE_SEAL = WEB / "node_modules" / "node-seal" / "dist"
VENDOR = {  # name → media type (wasm must be application/wasm for streaming compilation)
    "index_throws.js": "text/javascript",
    "seal_throws.js": "text/javascript",
    "seal_throws.wasm": "application/wasm",
}
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                ".png": "image/png", ".json": "application/json"}  # fmt: skip
# the page runs only its own scripts, compiles only its own wasm, and talks only to here
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
    "img-src 'self' data: blob:; style-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Cache-Control": "no-cache"}  # fmt: skip

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/static/{name:path}")
def static(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file() or path.suffix not in STATIC_TYPES:
        raise HTTPException(404, f"no page asset {name!r}")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers=HEADERS)


@router.get("/vendor/node-seal/{name}")
def node_seal(name: str) -> FileResponse:
    if name not in VENDOR:
        raise HTTPException(404, f"no node-seal file {name!r}")
    path = NODE_SEAL / name
    if not path.is_file():
        raise HTTPException(
            404,
            "node-seal is not installed on this server: run `make web` (npm ci in server/web) "
            "and restart it",
        )
    return FileResponse(path, media_type=VENDOR[name], headers=HEADERS)
