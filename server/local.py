"""Run the server as a separate process on a free loopback port (demo, tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from nets.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(
    models_dir: Path,
    state_dir: Path,
    *,
    log: Path | None = None,
    startup_s: float = 300,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m server`` on 127.0.0.1:<free port> → (base URL, process) until the block
    ends; then SIGTERM, and the server's own shutdown stops its workers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = log.open("w") if log else subprocess.DEVNULL
    command = [sys.executable, "-m", "server", "--port", str(port), "--models", str(models_dir)]
    proc = subprocess.Popen(
        [*command, "--state", str(state_dir), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise UserError(
                    f"the server exited with code {proc.returncode}"
                    + (f"; see {log}" if log else "")
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise UserError(f"the server did not become healthy within {startup_s:.0f} s")
            time.sleep(0.5)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if log:
            out.close()


@contextmanager
def local_server(models_dir: Path, state_dir: Path, **kwargs) -> Iterator[str]:
    """``python -m server`` on 127.0.0.1:<free port> until the block ends → its base URL."""
    with server_process(models_dir, state_dir, **kwargs) as (url, _):
        yield url
