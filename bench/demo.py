"""``python -m bench demo``: the main job end to end on this machine.

Trains (or reuses) a small model, starts the real server on a loopback port, queries it
with encrypted Fashion-MNIST test images through the real client — batch packing (all
images in one request) and single packing (one request per image) — stops the server,
and prints the encrypted-vs-plain table.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

import crypto_nn
from bench import report
from client.api import Client
from client.session import run_images
from nets import checkpoint, data
from server.local import local_server
from server.models import smoothing_sigma


def run(*, model_path: Path, n: int, n_single: int, workdir: Path) -> dict:
    """Batch packing over ``n`` test images (one request), single packing over the first
    ``n_single`` (one request per image)."""
    net, meta = checkpoint.load(model_path)
    test = data.load(meta.data, "test").subset(n)
    models_dir = workdir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    name = model_path.stem
    shutil.copy(model_path, models_dir / model_path.name)
    with torch.no_grad():
        t0 = time.perf_counter()
        plain = net(torch.from_numpy(test.images)).numpy()
        t_plain = time.perf_counter() - t0
    plain_pred = plain.argmax(1)
    result = {
        "model": name,
        "data": meta.data,
        "n_images": len(test),
        "plain_accuracy": float((plain_pred == test.labels).mean()),
        "plain_s": t_plain,
        "packings": {},
    }
    server = local_server(models_dir, workdir / "state", log=workdir / "server.log")
    print(
        f"starting the server on a loopback port: it compiles {name}'s CKKS batch, CKKS "
        "single and BFV plans on first start (about a minute; saved for the next start) — "
        f"log: {workdir / 'server.log'}",
        flush=True,
    )
    with server as url, Client(url) as client:
        print(f"server ready at {url}; querying it encrypted", flush=True)
        result["server"] = url
        runs = (
            ("batch", name, len(test)),
            ("single", f"{name}-single", min(n_single, len(test))),
            ("bfv", f"{name}-bfv", len(test)),
        )
        for row, served, count in runs:
            desc = client.model(served)
            t0 = time.perf_counter()
            keys = crypto_nn.client_for(desc)
            key_id = client.register_key(keys.public_context())
            keygen_s = time.perf_counter() - t0
            outcome = run_images(client, keys, served, key_id, test.images[:count])
            pred = np.asarray(outcome.logits.argmax(1), dtype=np.int64)
            result["packings"][row] = {
                "model": served,
                "n_images": count,
                "keygen_register_s": keygen_s,
                **outcome.timings,
                "requests": outcome.requests,
                "upload_bytes": outcome.upload_bytes,
                "plain_accuracy": float((plain_pred[:count] == test.labels[:count]).mean()),
                "encrypted_accuracy": float((pred == test.labels[:count]).mean()),
                "argmax_agreement": float((pred == plain_pred[:count]).mean()),
            }
            if desc["scheme"] == "bfv":  # exact: against the integer model, bit for bit
                reference = _int_reference(model_path, test.images[:count])
                entry = result["packings"][row]
                entry["scheme"] = "bfv"
                entry["bit_exact_rate"] = float(
                    (outcome.logits == reference.astype(object)).all(axis=1).mean()
                )
                entry["round_trips"] = desc["round_trips"]
                entry["max_abs_logit_difference"] = float(
                    np.abs(
                        outcome.logits.astype(np.float64) * desc["output"]["output_scale"]
                        - plain[:count]
                    ).max()
                )
            else:
                result["packings"][row]["max_abs_logit_difference"] = float(
                    np.abs(outcome.logits - plain[:count]).max()
                )
        sigma = smoothing_sigma(meta)
        if sigma:  # a noise-trained checkpoint: one certified encrypted prediction
            result["certified"] = _certify_one(client, name, net, test, sigma)
    return result


def _certify_one(client: Client, name: str, net, test, sigma: float) -> dict:
    """Test image 0 certified through the CKKS batch plan (one request of noisy copies)
    and in the clear with the same noise."""
    from adversarial.defenses.smoothing import Smoothed
    from client.certify import CLIP, certify

    desc = client.model(name)
    keys = crypto_nn.client_for(desc)
    key_id = client.register_key(keys.public_context())
    enc = certify(client, keys, desc, key_id, test.images[0], sigma=sigma, n0=100, n=3996)
    clear = Smoothed(net.eval(), sigma, len(test.classes), clip=CLIP).certify(
        torch.from_numpy(test.images[0]), enc.n0, enc.n, enc.alpha, torch.Generator().manual_seed(0)
    )
    return {
        "label": enc.label,
        "true_label": int(test.labels[0]),
        "radius": enc.radius,
        "sigma": sigma,
        "n0": enc.n0,
        "n": enc.n,
        "requests": enc.requests,
        "upload_bytes": enc.upload_bytes,
        "seconds": enc.timings["total_s"],
        "clear_label": clear.label,
        "clear_radius": clear.radius,
    }


def _int_reference(model_path: Path, images: np.ndarray) -> np.ndarray:
    """The integer model the server compiled ``NAME-bfv`` from (same checkpoint, data,
    calibration images and bits: quantisation is deterministic), run in the clear — what
    the BFV logits must equal bit for bit."""
    from server.models import quantized
    from server.settings import Settings

    settings = Settings()
    int_model = quantized(model_path, settings.calibration_images, settings.bfv_bits)
    return int_model.forward(int_model.quantize_input(images))


def table(r: dict) -> str:
    """The markdown table ``bench demo`` prints and writes beside its JSON."""
    header = ["", "images", "accuracy", "agreement", "time", "per image", "upload"]
    rows = [
        [
            "plain (torch, CPU, one batch)",
            r["n_images"],
            f"{r['plain_accuracy']:.3f}",
            "-",
            f"{r['plain_s']:.4f} s",
            f"{r['plain_s'] / r['n_images'] * 1000:.4f} ms",
            "-",
        ]
    ]
    for packing, p in r["packings"].items():
        total = p["keygen_register_s"] + p["encrypt_s"] + p["server_s"] + p["decrypt_s"]
        label = f"encrypted CKKS {packing} via HTTP ({_count(p['requests'], 'request')})"
        if p.get("scheme") == "bfv":
            trips = _count(p["round_trips"], "client round trip")
            label = (
                f"encrypted BFV exact via HTTP ({_count(p['requests'], 'request')}, {trips}), "
                f"bit-exact vs integer model {p['bit_exact_rate']:.3f}"
            )
        rows.append(
            [
                label,
                p["n_images"],
                f"{p['encrypted_accuracy']:.3f}",
                f"{p['argmax_agreement']:.3f}",
                f"{total:.1f} s",
                f"{total / p['n_images'] * 1000:.1f} ms",
                f"{p['upload_bytes'] / 1e6:.1f} MB",
            ]
        )
    md = (
        f"{r['model']} on {r['data']}: server {r['server']}\n\n"
        + report.markdown_table(header, rows)
        + "\ntime = keygen + key registration + encrypt + server round trips + decrypt; BFV "
        "runs the checkpoint quantised to 4 bits (integer_nn): its accuracy is the integer "
        "model's; "
        "thesis Table 3.1: 0.1 ms plain vs 300 s encrypted per image\n"
    )
    c = r.get("certified")
    if c:
        md += (
            f"\ncertified encrypted prediction of test image 0 (randomized smoothing, σ = "
            f"{c['sigma']}, {c['n0']} + {c['n']} noisy copies in {_count(c['requests'], 'request')}"
            f", {c['upload_bytes'] / 1e6:.0f} MB, {c['seconds']:.1f} s): {_label(c['label'])} "
            f"(true {c['true_label']}), certified L2 radius {c['radius']:.3f}; in the clear with "
            f"the same noise: {_label(c['clear_label'])}, radius {c['clear_radius']:.3f}\n"
        )
    return md


def _label(label: int) -> str:
    return "abstain" if label < 0 else f"class {label}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
