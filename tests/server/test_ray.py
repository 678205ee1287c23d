"""``--backend ray``: a batch job runs as a Ray task on a local Ray instance."""

import os

import numpy as np
import torch

from crypto_nn.wire import framing
from nets import checkpoint, data
from server.ray_backend import RayBackend


def test_batch_job_runs_as_a_ray_task(new_api, client_keys, run_job, models_dir, tmp_path):
    images = data.load("digits", "test").images[:16]
    with new_api(tmp_path / "state", backend="ray", ray_num_cpus=1) as api:
        assert isinstance(api.app.state.services.job_backend, RayBackend)
        keys = client_keys(api)
        status = run_job(api, keys, images)
        job_id = status["id"]
        assert status["state"] == "done", status
        result = api.get(f"/v1/jobs/{job_id}/result").content
        ran_on = status["ran_on"]
        assert ran_on["backend"] == "ray" and ran_on["pid"] != os.getpid() and ran_on["node_id"]
    logits = keys.decrypt_batch(framing.unpack(result)[1], len(images))
    net, _ = checkpoint.load(models_dir / "digits-mlp.pt")
    plain = net(torch.from_numpy(images)).detach().numpy()
    assert (logits.argmax(1) == plain.argmax(1)).all() and np.abs(logits - plain).max() < 1e-2


def test_ray_progress_is_drained_into_the_job_file(tmp_path):
    """The task's reports arrive through a queue; the job's progress file gets the latest."""
    from server.ray_backend import drain_progress

    class Reports:
        def __init__(self, values):
            self.values = list(values)

        def empty(self):
            return not self.values

        def get_nowait(self):
            return self.values.pop(0)

    path = tmp_path / "progress"
    drain_progress(Reports([0.25, 0.5]), path)
    assert path.read_text() == "0.5000"
    drain_progress(Reports([]), path)  # nothing new: the last value stays
    assert path.read_text() == "0.5000"
