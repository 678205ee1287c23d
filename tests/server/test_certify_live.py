"""``client certify`` over a live server: the encrypted certificate equals the clear one
for the same noise (CKKS against the torch model, BFV exactly against the IntModel)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import crypto_nn
from adversarial import defenses
from adversarial.defenses.smoothing import Smoothed
from client.api import Client
from client.certify import certify
from integer_nn.as_torch import IntClassifier
from nets import checkpoint, data, models
from nets.errors import UserError
from nets.runinfo import run_info
from nets.train import TrainConfig
from server.local import local_server
from server.models import quantized
from server.settings import Settings

SIGMA, SEED = 0.25, 11


def _noise_trained_mlp(path: Path) -> Path:
    """The x² digits MLP, trained on noisy copies clipped to [0, 1] (what certify sends)."""
    torch.manual_seed(0)
    net = models.build("mlp", (1, 8, 8), 10, hidden=8, layers=1, act="square")
    defense = defenses.build("smoothing", sigma=SIGMA, clip=True)
    defense.fit(
        net, data.load("digits", "train"), TrainConfig(epochs=8, batch_size=32, lr=5e-3),
        console=Console(quiet=True),
    )  # fmt: skip
    meta = checkpoint.Checkpoint(
        "mlp",
        {"hidden": 8, "layers": 1, "act": "square"},
        (1, 8, 8),
        10,
        data.DIGIT_CLASSES,
        "digits",
        run={**run_info(seed=0, device="cpu"), "defense": "smoothing",
             "defense_options": {"sigma": SIGMA, "clip": True}},
    )  # fmt: skip
    return checkpoint.save(path, net, meta)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certify")
    models_dir = folder / "models"
    models_dir.mkdir()
    path = _noise_trained_mlp(models_dir / "smooth.pt")
    with local_server(models_dir, folder / "state") as url:
        yield url, path, folder


def test_ckks_certificate_over_http_equals_the_clear_one(served):
    url, path, folder = served
    image = data.load("digits", "test").images[3]
    np.save(folder / "x.npy", image)
    out = folder / "cert.json"
    run = subprocess.run(
        [sys.executable, "-m", "client", "certify", str(folder / "x.npy"), "--model", "smooth",
         "--sigma", str(SIGMA), "--n0", "50", "--n", "300", "--alpha", "0.01",
         "--seed", str(SEED), "--server", url, "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    cert = json.loads(out.read_text())
    assert cert["requests"] == 1 and cert["n0"] + cert["n"] == cert["batch"]  # one full batch
    assert f"n rounded up from 300 to {cert['n']}" in run.stdout
    net, _ = checkpoint.load(path)
    clear = Smoothed(net.eval(), SIGMA, 10, clip=(0.0, 1.0)).certify(
        torch.from_numpy(image), cert["n0"], cert["n"], 0.01, torch.Generator().manual_seed(SEED)
    )
    assert cert["counts"] == clear.counts.tolist()  # same noise, same predictions
    assert (cert["label"], cert["radius"], cert["p_lower"]) == (
        clear.label, pytest.approx(clear.radius), pytest.approx(clear.p_lower),
    )  # fmt: skip
    assert cert["label"] >= 0 and cert["radius"] > 0  # a noise-trained model certifies it


def test_bfv_certificate_is_exactly_the_int_models(served):
    url, path, _ = served
    image = data.load("digits", "test").images[5]
    with Client(url) as c:
        desc = c.model("smooth-bfv")
        keys = crypto_nn.client_for(desc)
        key_id = c.register_key(keys.public_context())
        cert = certify(
            c, keys, desc, key_id, image, sigma=0.5, n0=20, n=100, alpha=0.01, seed=SEED
        )  # fmt: skip  (BFV holds any σ: the quantiser clamps)
    s = Settings()
    int_model = quantized(path, s.calibration_images, s.bfv_bits)
    clear = Smoothed(IntClassifier(int_model), 0.5, 10, clip=(0.0, 1.0)).certify(
        torch.from_numpy(image), cert.n0, cert.n, 0.01, torch.Generator().manual_seed(SEED)
    )
    assert cert.counts == clear.counts.tolist() and cert.candidate == clear.candidate
    assert cert.label == clear.label and cert.radius == clear.radius


def test_certify_refuses_what_it_cannot_count_honestly(served):
    url, _, folder = served
    image = data.load("digits", "test").images[0]
    with Client(url) as c:
        single = c.model("smooth-single")
        with pytest.raises(UserError, match="single packing"):
            certify(c, None, single, "k", image, sigma=SIGMA)
        ckks = c.model("smooth")
        assert ckks["noise_sigma"] == SIGMA
        with pytest.raises(UserError, match=r"calibrated on images with noise σ ≤ 0\.25"):
            certify(c, None, ckks, "k", image, sigma=0.5)
        with pytest.raises(UserError, match="must be > 0"):
            certify(c, None, ckks, "k", image, sigma=0.0)
    np.save(folder / "y.npy", image)
    run = subprocess.run(
        [sys.executable, "-m", "client", "certify", str(folder / "y.npy"), "--model",
         "smooth", "--sigma", "1.0", "--server", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1 and "σ ≤ 0.25" in run.stderr and "Traceback" not in run.stderr
