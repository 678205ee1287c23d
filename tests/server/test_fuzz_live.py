"""≥ 500 mutated payloads against a live server: no 5xx, the process alive, RSS bounded."""

import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from crypto_nn.ckks.client import CkksClient
from crypto_nn.ckks.plan import CkksClientPlan
from crypto_nn.wire import framing
from nets import data
from server.local import local_server

OK = {200, 201, 400, 404, 413, 422}
RSS_GROWTH_LIMIT_MB = 400  # the API process may cache, but not grow without bound


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _server_pid(port: int) -> int:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"server" in cmd and str(port).encode() in cmd:
            return int(pid)
    raise AssertionError("server process not found")


def _mutate(blob: bytes, rng: np.random.Generator, k: int) -> bytes:
    kind = k % 4
    if kind == 0:
        return blob[: int(rng.integers(0, len(blob)))]
    b = bytearray(blob)
    if kind == 1:
        for pos in rng.integers(0, len(b), size=int(rng.integers(1, 8))):
            b[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == 2:
        b[int(rng.integers(0, min(200, len(b))))] ^= 0xFF
        return bytes(b)
    return rng.bytes(int(rng.integers(1, 5000)))


@pytest.mark.slow
def test_five_hundred_mutations(models_dir, tmp_path):
    rng = np.random.default_rng(7)
    with (
        local_server(models_dir, tmp_path / "state") as url,
        httpx.Client(base_url=url, timeout=300) as http,
    ):
        pid = _server_pid(int(url.rsplit(":", 1)[1]))
        plan = CkksClientPlan.from_description(http.get("/v1/models/digits-mlp").json())
        keys = CkksClient(plan)
        context = keys.public_context()
        key_id = http.post("/v1/keys", content=context).json()["key_id"]
        body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:4]))
        infer = f"/v1/models/digits-mlp/infer?key_id={key_id}"
        assert http.post(infer, content=body).status_code == 200
        rss_before = _rss_mb(pid)
        statuses = []
        for k in range(400):
            statuses.append(http.post("/v1/keys", content=_mutate(context, rng, k)).status_code)
        for k in range(100):
            statuses.append(http.post(infer, content=_mutate(body, rng, k)).status_code)
        rss_after = _rss_mb(pid)
        assert set(statuses) <= OK, sorted(set(statuses))
        assert http.post(infer, content=body).status_code == 200
    print(
        f"\n500 mutated payloads: statuses {sorted(set(statuses))}, API RSS {rss_before:.0f} → "
        f"{rss_after:.0f} MB"
    )
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_MB
