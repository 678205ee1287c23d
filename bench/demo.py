"""``python -m bench demo``: the main job end to end on this machine.

Trains (or reuses) a small model, starts the real server on a loopback port, queries it
with encrypted Fashion-MNIST test images through the real client, stops the server, and
prints the encrypted-vs-plain table.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from client.api import Client
from crypto_nn.keys import ClientKeys
from crypto_nn.plan import ClientPlan
from nets import checkpoint, data
from server.local import local_server


def run(*, model_path: Path, n: int, workdir: Path) -> dict:
    net, meta = checkpoint.load(model_path)
    test = data.load(meta.data, "test").subset(n)
    models_dir = workdir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    name = model_path.stem
    shutil.copy(model_path, models_dir / model_path.name)
    server = local_server(models_dir, workdir / "state", log=workdir / "server.log")
    with server as url, Client(url) as client:
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
