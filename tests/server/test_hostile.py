"""What a hostile client tried in the first round, each refused with a 4xx, nothing stored."""

import hashlib
import json
import os
import stat
import threading

import pytest

from crypto_nn.ckks.plan import CkksClientPlan
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import framing, seal_bytes
from nets import data
from server.keycheck import CHECK_VERSION
from tests.server.hostile import (
    context_mutations,
    drop_component,
    framing_mutations,
    uncompressed,
)

SINGLE = "/v1/models/digits-mlp-single"


def _problem(response, status, needle=""):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert needle in response.json()["detail"], response.json()


@pytest.fixture
def single_keys(api):
    from crypto_nn.ckks.client import CkksClient

    return CkksClient(CkksClientPlan.from_description(api.get(SINGLE).json()))


def _stored(tmp_path):
    return sorted((tmp_path / "state" / "keys").glob("*"))


# --- finding 1: keys that load but would crash a worker ----------------------------------
def test_keys_missing_components_or_of_the_wrong_kind_are_refused(api, tmp_path, single_keys):
    _, parts = ctx_format.unpack(single_keys.public_context())
    hostile = {
        "relin_keys missing a component": {
            **parts,
            "relin_keys": drop_component(parts["relin_keys"]),
        },
        "galois keys as relin_keys": {**parts, "relin_keys": parts["galois_keys"]},
        "galois_keys missing a component": {
            **parts,
            "galois_keys": drop_component(parts["galois_keys"]),
        },
        "relin_keys truncated": {**parts, "relin_keys": parts["relin_keys"][:-5000]},
    }
    for why, bad in hostile.items():
        response = api.post("/v1/keys", content=ctx_format.pack("ckks", bad))
        if response.status_code == 201:  # the batch plan needs no rotation keys: it may accept
            assert why.startswith("galois"), why
            assert "digits-mlp-single" in response.json()["refused"], response.json()
            assert "component" in response.json()["refused"]["digits-mlp-single"]
        else:
            _problem(response, 422)
    accepted = [p for p in _stored(tmp_path) if p.suffix == ".ctx"]
    assert len(accepted) <= 1  # at most the batch-only key above
    good = api.post("/v1/keys", content=single_keys.public_context())
    assert good.status_code == 201 and "digits-mlp-single" in good.json()["models"]
    # an uncompressed but whole key is still a key
    fine = {**parts, "relin_keys": uncompressed(parts["relin_keys"])}
    assert api.post("/v1/keys", content=ctx_format.pack("ckks", fine)).status_code == 201


def _plant_key(api, context: bytes) -> str:
    """A key on disk as if it had passed registration (what a checker bug would let in)."""
    key_id = hashlib.sha256(context).hexdigest()[:32]
    store = api.app.state.services.keys
    store.add(key_id, context, ["digits-mlp"], {}, CHECK_VERSION, lambda _: False)
    return key_id


