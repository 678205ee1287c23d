"""BFV served over HTTP: decrypted logits equal ``IntModel.forward`` bit for bit, for the
x² batch plan and a client-aided ReLU model (one request per segment); workers run from
the saved plan and never import a data set."""

import asyncio
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

import crypto_nn
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import framing
from nets import checkpoint, data
from server import worker
from server.app import create_app
from server.models import quantized
from server.pool import ProcessSlots
from server.settings import Settings

CALIBRATION = 200


@pytest.fixture(scope="module")
def bfv_models(tmp_path_factory, square_mlp_checkpoint, digits_mlp_trainer):
    folder = tmp_path_factory.mktemp("bfv-models")
    shutil.copy(square_mlp_checkpoint, folder / "digits-mlp.pt")
    digits_mlp_trainer(folder / "digits-relu.pt", act="relu", seed=1, epochs=4)
    # a quantisation-aware model beside its checkpoint: served as digits-qat-bfv
    from integer_nn import io, qat
    from nets.train import TrainConfig

    shutil.copy(square_mlp_checkpoint, folder / "digits-qat.pt")
    net, _ = checkpoint.load(square_mlp_checkpoint)
    train_set = data.load("digits", "train")
    int_model, _ = qat.fine_tune(
        net,
        train_set,
        train_set.images[:CALIBRATION],
        qat.QATConfig(weight_bits=3, act_bits=3, acc_bits=30),
        TrainConfig(epochs=1, batch_size=32, lr=1e-3),
    )
    io.save(int_model, folder / "digits-qat.int.npz")
    return folder


