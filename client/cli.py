"""``python -m client``: list models, and run a batch of real test images encrypted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from client.api import Client
from crypto_nn.keys import ClientKeys
from crypto_nn.plan import ClientPlan
from nets import data
from nets.cli_util import make_app, result_table

app = make_app("Client for the encrypted-inference service.")
console = Console()
Server = Annotated[str, typer.Option(help="Base URL of the server.")]
Token = Annotated[str | None, typer.Option(envvar="CRYPTOROBUST_TOKEN")]


@app.command("models")
def models_cmd(server: Server = "http://127.0.0.1:8000", token: Token = None) -> None:
    """The served models and their plans."""
    with Client(server, token=token) as c:
        for desc in c.models():
            p = desc["params"]
            console.print(
                f"{desc['name']}: {desc['scheme']} {desc['packing']}, depth {desc['depth']}, "
                f"N={p['poly_modulus_degree']}, moduli {p['coeff_mod_bit_sizes']}"
            )


@app.command("batch")
def batch_cmd(
    model: Annotated[str, typer.Option(help="Served model name.")],
    data_name: Annotated[str, typer.Option("--data")] = "fashion-mnist",
    n: Annotated[int, typer.Option(help="Test images in the batch.")] = 1000,
    server: Server = "http://127.0.0.1:8000",
    token: Token = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Encrypt n test images, send them, decrypt the logits, report accuracy and timings."""
    test = data.load(data_name, "test").subset(n)
    timings = {}
    with Client(server, token=token) as c:
        plan = ClientPlan.from_description(c.model(model))
        t0 = time.perf_counter()
        keys = ClientKeys(plan)
        public = keys.public_context()
        timings["keygen_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        key_id = c.register_key(public)
        timings["register_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cts = keys.encrypt_batch(test.images)
        timings["encrypt_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        outputs = c.infer(model, key_id, cts)
        timings["server_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        logits = keys.decrypt_batch(outputs, len(test))
        timings["decrypt_s"] = time.perf_counter() - t0
    pred = logits.argmax(1)
    result = {
        "model": model,
        "data": data_name,
        "n_images": len(test),
        "encrypted_accuracy": float((pred == test.labels).mean()),
        "upload_bytes": sum(map(len, cts)),
        "public_context_bytes": len(public),
        "predictions": pred.astype(np.int64).tolist(),
        **timings,
    }
    rows = {
        k: (f"{v:.2f} s" if k.endswith("_s") else v)
        for k, v in result.items()
        if k != "predictions"
    }
    console.print(result_table("encrypted batch through the server", rows))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
