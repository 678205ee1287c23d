"""``python -m client``: list models, and run a batch of real test images encrypted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress

import crypto_nn
from client import keyfile
from client.api import Client
from client.session import run_images
from nets import data
from nets.cli_util import make_app, result_table, write_json
from nets.errors import UserError

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
    job: Annotated[
        bool, typer.Option(help="Submit as a job and poll, instead of one request.")
    ] = False,
) -> None:
    """Encrypt n test images, send them, decrypt the logits, report accuracy and timings."""
    test = data.load(data_name, "test").subset(n)
    timings = {}
    with Client(server, token=token) as c:
        desc = c.model(model)
        if job and desc["packing"] == "single":
            raise UserError(
                f"--job sends one batch; model {model!r} takes one image per request — "
                "drop --job, or use the batch-packed model"
            )
        t0 = time.perf_counter()
        keys = crypto_nn.client_for(desc)
        public = keys.public_context()
        timings["keygen_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        key_id = c.register_key(public)
        timings["register_s"] = time.perf_counter() - t0
        with Progress(console=console, transient=True) as progress:
            what = {"single": "images", "batch": "ciphertexts"}[desc["packing"]]
            what = "segments" if desc["scheme"] == "bfv" else what
            task = progress.add_task(f"encrypting and sending {what}", total=None)
            outcome = run_images(
                c,
                keys,
                model,
                key_id,
                test.images,
                job=job,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        timings.update(outcome.timings)
    if outcome.job_id:
        console.print(f"job {outcome.job_id} done")
    pred = outcome.logits.argmax(1)
    result = {
        "model": model,
        "scheme": desc["scheme"],
        "packing": desc["packing"],
        "data": data_name,
        "n_images": len(test),
        "requests": outcome.requests,
        "encrypted_accuracy": float((pred == test.labels).mean()),
        "upload_bytes": outcome.upload_bytes,
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
    write_json(json_out, result)


@app.command("keygen")
def keygen_cmd(
    model: Annotated[str, typer.Option(help="Served model name.")],
    out: Annotated[Path | None, typer.Option(help="Key file (default keys/MODEL.key).")] = None,
    server: Server = "http://127.0.0.1:8000",
    token: Token = None,
) -> None:
    """Make keys for a model's plan, register the public part; the secret stays in a 0600 file."""
    out = out or Path("keys") / f"{model}.key"
    with Client(server, token=token) as c:
        desc = c.model(model)
        if desc["scheme"] != "ckks":
            raise UserError(
                f"model {model!r} is {desc['scheme'].upper()}: its keys are made per session — "
                f"use `client batch --model {model}`, which makes and registers them"
            )
        keys = crypto_nn.client_for(desc)
        key_id = c.register_key(keys.public_context())
    keyfile.write(
        out,
        header={"server": server, "model": model, "key_id": key_id, "plan": desc},
        secret=keys.save_secret(),
    )
    console.print(f"key_id {key_id}; secret key in {out} (mode 0600, never sent)")