@pytest.fixture(scope="module")
def bfv_api(bfv_models, tmp_path_factory):
    settings = Settings(
        models_dir=bfv_models,
        state_dir=tmp_path_factory.mktemp("bfv-state"),
        calibration_images=CALIBRATION,
        packings=("bfv",),
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _infer(api, name, images):
    desc = api.get(f"/v1/models/{name}").json()
    keys = crypto_nn.client_for(desc)
    registered = api.post("/v1/keys", content=keys.public_context())
    assert registered.status_code == 201, registered.text
    key_id = registered.json()["key_id"]
    calls = []

    def send(segment, cts):
        calls.append(segment)
        response = api.post(
            f"/v1/models/{name}/infer",
            params={"key_id": key_id, "segment": segment},
            content=framing.pack(cts),
        )
        assert response.status_code == 200, response.text
        return framing.unpack(response.content)[1]

    return desc, key_id, keys.infer(images, send), calls


@pytest.mark.parametrize(
    ("stem", "round_trips"), [("digits-mlp", 0), ("digits-relu", 1), ("digits-qat", 0)]
)
def test_served_bfv_logits_equal_the_integer_model_bit_for_bit(
    bfv_api, bfv_models, stem, round_trips
):
    images = data.load("digits", "test").images[:40]
    desc, _, logits, calls = _infer(bfv_api, f"{stem}-bfv", images)
    assert desc["scheme"] == "bfv" and desc["round_trips"] == round_trips
    assert calls == list(range(round_trips + 1))  # one request per segment, in order
    int_model = quantized(bfv_models / f"{stem}.pt", CALIBRATION, 4)
    assert (int_model.meta.get("quantization") == "qat") == (stem == "digits-qat")
    expected = int_model.forward(int_model.quantize_input(images))
    assert logits.tolist() == expected.tolist()
    if stem == "digits-qat":  # its budget fits one plaintext prime
        assert len(desc["params"]["plain_moduli"]) == 1


def test_a_segment_the_plan_lacks_or_a_wrong_count_is_refused(bfv_api):
    desc = bfv_api.get("/v1/models/digits-relu-bfv").json()
    keys = crypto_nn.client_for(desc)
    key_id = bfv_api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    cts = keys.clients[0].encrypt_batch(np.zeros((1, 64), np.int64))
    body = framing.pack([c for per_prime in cts for c in per_prime])
    url = "/v1/models/digits-relu-bfv/infer"
    far = bfv_api.post(url, params={"key_id": key_id, "segment": 5}, content=body)
    assert far.status_code == 422 and "segment 5" in far.json()["detail"]
    wrong = bfv_api.post(url, params={"key_id": key_id, "segment": 1}, content=body)
    assert wrong.status_code == 422 and "at segment 1" in wrong.json()["detail"]


def test_a_ckks_context_is_refused_by_a_bfv_only_server(bfv_api, square_mlp_checkpoint):
    from crypto_nn.ckks.client import make_keys

    net, meta = checkpoint.load(square_mlp_checkpoint)
    plan = crypto_nn.compile(net, data.load("digits", "train").images[:100])
    _, public = make_keys(plan)
    refused = bfv_api.post("/v1/keys", content=public)
    assert refused.status_code == 422 and "serves BFV" in refused.json()["detail"]


def test_worker_evaluates_from_the_plan_file_without_importing_a_data_set(bfv_api):
    state = bfv_api.app.state.services
    model = state.models["digits-mlp-bfv"]
    keys = crypto_nn.client_for(model.plan.describe())
    key_id = bfv_api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    x = np.arange(64).reshape(1, 1, 8, 8) % (model.plan.pixel_max + 1)
    cts = [c for per_prime in keys.clients[0].encrypt_batch(x) for c in per_prime]
    slots = ProcessSlots(1, "test worker")

    async def go():
        out = await slots.run(
            worker.evaluate,
            str(model.plan_path),
            key_id,
            str(state.keys.ctx_path(key_id)),
            cts,
            2,
        )
        return out, await slots.run(worker.loaded_modules)

    try:
        outputs, modules = asyncio.run(go())
    finally:
        slots.shutdown()
    assert "nets.data" not in modules and "sklearn" not in modules
    primes = len(model.plan.params.plain_moduli)
    from crypto_nn.bfv.client import split

    got = keys.clients[0].decrypt_batch(split(outputs, primes), 1)
    int_model = quantized(model.checkpoint, CALIBRATION, 4)
    assert got.tolist() == int_model.forward(x).tolist()


def test_two_clients_of_a_key_less_plan_keep_their_own_job_quota(bfv_api):
    """digits-relu-bfv needs only the public parameters: every client's context holds the
    same parts. The client id in the context keeps their key ids — and quotas — apart."""
    desc = bfv_api.get("/v1/models/digits-relu-bfv").json()
    alice, bob = crypto_nn.client_for(desc), crypto_nn.client_for(desc)
    parts = [ctx_format.unpack(c.public_context())[1] for c in (alice, bob)]
    assert all(name.startswith("params.") for name in parts[0])  # no keys at all
    assert parts[0] == parts[1]  # nothing secret-dependent in the parts themselves
    ids = [
        bfv_api.post("/v1/keys", content=c.public_context()).json()["key_id"] for c in (alice, bob)
    ]
    assert ids[0] != ids[1]
    assert bfv_api.post("/v1/keys", content=alice.public_context()).json()["key_id"] == ids[0]
    jobs = bfv_api.app.state.services.jobs
    held = [jobs.new_dir()[0] for _ in range(jobs.max_active_per_key)]
    for job_id in held:  # alice holds her whole quota
        jobs.create(job_id, "digits-relu-bfv", ids[0], 1)
    try:
        cts = bob.clients[0].encrypt_batch(np.zeros((1, 64), np.int64))
        body = framing.pack([c for per_prime in cts for c in per_prime])
        url = "/v1/models/digits-relu-bfv/jobs"
        refused = bfv_api.post(url, params={"key_id": ids[0]}, content=body)
        assert refused.status_code == 503 and "per key" in refused.json()["detail"]
        accepted = bfv_api.post(url, params={"key_id": ids[1]}, content=body)
        assert accepted.status_code == 202, accepted.text
    finally:
        for job_id in held:
            jobs.fail(job_id, "test over")
