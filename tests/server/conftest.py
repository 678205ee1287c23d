"""Shared fixtures: a served models directory, app factories, client keys for a plan."""

import shutil

import pytest
from fastapi.testclient import TestClient

from crypto_nn.ckks.client import CkksClient
from crypto_nn.ckks.plan import CkksClientPlan
from server.app import create_app
from server.settings import Settings


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, square_mlp_checkpoint):
    folder = tmp_path_factory.mktemp("models")
    shutil.copy(square_mlp_checkpoint, folder / "digits-mlp.pt")
    (folder / "broken.pt").write_bytes(b"not a checkpoint")  # skipped, not fatal
    return folder


def make_client(models_dir, state_dir, **overrides):
    overrides.setdefault("warm_workers", False)  # most tests never evaluate: spawn lazily
    # one plans folder per models folder: each app loads the plans the first one compiled
    overrides.setdefault("plans_dir", models_dir.parent / f"{models_dir.name}-plans")
    settings = Settings(
        models_dir=models_dir, state_dir=state_dir, calibration_images=200, **overrides
    )
    return TestClient(create_app(settings))


def keys_for(api):
    return CkksClient(CkksClientPlan.from_description(api.get("/v1/models/digits-mlp").json()))


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


@pytest.fixture
def run_job():
    return _run_job


def _run_job(api, keys, images, *, timeout_s: float = 150.0) -> dict:
    """Register ``keys``, submit ``images`` as a job on digits-mlp, poll until it ends."""
    import time

    from crypto_nn.wire import framing

    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    submitted = api.post(
        "/v1/models/digits-mlp/jobs",
        params={"key_id": key_id},
        content=framing.pack(keys.encrypt_batch(images)),
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = api.get(f"/v1/jobs/{job_id}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout_s} s")
