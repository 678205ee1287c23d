"""A live server against clients that stall, flood and upload large keys."""

import shutil
import socket
import threading
import time

import httpx
import pytest

from crypto_nn.ckks.client import CkksClient
from crypto_nn.ckks.plan import CkksClientPlan
from crypto_nn.wire import framing
from nets import data
from server.local import server_process


@pytest.fixture(scope="module")
def live(tmp_path_factory, square_mlp_checkpoint):
    root = tmp_path_factory.mktemp("live-hostile")
    (root / "models").mkdir()
    shutil.copy(square_mlp_checkpoint, root / "models" / "digits-mlp.pt")
    env = {"CRYPTOROBUST_BODY_IDLE_TIMEOUT_S": "2", "CRYPTOROBUST_MAX_UPLOADS": "3"}
    with server_process(root / "models", root / "state", env=env) as (url, proc):
        yield url


def _keys(url: str, model: str = "digits-mlp") -> CkksClient:
    return CkksClient(CkksClientPlan.from_description(httpx.get(f"{url}/v1/models/{model}").json()))


def _stall(url: str, path: str, first: bytes) -> socket.socket:
    """Send the headers and the first bytes of a body that claims to be larger, then stop."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: 1000000\r\n\r\n".encode()
        + first
    )
    return sock


def test_stalled_uploads_hold_no_evaluation_slot_and_time_out(live):
    keys = _keys(live)
    key_id = httpx.post(f"{live}/v1/keys", content=keys.public_context(), timeout=60).json()[
        "key_id"
    ]
    body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:8]))
    infer = f"/v1/models/digits-mlp/infer?key_id={key_id}"
    stalled = [_stall(live, infer, b"CRCTS\n") for _ in range(2)]
    time.sleep(0.3)
    assert httpx.get(f"{live}/healthz").json()["in_flight"] == 0  # no evaluation slot taken
    started = time.monotonic()
    response = httpx.post(f"{live}{infer}", content=body, timeout=60)
    assert response.status_code == 200, response.text  # served at once, not 503
    assert time.monotonic() - started < 30
    for sock in stalled:
        sock.settimeout(10)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        sock.close()
    # past the upload bound a client is told to retry, and served once the stalls expire
    stalled = [_stall(live, infer, b"CRCTS\n") for _ in range(3)]
    time.sleep(0.3)
    busy = httpx.post(f"{live}{infer}", content=body, timeout=60)
    assert busy.status_code == 503 and busy.headers["retry-after"]
    time.sleep(3)
    assert httpx.post(f"{live}{infer}", content=body, timeout=60).status_code == 200
    for sock in stalled:
        sock.close()


def test_junk_is_refused_from_its_first_bytes(live):
    sock = _stall(live, "/v1/keys", b"GARBAGE!")
    sock.settimeout(10)
    answer = b""
    while b"CRCTX" not in answer and len(answer) < 8192:  # headers and body may come apart
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 422") and b"CRCTX" in answer, answer[:300]
    sock.close()


def test_health_answers_while_large_contexts_are_checked(live):
    contexts = [_keys(live, "digits-mlp-single").public_context() for _ in range(6)]
    assert len(contexts[0]) > 1_000_000  # with rotation keys
    latencies, statuses = [], []

    def register(ctx):
        for _ in range(30):  # 503 past the upload bound: retry as a client would
            r = httpx.post(f"{live}/v1/keys", content=ctx, timeout=120)
            if r.status_code != 503:
                statuses.append(r.status_code)
                return
            time.sleep(float(r.headers.get("retry-after", 1)))

    threads = [threading.Thread(target=register, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        start = time.monotonic()
        assert httpx.get(f"{live}/healthz", timeout=30).status_code == 200
        latencies.append(time.monotonic() - start)
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert statuses == [201] * 6, statuses
    assert max(latencies) < 1.0, f"/healthz took up to {max(latencies):.2f} s"
