"""Stopping a live server leaves no process behind: SIGTERM and SIGINT stop the workers
(and mark running jobs failed on disk); after SIGKILL the workers notice and exit."""

import json
import os
import shutil
import signal
import time

import httpx
import psutil
import pytest

from crypto_nn.ckks.client import CkksClient
from crypto_nn.ckks.plan import CkksClientPlan
from crypto_nn.wire import framing
from nets import data
from server.local import server_process


@pytest.fixture
def models(tmp_path, square_mlp_checkpoint):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(square_mlp_checkpoint, folder / "digits-mlp.pt")
    return folder


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _start_job(url: str) -> str:
    """Register keys and submit a job; → its id once a worker runs it."""
    plan = CkksClientPlan.from_description(httpx.get(f"{url}/v1/models/digits-mlp").json())
    keys = CkksClient(plan)
    key_id = httpx.post(f"{url}/v1/keys", content=keys.public_context(), timeout=60).json()[
        "key_id"
    ]
    body = framing.pack(keys.encrypt_batch(data.load("digits", "test").images[:64]))
    job_id = httpx.post(
        f"{url}/v1/models/digits-mlp/jobs", params={"key_id": key_id}, content=body, timeout=60
    ).json()["job_id"]
    for _ in range(200):
        if httpx.get(f"{url}/v1/jobs/{job_id}").json()["state"] == "running":
            return job_id
        time.sleep(0.05)
    raise AssertionError("the job never started")


def _assert_all_exit(processes: list[psutil.Process], within_s: float) -> None:
    _, alive = psutil.wait_procs(processes, timeout=within_s)
    assert not alive, [(p.pid, p.cmdline()[:3]) for p in alive]


# SIGTERM in the middle of a job goes through every shutdown step (jobs marked failed,
# workers stopped); the other three cases (~25 s each: a real server) run with -m slow
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("sig", "mid_job"),
    [
        pytest.param(signal.SIGTERM, True, id="SIGTERM-mid-job"),
        pytest.param(signal.SIGTERM, False, id="SIGTERM-idle", marks=SLOW),
        pytest.param(signal.SIGINT, True, id="SIGINT-mid-job", marks=SLOW),
        pytest.param(signal.SIGINT, False, id="SIGINT-idle", marks=SLOW),
    ],
)
def test_a_signal_stops_the_server_and_every_worker(models, tmp_path, sig, mid_job):
    state = tmp_path / "state"
    with server_process(models, state) as (url, proc):
        job_id = _start_job(url) if mid_job else None
        if not mid_job:  # start the workers: one registration and nothing else
            plan = CkksClientPlan.from_description(httpx.get(f"{url}/v1/models/digits-mlp").json())
            httpx.post(f"{url}/v1/keys", content=CkksClient(plan).public_context(), timeout=60)
        children = _descendants(proc.pid)
        assert children, "the server should have started worker processes"
        proc.send_signal(sig)
        proc.wait(timeout=30)
        _assert_all_exit(children, within_s=10)
    if job_id is not None:
        status = json.loads((state / "jobs" / job_id / "status.json").read_text())
        assert status["state"] in ("failed", "done"), status
        if status["state"] == "failed":
            assert "stopped" in status["error"]
            assert not (state / "jobs" / job_id / "input.bin").exists()


def test_workers_exit_by_themselves_when_the_server_is_killed(models, tmp_path):
    with server_process(models, tmp_path / "state") as (url, proc):
        _start_job(url)
        children = _descendants(proc.pid)
        assert children
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _assert_all_exit(children, within_s=10)
