"""The service through FastAPI's TestClient: contract, refusals, persistence, auth."""

import json

import numpy as np
import tenseal as ts
import torch

from crypto_nn import roles
from crypto_nn.ckks.client import CkksClient
from crypto_nn.wire import framing
from nets import checkpoint, data
from tests.ckks_bounds import single_error_bound


def _problem(response, status, needle):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and needle in body["detail"], body


def test_models_and_health(api):
    health = api.get("/healthz")
    assert health.json()["models"] == ["digits-mlp", "digits-mlp-bfv", "digits-mlp-single"]
    assert "x-process-time" in health.headers
    listed = api.get("/v1/models").json()["models"]
    assert [(m["name"], m["packing"]) for m in listed] == [
        ("digits-mlp", "batch"),
        ("digits-mlp-single", "single"),
        ("digits-mlp-bfv", "batch"),
    ]
    assert listed[0]["scheme"] == "ckks" and listed[0]["rotations"] == []
    assert listed[2]["scheme"] == "bfv" and listed[2]["keys"][0]["plain_modulus"] > 1
    assert listed[1]["rotations"] and listed[1]["input"]["layouts"]
    _problem(api.get("/v1/models/vgg"), 404, "unknown model 'vgg'")


def test_encrypted_round_trip_matches_plain(api, models_dir, client_keys):
    keys = client_keys(api)
    key = api.post("/v1/keys", content=keys.public_context())
    assert key.status_code == 201
    images = data.load("digits", "test").images[:50]
    body = framing.pack(keys.encrypt_batch(images))
    response = api.post(
        "/v1/models/digits-mlp/infer", params={"key_id": key.json()["key_id"]}, content=body
    )
    assert response.status_code == 200, response.text
    logits = keys.decrypt_batch(framing.unpack(response.content)[1], len(images))
    net, _ = checkpoint.load(models_dir / "digits-mlp.pt")
    plain = net(torch.from_numpy(images)).detach().numpy()
    assert (logits.argmax(1) == plain.argmax(1)).all()
    assert np.abs(logits - plain).max() < 1e-3


def test_single_packing_round_trip_and_missing_rotation_keys(api, models_dir):
    import dataclasses

    from crypto_nn.ckks.plan import CkksClientPlan

    plan = CkksClientPlan.from_description(api.get("/v1/models/digits-mlp-single").json())
    short = CkksClient(dataclasses.replace(plan, rotations=plan.rotations[1:]))
    registered = api.post("/v1/keys", content=short.public_context())
    # the batch plan shares the single plan's parameters and needs no rotations: it accepts
    # the key; the single plan refuses it at registration, with the reason kept
    missing = f"lacks rotation keys for steps [{plan.rotations[0]}]"
    assert registered.json()["models"] == ["digits-mlp"]
    assert missing in registered.json()["refused"]["digits-mlp-single"]
    _problem(
        api.post(
            "/v1/models/digits-mlp-single/infer",
            params={"key_id": registered.json()["key_id"]},
            content=b"x",
        ),
        422,
        missing,
    )
    keys = CkksClient(plan)
    key = api.post("/v1/keys", content=keys.public_context())
    assert key.status_code == 201 and key.json()["models"] == ["digits-mlp", "digits-mlp-single"]
    images = data.load("digits", "test").images[:3]
    net, _ = checkpoint.load(models_dir / "digits-mlp.pt")
    plain = net(torch.from_numpy(images)).detach().numpy()
    served = roles.load(models_dir.parent / f"{models_dir.name}-plans" / "digits-mlp-single.plan")
    url = "/v1/models/digits-mlp-single/infer"
    for image, expected in zip(images, plain, strict=True):
        body = framing.pack(keys.encrypt_single(image))
        response = api.post(url, params={"key_id": key.json()["key_id"]}, content=body)
        assert response.status_code == 200, response.text
        logits = keys.decrypt_single(framing.unpack(response.content)[1])
        bound = single_error_bound(served, image[None])  # the scheme's noise, derived
        assert bound < 0.05 * np.abs(expected).max()  # tight enough to mean something
        assert logits.argmax() == expected.argmax() and np.abs(logits - expected).max() <= bound
    _problem(
        api.post(url, params={"key_id": key.json()["key_id"]}, content=framing.pack([body] * 2)),
        422,
        "at most 1",
    )