def test_a_crashing_worker_fails_only_the_request_that_crashed_it(api, client_keys):
    keys = client_keys(api)
    _, parts = ctx_format.unpack(keys.public_context())
    poison = _plant_key(
        api, ctx_format.pack("ckks", {**parts, "relin_keys": drop_component(parts["relin_keys"])})
    )
    honest = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:4]))
    url = "/v1/models/digits-mlp/infer"
    # the worker loads keys through the same checks: the poison key is refused there too
    _problem(api.post(url, params={"key_id": poison}, content=body), 422, "component")
    # and a worker that dies anyway (a key the checks miss, simulated: this key id kills
    # its worker) fails its own request only; requests waiting for a worker never see it
    import server.worker as worker_module

    dead = "dead" + honest[4:]
    services = api.app.state.services
    services.keys.add(dead, keys.public_context(), ["digits-mlp"], {}, CHECK_VERSION, bool)
    api.app.state.services.gate.limit = api.app.state.services.uploads.per_client = 10
    results = {}

    def post(name, key_id):
        results[name] = api.post(url, params={"key_id": key_id}, content=body).status_code

    original = worker_module.evaluate
    worker_module.evaluate = crash_for_dead_keys
    try:
        threads = [threading.Thread(target=post, args=("hostile", dead))]
        threads += [threading.Thread(target=post, args=(f"honest{i}", honest)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        worker_module.evaluate = original
    assert results.pop("hostile") == 500
    assert set(results.values()) == {200} and len(results) == 4, results
    assert api.app.state.services.workers.crashes == 1


def crash_for_dead_keys(plan_path, key_id, *args):
    """Runs in the worker (imported by name there, where server.worker is unpatched)."""
    import server.worker

    if key_id.startswith("dead"):
        os.kill(os.getpid(), 9)
    return server.worker.evaluate(plan_path, key_id, *args)


# --- finding 4 and 10: malformed framing and part headers --------------------------------
def test_malformed_context_headers_are_4xx(api, client_keys, tmp_path):
    valid = client_keys(api).public_context()
    for why, body in context_mutations(valid).items():
        response = api.post("/v1/keys", content=body)
        assert 400 <= response.status_code < 500, (why, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), why
    assert not _stored(tmp_path)


def test_malformed_ciphertext_lists_are_4xx(api, client_keys):
    keys = client_keys(api)
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    cts = keys.encrypt_batch(data.load("digits", "test").images[:2])
    for route in ("infer", "jobs"):
        url = f"/v1/models/digits-mlp/{route}"
        for why, body in framing_mutations(cts).items():
            response = api.post(url, params={"key_id": key_id}, content=body)
            assert 400 <= response.status_code < 500, (
                route,
                why,
                response.status_code,
                response.text,
            )
    wrong_type = api.post(
        "/v1/models/digits-mlp/infer",
        params={"key_id": key_id},
        content=framing.pack(cts),
        headers={"Content-Type": "application/json"},
    )
    _problem(wrong_type, 415, "application/octet-stream")
    assert (
        api.post(
            "/v1/models/digits-mlp/infer", params={"key_id": key_id}, content=framing.pack(cts)
        ).status_code
        == 200
    )


# --- finding 5: a secret key riding along ------------------------------------------------
def test_a_secret_key_cannot_be_registered_or_stored(api, client_keys, tmp_path):
    keys = client_keys(api)
    _, parts = ctx_format.unpack(keys.public_context())
    secret = keys.save_secret()
    assert secret[:2] == seal_bytes.MAGIC
    smuggled = {
        "as a numbered part": ctx_format.pack("ckks", {**parts, "relin_keys.1": secret}),
        "after the relin keys": ctx_format.pack(
            "ckks", {**parts, "relin_keys": parts["relin_keys"] + secret}
        ),
        "as galois keys": ctx_format.pack("ckks", {**parts, "galois_keys": secret}),
    }
    for why, body in smuggled.items():
        response = api.post("/v1/keys", content=body)
        if why == "as galois keys":  # the batch plan needs only params + relin keys: served,
            assert response.status_code == 201, response.text  # and the part is dropped
            assert response.json()["dropped_parts"] == ["galois_keys"]
            assert "digits-mlp-single" in response.json()["refused"]
        else:
            assert response.status_code == 422, (why, response.text)
    for path in _stored(tmp_path):
        assert secret[16:80] not in path.read_bytes(), path
    for path in _stored(tmp_path):
        path.unlink()
    # extra header fields do not reach the disk either: the stored context is re-packed
    public = keys.public_context()
    header_end = public.index(b"\n", len(ctx_format.MAGIC))
    header = json.loads(public[len(ctx_format.MAGIC) : header_end])
    header["secret"] = "x" * 100
    padded = ctx_format.MAGIC + json.dumps(header).encode() + public[header_end:]
    registered = api.post("/v1/keys", content=padded)
    assert registered.status_code == 201
    (ctx_file,) = [p for p in _stored(tmp_path) if p.suffix == ".ctx"]
    assert b"secret" not in ctx_file.read_bytes()
    assert ctx_file.read_bytes() == public
    for path in _stored(tmp_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# --- finding 6 and 8: admission, quotas, eviction, expiry -------------------------------
def test_jobs_are_bounded_per_key_and_overall(new_api, tmp_path, client_keys, run_job):
    with new_api(tmp_path / "s", max_jobs=2, max_jobs_per_key=1) as api:
        keys = client_keys(api)
        key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
        body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:4]))
        url = "/v1/models/digits-mlp/jobs"
        api.app.state.services.jobs._active["f" * 32] = key_id  # one of this key's jobs is queued
        refused = api.post(url, params={"key_id": key_id}, content=body)
        _problem(refused, 503, "bound per key")
        assert refused.headers["retry-after"]
        api.app.state.services.jobs._active["e" * 32] = "0" * 32  # and one of another key's
        _problem(api.post(url, params={"key_id": key_id}, content=body), 503, "server's bound")
        api.app.state.services.jobs._active.clear()
        assert not [p for p in (tmp_path / "s" / "jobs").iterdir()]  # nothing was kept
        assert api.post(url, params={"key_id": key_id}, content=body).status_code == 202
        limits = api.get("/v1/limits").json()
        assert limits["limits"]["max_jobs_per_key"] == 1 and limits["usage"]["keys"]["keys"] == 1


