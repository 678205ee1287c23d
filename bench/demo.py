"""``python -m bench demo``: the main job end to end on this machine.

Trains (or reuses) a small model, starts the real server on a loopback port, queries it
with encrypted Fashion-MNIST test images through the real client, stops the server, and
prints the encrypted-vs-plain table.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from client.api import Client
from crypto_nn.keys import ClientKeys
from crypto_nn.plan import ClientPlan
from nets import checkpoint, data
from nets.errors import UserError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise UserError(f"the server exited with code {server.returncode}; see its log")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise UserError(f"the server did not become healthy within {seconds:.0f} s")


def run(*, model_path: Path, n: int, workdir: Path) -> dict:
    net, meta = checkpoint.load(model_path)
    test = data.load(meta.data, "test").subset(n)
    models_dir = workdir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    name = model_path.stem
    shutil.copy(model_path, models_dir / model_path.name)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "--port",
            str(port),
            "--models",
            str(models_dir),
            "--state",
            str(workdir / "state"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(url, server)
        with Client(url) as client:
            plan = ClientPlan.from_description(client.model(name))
            t0 = time.perf_counter()
            keys = ClientKeys(plan)
            key_id = client.register_key(keys.public_context())
            cts = keys.encrypt_batch(test.images)
            t_enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            outputs = client.infer(name, key_id, cts)
            t_server = time.perf_counter() - t0
            logits = keys.decrypt_batch(outputs, len(test))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    with torch.no_grad():
        t0 = time.perf_counter()
        plain = net(torch.from_numpy(test.images)).numpy()
        t_plain = time.perf_counter() - t0
    enc_pred, plain_pred = logits.argmax(1), plain.argmax(1)
    return {
        "model": name,
        "data": meta.data,
        "n_images": len(test),
        "server": url,
        "plain_accuracy": float((plain_pred == test.labels).mean()),
        "encrypted_accuracy": float((enc_pred == test.labels).mean()),
        "argmax_agreement": float((enc_pred == plain_pred).mean()),
        "max_abs_logit_difference": float(np.abs(logits - plain).max()),
        "plain_s": t_plain,
        "client_keygen_encrypt_s": t_enc,
        "server_round_trip_s": t_server,
        "upload_bytes": sum(map(len, cts)),
    }