def test_refused_contexts_store_nothing(api, tmp_path, client_keys):
    private = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    _problem(
        api.post("/v1/keys", content=private.serialize(save_secret_key=True)),
        422,
        "not a cryptorobust context",
    )
    _problem(api.post("/v1/keys", content=b"\x00" * 100), 422, "not a cryptorobust context")
    _problem(api.post("/v1/keys", content=b""), 400, "empty body")
    keys = client_keys(api)
    from crypto_nn.wire import context as ctx_format

    _, parts = ctx_format.unpack(keys.public_context())
    _problem(
        api.post("/v1/keys", content=ctx_format.pack("ckks", {"params": parts["params"]})),
        422,
        "needs relinearisation keys",
    )
    assert not list((tmp_path / "state").glob("keys/*.ctx"))


def test_mismatched_parameters_are_refused(api, models_dir):
    from crypto_nn.ckks import compile as plan_mod

    net, _ = checkpoint.load(models_dir / "digits-mlp.pt")
    other = plan_mod.compile(net, data.load("digits", "train").images[:100], n=16384)
    _problem(
        api.post("/v1/keys", content=CkksClient(other).public_context()),
        422,
        "match no served plan",
    )


def test_bad_inference_requests(api, client_keys):
    keys = client_keys(api)
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    url = "/v1/models/digits-mlp/infer"
    _problem(api.post(url, params={"key_id": "0" * 32}, content=b"x"), 404, "unknown key_id")
    _problem(api.post(url, params={"key_id": "xyz"}, content=b"x"), 422, "key_id")
    _problem(api.post(url, params={"key_id": key_id}, content=b"junk"), 422, "CRCTS")
    cts = keys.encrypt_batch(data.load("digits", "test").images[:3])
    _problem(
        api.post(url, params={"key_id": key_id}, content=framing.pack(cts[:10])),
        422,
        "10 ciphertexts; model 'digits-mlp' takes 64",
    )
    truncated = framing.pack(cts)[:-100]
    _problem(api.post(url, params={"key_id": key_id}, content=truncated), 422, "declares")
    flipped = [cts[0][:40] + bytes([cts[0][40] ^ 0xFF]) + cts[0][41:]] + cts[1:]
    response = api.post(url, params={"key_id": key_id}, content=framing.pack(flipped))
    assert response.status_code in (200, 422)  # SEAL may or may not notice; never a 500
    assert api.get("/healthz").status_code == 200


def test_body_limits_and_busy(models_dir, tmp_path, new_api, client_keys):
    with new_api(tmp_path / "s", max_infer_bytes=1000, max_queued=1) as api:
        keys = client_keys(api)
        key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
        url = "/v1/models/digits-mlp/infer"
        _problem(
            api.post(url, params={"key_id": key_id}, content=b"x" * 5000), 413, "limit here is 1000"
        )
        uploads = api.app.state.services.uploads
        uploads.active = uploads.limit  # every upload slot taken
        busy = api.post(url, params={"key_id": key_id}, content=b"x")
        _problem(busy, 503, "uploads in progress")
        assert busy.headers["retry-after"] == "2"
        api.app.state.services.uploads.active = 0
    with new_api(tmp_path / "u", max_queued=1) as api:
        keys = client_keys(api)
        key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
        body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:2]))
        api.app.state.services.gate.active = 1  # one evaluation already in flight
        busy = api.post("/v1/models/digits-mlp/infer", params={"key_id": key_id}, content=body)
        _problem(busy, 503, "evaluations in flight")  # read whole, then refused a slot
        assert busy.headers["retry-after"] == "5"
        api.app.state.services.gate.active = 0
    with new_api(tmp_path / "t", max_key_bytes=1000) as api:
        _problem(api.post("/v1/keys", content=b"x" * 5000), 413, "limit here is 1000")