def test_ended_jobs_expire_and_failed_inputs_are_deleted(new_api, tmp_path, client_keys, run_job):
    import time

    with new_api(tmp_path / "s", job_ttl_s=60) as api:
        keys = client_keys(api)
        status = run_job(api, keys, data.load("digits", "test").images[:4])
        assert status["state"] == "done"
        job_dir = tmp_path / "s" / "jobs" / status["id"]
        assert not (job_dir / "input.bin").exists() and (job_dir / "result.bin").exists()
        jobs = api.app.state.services.jobs
        assert jobs.sweep(now=time.time()) == 0
        assert jobs.sweep(now=time.time() + 120) == 1 and not job_dir.exists()
        assert api.get(f"/v1/jobs/{status['id']}").status_code == 404


def test_the_key_store_evicts_the_least_recently_used(new_api, tmp_path, client_keys):
    with new_api(tmp_path / "s", max_keys=2) as api:
        first, second, third = (client_keys(api) for _ in range(3))
        ids = [
            api.post("/v1/keys", content=k.public_context()).json()["key_id"]
            for k in (first, second)
        ]
        body = framing.pack(first.encrypt_batch(data.load("digits", "test").images[:2]))
        url = "/v1/models/digits-mlp/infer"
        assert api.post(url, params={"key_id": ids[0]}, content=body).status_code == 200  # used
        registered = api.post("/v1/keys", content=third.public_context()).json()
        assert registered["evicted"] == 1
        assert api.post(url, params={"key_id": ids[0]}, content=body).status_code == 200
        _problem(
            api.post(url, params={"key_id": ids[1]}, content=body), 404, "evicted as least recently"
        )
        assert len([p for p in (tmp_path / "s" / "keys").glob("*.ctx")]) == 2


# --- finding 2: a 500 must not keep the request's body alive -----------------------------
def test_internal_errors_answer_500_and_keep_nothing(api, client_keys, monkeypatch):
    import psutil

    import server.routers.infer as infer_router

    def unexpected(*args):  # a bug anywhere below the route, holding the body
        raise RuntimeError("a bug")

    keys = client_keys(api)
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    monkeypatch.setattr(infer_router, "payloads_of", unexpected)
    big = framing.pack([seal_bytes.MAGIC + b"x" * (40 << 20)])
    process = psutil.Process()
    before = process.memory_info().rss
    for _ in range(10):
        response = api.post("/v1/models/digits-mlp/infer", params={"key_id": key_id}, content=big)
        _problem(response, 500, "internal error")
    grown_mb = (process.memory_info().rss - before) / 2**20
    assert grown_mb < 80, f"the API kept {grown_mb:.0f} MB after 10 failed 40 MB requests"
