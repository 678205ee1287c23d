"""A real uvicorn on a loopback port, queried by the real client command line."""

import json
import shutil
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np

from nets import data
from server.local import local_server


def test_server_and_client_over_loopback(tmp_path, square_mlp_checkpoint):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(square_mlp_checkpoint, models / "digits-mlp.pt")
    with local_server(models, tmp_path / "state") as url:
        out = tmp_path / "result.json"
        client = subprocess.run(
            [
                sys.executable,
                "-m",
                "client",
                "batch",
                "--model",
                "digits-mlp",
                "--data",
                "digits",
                "--n",
                "100",
                "--server",
                url,
                "--json",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert client.returncode == 0, client.stderr
        result = json.loads(out.read_text())
        assert (
            result["n_images"] == 100 and result["encrypted_accuracy"] > 0.5
        )  # a small, weak model
        as_job = subprocess.run(
            [
                sys.executable,
                "-m",
                "client",
                "batch",
                "--model",
                "digits-mlp",
                "--data",
                "digits",
                "--n",
                "20",
                "--server",
                url,
                "--job",
                "--json",
                str(tmp_path / "job.json"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert as_job.returncode == 0, as_job.stderr
        assert "job " in as_job.stdout
        job_preds = json.loads((tmp_path / "job.json").read_text())["predictions"]
        assert job_preds == result["predictions"][:20]
        key = tmp_path / "keys" / "digits.key"
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "client",
                "keygen",
                "--model",
                "digits-mlp",
                "--server",
                url,
                "--out",
                str(key),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stderr
        assert key.stat().st_mode & 0o777 == 0o600
        image = data.load("digits", "test").images[0]
        np.save(tmp_path / "a.npy", image[0])
        plt.imsave(tmp_path / "b.png", image[0], cmap="gray", vmin=0, vmax=1)
        inferred = subprocess.run(
            [
                sys.executable,
                "-m",
                "client",
                "infer",
                str(tmp_path / "a.npy"),
                str(tmp_path / "b.png"),
                "--keys",
                str(key),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert inferred.returncode == 0, inferred.stderr
        assert "a.npy: " in inferred.stdout and "b.png: " in inferred.stdout
        wrong = subprocess.run(
            [sys.executable, "-m", "client", "infer", str(tmp_path / "c.npy"), "--keys", str(key)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrong.returncode == 1 and "c.npy not found" in wrong.stderr
        down = subprocess.run(
            [sys.executable, "-m", "client", "models", "--server", "http://127.0.0.1:9"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 1 and "cannot reach" in down.stderr
        assert "Traceback" not in down.stderr
