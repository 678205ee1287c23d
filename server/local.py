"""Run the server as a separate process on a free loopback port (demo, tests)."""

from __future__ import annotations

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
def local_server(
    models_dir: Path, state_dir: Path, *, log: Path | None = None, startup_s: float = 300
) -> Iterator[str]:
    """``python -m server`` on 127.0.0.1:<free port> until the block ends → its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = log.open("w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "--port",
            str(port),
            "--models",
            str(models_dir),
            "--state",
            str(state_dir),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
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
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if log:
            out.close()
