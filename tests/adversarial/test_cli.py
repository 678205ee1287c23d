"""``python -m adversarial`` as a user runs it: results, files, and one-line errors."""

import json

import pytest

from tests.helpers import run_cli


def _run(*args):
    return run_cli("adversarial", *args)


def test_attack_command_prints_metrics_and_writes_grid_and_json(square_mlp_checkpoint, tmp_path):
    png, js = tmp_path / "grid.png", tmp_path / "pgd.json"
    proc = _run(
        "attack",
        "--model",
        str(square_mlp_checkpoint),
        "--attack",
        "pgd",
        "--eps",
        "0.2",
        "--n",
        "40",
        "--out",
        str(png),
        "--json",
        str(js),
    )
    assert proc.returncode == 0, proc.stderr
    assert "robust_accuracy" in proc.stdout and png.stat().st_size > 1000
    metrics = json.loads(js.read_text())
    assert metrics["n_images"] == 40 and metrics["mean_linf"] <= 0.2 + 1e-6
    assert metrics["robust_accuracy"] < metrics["clean_accuracy"]
    assert metrics["run"]["seed"] == 0


def test_black_box_attack_reports_its_queries(square_mlp_checkpoint, tmp_path):
    js = tmp_path / "square.json"
    proc = _run(
        "attack",
        "--model",
        str(square_mlp_checkpoint),
        "--attack",
        "square",
        "--eps",
        "0.2",
        "--arg",
        "queries=50",
        "--n",
        "10",
        "--out",
        str(tmp_path / "g.png"),
        "--json",
        str(js),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(js.read_text())["queries"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "nope"], "--attack nope: unknown"),
        (["--attack", "deepfool", "--eps", "0.1"], "--eps: attack deepfool has no eps"),
        (["--attack", "pgd", "--targeted", "banana"], "--targeted banana"),
        (["--attack", "pgd", "--arg", "steps=many"], "steps"),
    ],
)
def test_bad_options_are_one_line_errors(square_mlp_checkpoint, args, message):
    proc = _run("attack", "--model", str(square_mlp_checkpoint), "--n", "4", *args)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_reports_autoattack_with_a_breakdown_that_adds_up(square_mlp_checkpoint, tmp_path):
    js = tmp_path / "aa.json"
    proc = _run(
        "evaluate", str(square_mlp_checkpoint), "--eps", "0.1", "--n", "60",
        "--square-queries", "50", "--json", str(js),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(js.read_text())
    assert "robust accuracy (autoattack, linf ε = 0.1)" in proc.stdout
    assert sum(r["broken_by"].values()) == r["n_images"] == 60
    assert r["robust_accuracy"] < r["clean_accuracy"]
    assert list(r["seconds"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert r["run"]["device"] == "cpu" and r["threat"] == "linf"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.pt"], "checkpoint missing.pt not found"),
        (["MODEL", "--eps", "-0.1"], "--eps -0.1: the radius must be ≥ 0"),
        (["MODEL", "--threat", "l1"], "--threat l1: choose linf or l2"),
        (["MODEL", "--attack", "cw"], "--attack cw: choose one of"),
    ],
)
def test_evaluate_refuses_bad_input_in_one_line(square_mlp_checkpoint, args, message):
    args = [str(square_mlp_checkpoint) if a == "MODEL" else a for a in args]
    proc = _run("evaluate", *args)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
