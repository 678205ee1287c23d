"""``--backend ray``: a batch job runs as a Ray task on a local Ray instance."""

import os
import time

import numpy as np
import torch

from crypto_nn import framing
from nets import checkpoint, data


def test_batch_job_runs_as_a_ray_task(new_api, client_keys, models_dir, tmp_path):
    images = data.load("digits", "test").images[:16]
    with new_api(tmp_path / "state", backend="ray", ray_num_cpus=1) as api:
        assert api.app.state.ray is not None
        keys = client_keys(api)
        key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
        submitted = api.post(
            "/v1/models/digits-mlp/jobs",
            params={"key_id": key_id},
            content=framing.pack(keys.encrypt_batch(images)),
        )
        assert submitted.status_code == 202
        job_id = submitted.json()["job_id"]
        for _ in range(600):
            status = api.get(f"/v1/jobs/{job_id}").json()
            if status["state"] in ("done", "failed"):
                break
            time.sleep(0.25)
        assert status["state"] == "done", status
        result = api.get(f"/v1/jobs/{job_id}/result").content
        ran_on = status["ran_on"]
        assert ran_on["backend"] == "ray" and ran_on["pid"] != os.getpid() and ran_on["node_id"]
    logits = keys.decrypt_batch(framing.unpack(result)[1], len(images))
    net, _ = checkpoint.load(models_dir / "digits-mlp.pt")
    plain = net(torch.from_numpy(images)).detach().numpy()
    assert (logits.argmax(1) == plain.argmax(1)).all() and np.abs(logits - plain).max() < 1e-2
