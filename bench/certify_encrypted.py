"""``python -m bench certify-encrypted``: certified prediction of encrypted images (issue 27).

A noise-trained x² model (``tenseal-tutorial`` on Fashion-MNIST, Gaussian augmentation at σ
with the noisy copies clipped to [0, 1]) is served by the real server on a loopback port;
each test image is certified twice with the same noise seed — through the encrypted batch
plan (``client.certify``: one request carries n0 + n noisy copies) and in the clear
(``Smoothed.certify`` on the torch model, or on the IntModel for BFV). The baseline is the
clear certifier on this machine: images certified per minute, requests and upload per
certificate, and whether the two certificates are the same.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import crypto_nn
from adversarial import defenses
from adversarial.defenses.smoothing import Smoothed, certified_accuracy
from adversarial.plots import certified_curve
from bench import report
from client.api import Client
from client.certify import CLIP, certify
from integer_nn.as_torch import IntClassifier
from nets import checkpoint, data, models
from nets.runinfo import run_info, seed_everything
from nets.train import TrainConfig
from server.local import local_server

RADII = np.round(np.arange(0.0, 1.01, 0.05), 2)


def train_model(path: Path, *, model: str, data_name: str, sigma: float, epochs: int, seed: int):
    """The HE-friendly noise-trained model (reused when ``path`` exists)."""
    if path.is_file():
        return checkpoint.load(path)
    seed_everything(seed)
    train_set = data.load(data_name, "train")
    net = models.build(model, train_set.images.shape[1:], len(train_set.classes))
    defense = defenses.build("smoothing", sigma=sigma, clip=True)
    test_set = data.load(data_name, "test")
    net, fitted = defense.fit(
        net, train_set, TrainConfig(epochs=epochs, seed=seed), test_data=test_set
    )
    meta = checkpoint.Checkpoint(
        model,
        {},
        tuple(train_set.images.shape[1:]),
        len(train_set.classes),
        tuple(train_set.classes),
        data_name,
        metrics={"test_accuracy": float(fitted.test_accuracy or 0.0)},
        run={
            **run_info(seed=seed, device="cpu"),
            "defense": "smoothing",
            "defense_options": {"sigma": sigma, "clip": True},
        },
    )
    checkpoint.save(path, net, meta)
    return checkpoint.load(path)


def _certify_all(c, desc, reference, images, labels, *, sigma, n0, n, alpha, seed) -> dict:
    """Encrypted and clear certificates of every image, same noise seed per image."""
    t0 = time.perf_counter()
    keys = crypto_nn.client_for(desc)
    key_id = c.register_key(keys.public_context())
    keygen_s = time.perf_counter() - t0
    smoothed = Smoothed(reference, sigma, len(desc["output"]["classes"]), clip=CLIP)
    rows, enc_s, clear_s, requests, upload = [], 0.0, 0.0, 0, 0
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        t0 = time.perf_counter()
        enc = certify(c, keys, desc, key_id, image, sigma=sigma, n0=n0, n=n, alpha=alpha,
                      seed=seed + i)  # fmt: skip
        enc_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed + i)
        clear = smoothed.certify(torch.from_numpy(image), enc.n0, enc.n, alpha, gen)
        clear_s += time.perf_counter() - t0
        requests += enc.requests
        upload += enc.upload_bytes
        rows.append(
            {
                "label": int(label),
                "encrypted": {"predicted": enc.label, "radius": enc.radius,
                              "correct": enc.label == int(label)},
                "clear": {"predicted": clear.label, "radius": clear.radius,
                          "correct": clear.label == int(label)},
                "same_counts": enc.counts == clear.counts.tolist(),
                "same_label": enc.label == clear.label,
                # at least this many of the n samples were classified differently
                "samples_differing": int(np.abs(np.subtract(enc.counts, clear.counts)).sum()) // 2,
                "n0": enc.n0,
                "n": enc.n,
            }
        )  # fmt: skip
        print(
            f"  {desc['name']} image {i}: encrypted {enc.label} r={enc.radius:.3f}, clear "
            f"{clear.label} r={clear.radius:.3f}, same counts {rows[-1]['same_counts']}",
            flush=True,
        )
    k = len(rows)
    curves = {
        side: certified_accuracy([r[side] for r in rows], RADII).tolist()
        for side in ("encrypted", "clear")
    }
    return {
        "model": desc["name"],
        "scheme": desc["scheme"],
        "images": k,
        "n0": rows[0]["n0"] if rows else n0,
        "n": rows[0]["n"] if rows else n,
        "keygen_register_s": keygen_s,
        "encrypted_s": enc_s,
        "clear_s": clear_s,
        "encrypted_per_min": 60 * k / enc_s if enc_s else 0.0,
        "clear_per_min": 60 * k / clear_s if clear_s else 0.0,
        "requests_per_certificate": requests / k if k else 0.0,
        "upload_bytes_per_certificate": upload / k if k else 0.0,
        "same_certificates": sum(r["same_counts"] for r in rows),
        "same_labels": sum(r["same_label"] for r in rows),
        "samples_differing": sum(r["samples_differing"] for r in rows),
        "max_radius_difference": max(
            (abs(r["encrypted"]["radius"] - r["clear"]["radius"]) for r in rows), default=0.0
        ),
        "certified_accuracy": curves,
        "rows": rows,
    }


def run(
    *,
    workdir: Path,
    model: str = "tenseal-tutorial",
    data_name: str = "fashion-mnist",
    sigma: float = 0.25,
    images: int = 100,
    bfv_images: int = 5,
    n0: int = 100,
    n: int = 3996,
    alpha: float = 0.001,
    epochs: int = 10,
    seed: int = 0,
) -> dict:
    models_dir = workdir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{model}-smooth.pt"
    t0 = time.perf_counter()
    net, meta = train_model(path, model=model, data_name=data_name, sigma=sigma,
                            epochs=epochs, seed=seed)  # fmt: skip
    train_s = time.perf_counter() - t0
    test = data.load(data_name, "test").subset(max(images, bfv_images))
    result = {
        "checkpoint": str(path),
        "data": data_name,
        "sigma": sigma,
        "alpha": alpha,
        "train_s": train_s,
        "clean_accuracy": float(meta.metrics.get("test_accuracy", float("nan"))),
        "radii": RADII.tolist(),
        "run": run_info(seed=seed, device="cpu"),
        "plans": {},
    }
    print(f"serving {path.name} (CKKS batch + BFV); log {workdir / 'server.log'}", flush=True)
    server = local_server(models_dir, workdir / "state", log=workdir / "server.log")
    with server as url, Client(url) as c:
        stem = path.stem
        ckks = c.model(stem)
        result["plans"]["ckks"] = _certify_all(
            c, ckks, net.eval(), test.images[:images], test.labels[:images],
            sigma=sigma, n0=n0, n=n, alpha=alpha, seed=seed,
        )  # fmt: skip
        result["plans"]["ckks"]["params"] = ckks["params"]
        if bfv_images:
            from server.models import quantized
            from server.settings import Settings

            s = Settings()
            int_model = quantized(path, s.calibration_images, s.bfv_bits)
            bfv = c.model(f"{stem}-bfv")
            result["plans"]["bfv"] = _certify_all(
                c, bfv, IntClassifier(int_model), test.images[:bfv_images],
                test.labels[:bfv_images], sigma=sigma, n0=n0, n=n, alpha=alpha, seed=seed,
            )  # fmt: skip
            result["plans"]["bfv"]["params"] = bfv["params"]
    result["plot"] = str(plot(result, workdir / "certified_accuracy.png"))
    return result


def plot(r: dict, path: Path) -> Path:
    """The certified-accuracy curves of the CKKS run, encrypted over clear (dashed)."""
    ck = r["plans"]["ckks"]
    radii = np.asarray(r["radii"])
    clear = f"clear (torch), {ck['images']} images"
    enc = f"encrypted (CKKS batch), {ck['images']} images"
    return certified_curve(
        {
            clear: (radii, np.array(ck["certified_accuracy"]["clear"])),
            enc: (radii, np.array(ck["certified_accuracy"]["encrypted"])),
        },
        path,
        styles={clear: {"linewidth": 4, "alpha": 0.5}, enc: {"linestyle": "--"}},
    )


def table(r: dict) -> str:
    header = [
        "", "images", "certified / min", "requests / cert", "upload / cert",
        "same counts as clear", "same label", "samples differing",
        "cert. acc r=0", "r=0.25", "r=0.5",
    ]  # fmt: skip
    rows = []
    idx = {float(v): i for i, v in enumerate(r["radii"])}
    for scheme, p in r["plans"].items():
        for side in ("clear", "encrypted"):
            acc = p["certified_accuracy"][side]
            name = (
                f"clear ({'IntModel' if scheme == 'bfv' else 'torch'}), n = {p['n']}"
                if side == "clear"
                else f"encrypted {scheme.upper()} batch (N={p['params']['poly_modulus_degree']}), "
                f"n = {p['n']}"
            )
            rows.append(
                [
                    name,
                    p["images"],
                    f"{p[f'{side}_per_min']:.1f}",
                    f"{p['requests_per_certificate']:.1f}" if side == "encrypted" else "-",
                    f"{p['upload_bytes_per_certificate'] / 1e6:.0f} MB"
                    if side == "encrypted"
                    else "-",
                    f"{p['same_certificates']}/{p['images']}" if side == "encrypted" else "-",
                    f"{p['same_labels']}/{p['images']}" if side == "encrypted" else "-",
                    f"{p['samples_differing']} of {p['images'] * p['n']:,}"
                    if side == "encrypted"
                    else "-",
                    f"{acc[idx[0.0]]:.2f}",
                    f"{acc[idx[0.25]]:.2f}",
                    f"{acc[idx[0.5]]:.2f}",
                ]
            )
    ck = r["plans"]["ckks"]
    speed = ck["clear_per_min"] / ck["encrypted_per_min"] if ck["encrypted_per_min"] else 0
    return (
        f"Certified prediction of encrypted {r['data']} images, σ = {r['sigma']}, α = "
        f"{r['alpha']}, n0 = {ck['n0']}, n0 + n = one batch per certificate\n\n"
        + report.markdown_table(header, rows)
        + f"\nclear certification is {speed:,.0f}× faster per image; largest radius difference "
        f"{ck['max_radius_difference']:.2g} (CKKS: a sample whose top two logits lie within "
        f"its precision may flip); plot: {r['plot']}\n"
    )
