"""A real uvicorn on a loopback port, queried by the real client command line."""

import json
import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_and_client_over_loopback(tmp_path):
    models = tmp_path / "models"
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "nets",
            "train",
            "--model",
            "mlp",
            "--arg",
            "act=square",
            "--arg",
            "hidden=8",
            "--arg",
            "layers=1",
            "--data",
            "digits",
            "--epochs",
            "8",
            "--out",
            str(models / "digits-mlp.pt"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stderr
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "--port",
            str(port),
            "--models",
            str(models),
            "--state",
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        out = tmp_path / "result.json"
        client = subprocess.run(
            [
                sys.executable,
                "-m",
                "client",
                "batch",
                "--model",
                "digits-mlp",
                "--data",
                "digits",
                "--n",
                "100",
                "--server",
                url,
                "--json",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert client.returncode == 0, client.stderr
        result = json.loads(out.read_text())
        assert (
            result["n_images"] == 100 and result["encrypted_accuracy"] > 0.5
        )  # a small, weak model
        down = subprocess.run(
            [sys.executable, "-m", "client", "models", "--server", "http://127.0.0.1:9"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 1 and "cannot reach" in down.stderr
        assert "Traceback" not in down.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