def _load_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A .npy array or an image file (PNG …) as float32 in [0, 1] with the plan's shape."""
    from matplotlib import image as mpimg

    if not path.is_file():
        raise UserError(f"image {path} not found")
    try:
        arr = np.load(path, allow_pickle=False) if path.suffix == ".npy" else mpimg.imread(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read an image ({exc})") from None
    arr = np.asarray(arr, dtype=np.float32)
    if arr.shape == tuple(shape):  # already (C, H, W), e.g. a test image saved with np.save
        return arr
    if arr.ndim == 3 and shape[0] == 1:  # colour file for a grey model: luminance
        arr = arr[..., :3].mean(axis=2)
    if arr.max() > 1.0:
        arr = arr / 255.0
    arr = arr.reshape((1, *arr.shape)) if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    if arr.shape != tuple(shape):
        raise UserError(f"{path}: image of shape {arr.shape}, the model takes {tuple(shape)}")
    return arr


@app.command("infer")
def infer_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files (.png …) or .npy arrays.")],
    keys_path: Annotated[Path, typer.Option("--keys", help="Key file from `keygen`.")],
    token: Token = None,
) -> None:
    """Encrypt images, send them, decrypt: labels and timings."""
    header, secret = keyfile.read(keys_path)
    keys = crypto_nn.client_for(header["plan"], secret=secret)
    plan = keys.plan
    batch = np.stack([_load_image(p, plan.in_shape) for p in images])
    with Client(header["server"], token=token) as c:
        outcome = run_images(c, keys, header["model"], header["key_id"], batch)
    t_enc, t_srv = outcome.timings["encrypt_s"], outcome.timings["server_s"]
    for path, row in zip(images, outcome.logits, strict=True):
        label = int(row.argmax())
        name = plan.classes[label] if label < len(plan.classes) else str(label)
        console.print(f"{path}: {name} (class {label})")
    console.print(f"encrypt {t_enc:.2f} s, server round trip {t_srv:.2f} s")


@app.command("certify")
def certify_cmd(
    image: Annotated[Path, typer.Argument(help="Image file (.png …) or .npy array.")],
    model: Annotated[str, typer.Option(help="Served batch-packed model name.")],
    sigma: Annotated[float, typer.Option(help="Gaussian noise level (L2, pixels in [0, 1]).")],
    n: Annotated[int, typer.Option(help="Estimation samples (rounded up to fill batches).")] = (
        10_000
    ),
    n0: Annotated[int, typer.Option(help="Selection samples.")] = 100,
    alpha: Annotated[float, typer.Option(help="Failure probability of the certificate.")] = 0.001,
    seed: Annotated[int, typer.Option(help="Seed of the noise (drawn here, never sent).")] = 0,
    server: Server = "http://127.0.0.1:8000",
    token: Token = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Certified prediction of an encrypted image: randomized smoothing through the batch
    plan. The noise is drawn here; the server sees only ciphertexts."""
    from adversarial.defenses.smoothing import ABSTAIN
    from client.certify import certify, check_plan

    with Client(server, token=token) as c:
        desc = c.model(model)
        check_plan(desc, sigma)  # before keygen: a refused plan costs nothing
        x = _load_image(image, tuple(desc["input"]["shape"]))
        t0 = time.perf_counter()
        keys = crypto_nn.client_for(desc)
        key_id = c.register_key(keys.public_context())
        keygen_s = time.perf_counter() - t0
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("noisy copies: encrypting, sending, decrypting", total=None)
            cert = certify(
                c, keys, desc, key_id, x, sigma=sigma, n0=n0, n=n, alpha=alpha, seed=seed,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )  # fmt: skip
    if cert.n != cert.n_requested:
        console.print(
            f"n rounded up from {cert.n_requested} to {cert.n}: n0 + n fills "
            f"{cert.requests} batch(es) of {cert.batch} (a request costs the same either way)"
        )
    classes = desc["output"]["classes"]
    name = classes[cert.label] if 0 <= cert.label < len(classes) else str(cert.label)
    verdict = "abstain" if cert.label == ABSTAIN else f"{name} (class {cert.label})"
    result = {"model": model, "scheme": desc["scheme"], "image": str(image), **cert.as_dict()}
    result["keygen_register_s"] = keygen_s
    rows = {
        "prediction": verdict,
        "certified L2 radius": f"{cert.radius:.4f}",
        "p_A lower bound": f"{cert.p_lower:.5f} (α = {alpha})",
        "samples (n0 + n)": f"{cert.n0} + {cert.n}",
        "requests": cert.requests,
        "upload": f"{cert.upload_bytes / 1e6:.1f} MB",
        "time": f"{cert.timings['total_s']:.1f} s (+ keygen {keygen_s:.1f} s)",
    }
    console.print(result_table(f"certified encrypted prediction, σ = {sigma}", rows))
    write_json(json_out, result)
