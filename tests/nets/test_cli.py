"""The command line as a user meets it: exit codes, output, one-line errors (in process; a
real subprocess where the environment matters)."""

import json
import subprocess
import sys

import pytest

from tests.helpers import run_cli


def run(*args, env=None):
    """In process (tests.helpers.run_cli); a real subprocess where the environment matters."""
    if env is None:
        return run_cli("nets", *args)
    return subprocess.run(
        [sys.executable, "-m", "nets", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    proc = run(
        "train",
        "--model",
        "mlp",
        "--arg",
        "hidden=32",
        "--data",
        "digits",
        "--epochs",
        "8",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--seed",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_prints_table_and_writes_checkpoint(trained):
    out, proc = trained
    assert out.is_file()
    assert "test accuracy" in proc.stdout and "mlp" in proc.stdout
    assert "epoch 8/8" in proc.stderr


def test_eval_reports_accuracy_and_json(trained, tmp_path):
    out, _ = trained
    js = tmp_path / "eval.json"
    proc = run("eval", str(out), "--json", str(js))
    assert proc.returncode == 0, proc.stderr
    record = json.loads(js.read_text())
    assert record["n"] == 360 and record["accuracy"] > 0.85
    assert record["run"]["versions"]["torch"]


def _assert_one_line_error(proc, *needles):
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_eval_truncated_checkpoint(trained, tmp_path):
    out, _ = trained
    bad = tmp_path / "bad.pt"
    bad.write_bytes(out.read_bytes()[:1000])
    _assert_one_line_error(run("eval", str(bad)), "truncated or corrupt", "bad.pt")


def test_eval_on_missing_dataset(trained, tmp_path):
    out, _ = trained
    proc = run("eval", str(out), "--data", "mnist", "--data-dir", str(tmp_path / "absent"))
    _assert_one_line_error(proc, "mnist is not installed", "absent")


def test_eval_on_dataset_of_other_shape(trained):
    out, _ = trained
    _assert_one_line_error(
        run("eval", str(out), "--data", "fashion-mnist"), "expects images of shape (1, 8, 8)"
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "vgg"], "unknown model 'vgg'"),
        (["--model", "mlp", "--arg", "depth=3"], "--arg depth: unknown option"),
        (["--model", "mlp", "--arg", "hidden=many"], "expected a int"),
        (["--model", "mlp", "--epochs", "0"], "epochs must be ≥ 1"),
    ],
    ids=["model", "option", "option-type", "epochs"],
)
def test_train_bad_arguments(tmp_path, args, needle):
    proc = run("train", "--data", "digits", "--out", str(tmp_path / "x.pt"), *args)
    _assert_one_line_error(proc, needle)


def test_models_lists_the_zoo():
    proc = run("models")
    assert proc.returncode == 0
    for name in ("cryptonets", "tenseal-tutorial", "lenet-shallow", "lenet-deep", "cnn", "gru"):
        assert name in proc.stdout
