"""The second hostile-client round over HTTP: secrets inside compressed parts,
strict names and query parameters, bodies freed when a request fails, and evaluation
workers under a memory limit that fail alone."""

import asyncio
import gc
import tracemalloc

import pytest

from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import framing
from nets import data
from server import memory, pool, worker
from server.pool import ProcessSlots
from tests.server.hostile import declaring, inside, seal_frame

INFER = "/v1/models/digits-mlp/infer"


def _problem(response, status, needle=""):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert needle in response.json()["detail"], response.json()


def test_a_secret_key_inside_a_compressed_part_is_refused_and_not_stored(
    api, client_keys, tmp_path
):
    keys = client_keys(api)
    _, parts = ctx_format.unpack(keys.public_context())
    secret = keys.save_secret()
    for part in parts:
        smuggled = ctx_format.pack("ckks", {**parts, part: inside(parts[part], secret)})
        _problem(api.post("/v1/keys", content=smuggled), 422)
    assert not list((tmp_path / "state" / "keys").glob("*"))
    registered = api.post("/v1/keys", content=keys.public_context())
    assert registered.status_code == 201
    (stored,) = (tmp_path / "state" / "keys").glob("*.ctx")
    assert secret[16:80] not in stored.read_bytes()


def test_part_names_and_query_parameters_are_parsed_strictly(api, client_keys):
    keys = client_keys(api)
    _, parts = ctx_format.unpack(keys.public_context())
    for name in ("params.\u0663", "params.01", "params. 1", "params.+1", "params.1 ", "Params"):
        hostile = ctx_format.pack("ckks", {**parts, name: parts["params"]})
        _problem(api.post("/v1/keys", content=hostile), 422, "is not one of")
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:2]))
    for segment in (" 0", "0 ", "+0", "00", "-0", "\u0660", "0x0", "1e0"):
        response = api.post(INFER, params={"key_id": key_id, "segment": segment}, content=body)
        _problem(response, 422, "segment")
    for bad_id in (key_id + "\n", " " + key_id, key_id.upper()):
        _problem(api.post(INFER, params={"key_id": bad_id}, content=body), 422, "key_id")
    assert api.post(INFER, params={"key_id": key_id, "segment": "0"}, content=body).is_success


def test_a_failed_request_frees_its_body_without_a_garbage_collection(api, client_keys):
    keys = client_keys(api)
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    one = keys.encrypt_batch(data.load("digits", "test").images[:2])
    too_many = framing.pack(one * 5)  # ~40 MB, the wrong count: 422 after it is read
    assert len(too_many) > 20 << 20
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            _problem(api.post(INFER, params={"key_id": key_id}, content=too_many), 422)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held - start < 8 << 20, f"{(held - start) >> 20} MB still held after 3 failures"


def test_an_evaluation_past_its_memory_limit_fails_alone(new_api, tmp_path, client_keys):
    with new_api(tmp_path / "s", workers=1, worker_memory_mb=1) as api:
        limits = api.get("/v1/limits").json()["limits"]
        assert limits["worker_memory_bytes"]["digits-mlp"] == memory.MiB
        keys = client_keys(api)
        key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
        body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:2]))
        for _ in range(2):  # each time: 507, and a fresh worker for the next request
            _problem(api.post(INFER, params={"key_id": key_id}, content=body), 507, "memory")
        health = api.get("/healthz").json()
        assert health["worker_out_of_memory"] == 2 and health["worker_crashes"] == 0
    with new_api(tmp_path / "s2") as api:  # the budget sized from the plan: served
        limits = api.get("/v1/limits").json()["limits"]
        assert limits["worker_memory_bytes"]["digits-mlp"] == memory.FLOOR
        keys = client_keys(api)
        key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
        body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:2]))
        assert api.post(INFER, params={"key_id": key_id}, content=body).status_code == 200


def test_the_other_worker_keeps_serving_while_one_runs_out_of_memory(api, client_keys):
    """Two slots: a call over its budget fails with WorkerOutOfMemory and its worker is
    replaced; the call beside it, and the next one on the fresh worker, are served."""
    keys = client_keys(api)
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    model = api.app.state.services.models["digits-mlp"]
    ctx_path = api.app.state.services.keys.ctx_path(key_id)
    payloads = keys.encrypt_batch(data.load("digits", "test").images[:4])
    args = (worker.evaluate, str(model.plan_path), key_id, str(ctx_path), payloads, 4, None, 0)
    budget = memory.budget_for(model.plan)

    threads: list[int] = []

    async def scenario():
        slots = ProcessSlots(2, "test worker", warm=worker.warm_up)
        try:
            starved, served = await asyncio.gather(
                slots.run(*args, memory_budget=1),
                slots.run(*args, memory_budget=budget),
                return_exceptions=True,
            )
            again = await asyncio.gather(
                *(slots.run(*args, memory_budget=budget) for _ in range(2))
            )
            threads.extend(await asyncio.gather(*(slots.run(_numba_threads) for _ in range(2))))
            return starved, served, again, slots.out_of_memory, slots.crashes
        finally:
            slots.shutdown()

    starved, served, again, out_of_memory, crashes = asyncio.run(scenario())
    assert threads == [max(1, pool.cores() // 2)] * 2  # the workers share the cores
    assert isinstance(starved, memory.WorkerOutOfMemory), starved
    assert isinstance(served, list) and len(served) == len(again[0])
    assert (out_of_memory, crashes) == (1, 0)
    decoded = [keys.decrypt_batch(out, 4) for out in (served, *again)]
    for logits in decoded[1:]:
        assert logits.argmax(1).tolist() == decoded[0].argmax(1).tolist()


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


@pytest.mark.parametrize("declared", [1 << 31, 1 << 50])
def test_a_small_ciphertext_declaring_gigabytes_never_grows_the_worker(api, client_keys, declared):

    import psutil

    keys = client_keys(api)
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    cts = keys.encrypt_batch(data.load("digits", "test").images[:2])
    assert api.post(INFER, params={"key_id": key_id}, content=framing.pack(cts)).is_success
    (pid,) = api.app.state.services.workers.pids()
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    before = psutil.Process(pid).memory_info().rss
    bomb = seal_frame(cts[0], declaring(declared))
    response = api.post(INFER, params={"key_id": key_id}, content=framing.pack([bomb, *cts[1:]]))
    _problem(response, 422, "declares")
    with open(f"/proc/{pid}/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    assert peak - before < 64 << 20