def test_keys_survive_a_restart(models_dir, tmp_path, new_api, client_keys):
    state = tmp_path / "state"
    with new_api(state) as api:
        keys = client_keys(api)
        key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    with new_api(state) as api:
        images = data.load("digits", "test").images[:5]
        response = api.post(
            "/v1/models/digits-mlp/infer",
            params={"key_id": key_id},
            content=framing.pack(keys.encrypt_batch(images)),
        )
        assert response.status_code == 200
        assert json.loads((state / "keys" / f"{key_id}.json").read_text())["models"] == [
            "digits-mlp"
        ]


def test_bearer_token(models_dir, tmp_path, new_api, client_keys):
    with new_api(tmp_path / "s", token="s3cret") as api:
        _problem(api.get("/v1/models"), 401, "Bearer")
        assert api.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert api.get("/healthz").status_code == 200
        schemes = api.get("/openapi.json").json()["components"]["securitySchemes"]
        assert schemes["HTTPBearer"]["scheme"] == "bearer"


def test_jobs_run_in_the_background_and_survive_a_restart(new_api, client_keys, run_job, tmp_path):
    state = tmp_path / "state"
    images = data.load("digits", "test").images[:8]
    with new_api(state) as api:
        keys = client_keys(api)
        status = run_job(api, keys, images)
        job_id = status["id"]
        assert status["state"] == "done" and status["progress"] == 1.0, status
        first = api.get(f"/v1/jobs/{job_id}/result").content
        _problem(api.get(f"/v1/jobs/{'0' * 32}"), 404, "unknown job")
    with new_api(state) as api:  # a restarted server still has the finished result
        again = api.get(f"/v1/jobs/{job_id}/result")
        assert again.status_code == 200 and again.content == first
    logits = keys.decrypt_batch(framing.unpack(first)[1], len(images))
    assert logits.shape == (8, 10)


def test_interrupted_jobs_are_marked_failed_on_restart(new_api, tmp_path):
    from server.jobs import JobStore

    store = JobStore(tmp_path / "state", max_active=4, max_active_per_key=2, ttl_s=3600)
    job_id, input_path = store.new_dir()
    input_path.write_bytes(b"x")
    store.create(job_id, "digits-mlp", "0" * 32, 64)
    store.update(job_id, state="running")
    with new_api(tmp_path / "state") as api:
        status = api.get(f"/v1/jobs/{job_id}").json()
        assert status["state"] == "failed" and "restarted" in status["error"]
        _problem(api.get(f"/v1/jobs/{job_id}/result"), 409, "failed: the server restarted")
    assert not input_path.exists()  # a failed job's input is not kept


def test_a_worker_killed_between_requests_is_replaced_unnoticed(api, client_keys):
    import os
    import signal
    import time as _time

    keys = client_keys(api)
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:4]))
    url = "/v1/models/digits-mlp/infer"
    assert api.post(url, params={"key_id": key_id}, content=body).status_code == 200
    (pid,) = api.app.state.services.workers.pids()
    os.kill(pid, signal.SIGKILL)
    _time.sleep(0.5)
    assert api.post(url, params={"key_id": key_id}, content=body).status_code == 200
    assert api.app.state.services.workers.pids() != [pid]


def test_workers_start_and_load_their_kernels_at_start_up(new_api, tmp_path):
    import os
    import time

    import pytest

    with new_api(tmp_path / "state", warm_workers=True) as api:
        deadline = time.monotonic() + 120
        while not api.app.state.services.workers.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        (pid,) = api.app.state.services.workers.pids()  # spawned before any request
        while api.app.state.services.tasks and time.monotonic() < deadline:
            time.sleep(0.1)  # the warm-up task finished: imports and kernels loaded
        assert not api.app.state.services.tasks and api.get("/healthz").status_code == 200
    with pytest.raises(ProcessLookupError):  # stopped with the app
        os.kill(pid, 0)


def test_the_browser_page_and_its_assets_are_served_and_nothing_else(api):
    page = api.get("/")
    assert page.status_code == 200 and "<title>" in page.text
    assert "script-src 'self' 'wasm-unsafe-eval'" in page.headers["content-security-policy"]
    script = api.get("/static/worker.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    outside = (
        "/static/../routers/web.py",
        "/static/%2e%2e/app.py",
        "/static/nope.js",
        "/vendor/node-seal/package.json",
        "/vendor/node-seal/../../package.json",
    )
    for path in outside:
        assert api.get(path).status_code == 404, path
