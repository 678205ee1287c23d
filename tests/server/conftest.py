"""Shared fixtures: a served models directory, app factories, client keys for a plan."""

import shutil

import pytest
from fastapi.testclient import TestClient

from crypto_nn.keys import ClientKeys
from crypto_nn.plan import ClientPlan
from server.app import create_app
from server.settings import Settings


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, square_mlp_checkpoint):
    folder = tmp_path_factory.mktemp("models")
    shutil.copy(square_mlp_checkpoint, folder / "digits-mlp.pt")
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
