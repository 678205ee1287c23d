"""``python -m integer_nn`` as a user runs it."""

import json

import pytest

from tests.helpers import run_cli


def run(module, *args):
    return run_cli(module, *args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "cn.pt"
    proc = run(
        "nets",
        "train",
        "--model",
        "cryptonets",
        "--arg",
        "act=relu",
        "--data",
        "digits",
        "--epochs",
        "10",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_quantize_prints_and_writes_json(checkpoint, tmp_path):
    out, js = tmp_path / "m.int.npz", tmp_path / "q.json"
    proc = run(
        "integer_nn",
        "quantize",
        str(checkpoint),
        "-o",
        str(out),
        "--json",
        str(js),
        "--calibration",
        "500",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(js.read_text())
    assert result["n_test"] == 360
    assert abs(result["float_accuracy"] - result["int_accuracy"]) <= 0.02
    assert [row["name"] for row in result["layers"]][:2] == ["0:conv2d", "1:table"]
    assert all(row["accumulator_bits"] >= row["observed_bits"] for row in result["layers"])
    assert "integer accuracy" in proc.stdout
    described = run("integer_nn", "describe", str(out))
    assert described.returncode == 0 and "conv2d 1→5" in described.stdout


def test_quantize_errors_are_one_line(checkpoint, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(checkpoint.read_bytes()[:500])
    for args, needle in [
        ([str(bad), "-o", str(tmp_path / "x.npz")], "truncated or corrupt"),
        ([str(checkpoint), "-o", str(tmp_path / "x.npz"), "--weight-bits", "1"], "weight_bits=1"),
        ([str(checkpoint), "-o", str(tmp_path / "x.npz"), "--square", "cube"], "square='cube'"),
    ]:
        proc = run("integer_nn", "quantize", *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_qat_writes_the_exact_model_and_reports_float_ptq_and_qat(checkpoint, tmp_path):
    out, js = tmp_path / "q.int.npz", tmp_path / "q.json"
    proc = run(
        "integer_nn",
        "qat",
        str(checkpoint),
        "--bits",
        "3",
        "--epochs",
        "2",
        "--calibration",
        "300",
        "--device",
        "cpu",
        "-o",
        str(out),
        "--json",
        str(js),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(js.read_text())
    for key in ("float_accuracy", "ptq_accuracy", "qat_accuracy"):
        assert 0.5 < result[key] <= 1.0, (key, result[key])
    assert result["qat_accuracy"] >= result["ptq_accuracy"] - 0.01
    assert result["weight_bits"] == result["act_bits"] == 3 and result["input_bits"] == 3
    assert len(result["fine_tuning"]["history"]) == 2 and result["run"]["seed"] == 0
    assert "quantisation-aware integer accuracy" in proc.stdout
    from integer_nn import io

    model = io.load(out)  # the file is the model whose accuracy was reported
    from nets import data

    test = data.load("digits", "test")
    assert (model.predict(test.images) == test.labels).mean() == result["qat_accuracy"]
    assert model.meta["quantization"] == "qat" and model.meta["weight_bits"] == 3


def test_qat_errors_are_one_line(checkpoint, tmp_path):
    out = str(tmp_path / "x.npz")
    for args, needle in [
        (["--acc-bits", "4"], "acc_bits=4"),
        (["--bits", "20"], "weight_bits=20"),
        (["--epochs", "0"], "epochs must be ≥ 1"),
    ]:
        proc = run("integer_nn", "qat", str(checkpoint), "-o", out, "--calibration", "50", *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_quantize_reports_qat_beside_post_training(checkpoint, tmp_path):
    js = tmp_path / "q.json"
    args = ["--weight-bits", "3", "--act-bits", "3", "--qat-epochs", "1", "--json", str(js)]
    proc = run("integer_nn", "quantize", str(checkpoint), "-o", str(tmp_path / "m.npz"), *args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(js.read_text())
    assert {"float_accuracy", "ptq_accuracy", "qat_accuracy"} <= set(result)
    assert "QAT integer accuracy" in proc.stdout
