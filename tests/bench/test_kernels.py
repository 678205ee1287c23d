"""``python -m bench kernels``: the integer kernels' throughput table, identical outputs."""

import json

import pytest

from tests.helpers import run_cli


def run(module, *args):
    return run_cli(module, *args)


def test_bench_kernels_quick(tmp_path):
    js = tmp_path / "k.json"
    proc = run(
        "bench",
        "kernels",
        "--model",
        "cryptonets",
        "--data",
        "digits",
        "--batch",
        "1",
        "--batch",
        "64",
        "--quick",
        "--json",
        str(js),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(js.read_text())
    for bs in ("1", "64"):
        row = result["batches"][bs]
        assert row["identical_to_reference"] is True
        for key in ("numba_images_per_s", "numpy_images_per_s", "torch_images_per_s"):
            assert row[key] > 0
        assert row["numba_over_numpy"] == pytest.approx(
            row["numba_images_per_s"] / row["numpy_images_per_s"]
        )
    assert js.with_suffix(".md").read_text().startswith("IntModel kernels")
