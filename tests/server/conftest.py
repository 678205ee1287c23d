"""Shared fixtures: a served models directory, app factories, client keys for a plan."""

import pytest
import torch
from fastapi.testclient import TestClient
from rich.console import Console

from crypto_nn.keys import ClientKeys
from crypto_nn.plan import ClientPlan
from nets import checkpoint, data, models
from nets.runinfo import run_info
from nets.train import TrainConfig, train
from server.app import create_app
from server.settings import Settings


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    train_set = data.load("digits", "train")
    torch.manual_seed(0)
    net = models.build("mlp", (1, 8, 8), 10, hidden=8, layers=1, act="square")
    train(
        net, train_set, TrainConfig(epochs=8, batch_size=32, lr=5e-3), console=Console(quiet=True)
    )
    meta = checkpoint.Checkpoint(
        "mlp",
        {"hidden": 8, "layers": 1, "act": "square"},
        (1, 8, 8),
        10,
        data.DIGIT_CLASSES,
        "digits",
        run=run_info(seed=0, device="cpu"),
    )
    checkpoint.save(folder / "digits-mlp.pt", net, meta)
    (folder / "broken.pt").write_bytes(b"not a checkpoint")  # skipped, not fatal
    return folder


def make_client(models_dir, state_dir, **overrides):
    settings = Settings(
        models_dir=models_dir, state_dir=state_dir, calibration_images=200, **overrides
    )
    return TestClient(create_app(settings))


def keys_for(api):
    return ClientKeys(ClientPlan.from_description(api.get("/v1/models/digits-mlp").json()))


@pytest.fixture
def api(models_dir, tmp_path):
    with make_client(models_dir, tmp_path / "state") as client:
        yield client


@pytest.fixture
def new_api(models_dir):
    """Factory: a TestClient on a fresh app with these settings overrides."""
    return lambda state_dir, **overrides: make_client(models_dir, state_dir, **overrides)


@pytest.fixture
def client_keys():
    return keys_for
