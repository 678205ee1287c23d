"""``python -m adversarial defend | certify | backdoor | cleanse`` as a user runs them."""

import json

import torch

from nets import checkpoint
from tests.helpers import run_cli


def _run(*args):
    return run_cli("adversarial", *args)


def test_defend_trains_judges_and_saves_a_checkpoint(tmp_path):
    out, js = tmp_path / "free.pt", tmp_path / "free.json"
    proc = _run(
        "defend", "--method", "free", "--model", "cnn", "--model-arg", "width=8",
        "--data", "digits", "--epochs", "3", "--eval-n", "40", "--eps", "0.1", "--budget", "quick",
        "--arg", "replays=2", "--out", str(out), "--json", str(js), "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pgd-10x1" in proc.stdout and "square (scores only)" in proc.stdout
    assert "robust accuracy (AutoAttack, headline)" in proc.stdout
    metrics = json.loads(js.read_text())
    assert metrics["options"] == {"eps": 0.1, "replays": 2, "ramp_epochs": 0}
    assert 0 <= metrics["worst_case_robust_accuracy"] <= metrics["clean_accuracy"]
    assert metrics["autoattack_robust_accuracy"] <= metrics["robust_accuracy"]["pgd-10x1"]
    assert sum(metrics["autoattack_broken_by"].values()) == 40 and metrics["budget"] == "quick"
    assert metrics["run"]["seed"] == 0 and metrics["run"]["device"] == "cpu"
    net, meta = checkpoint.load(out)
    assert meta.run["defense"] == "free" and meta.model_args == {"width": 8}
    assert net(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_defend_wraps_a_checkpoint_and_refuses_bad_input(square_mlp_checkpoint, tmp_path):
    js = tmp_path / "jpeg.json"
    proc = _run(
        "defend", "--method", "jpeg", "--model", str(square_mlp_checkpoint), "--eval-n", "30",
        "--arg", "quality=50", "--budget", "quick", "--json", str(js),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pgd-transfer (from the bare model)" in json.loads(js.read_text())["robust_accuracy"]
    bad = _run("defend", "--method", "jpeg", "--model", "cnn", "--data", "digits")
    assert bad.returncode != 0 and "give --model CKPT.pt" in bad.stderr + bad.stdout
    unknown = _run("defend", "--method", "magic", "--model", "cnn", "--data", "digits")
    assert unknown.returncode != 0 and "choose one of" in unknown.stderr + unknown.stdout
    option = _run("defend", "--method", "free", "--model", "cnn", "--data", "digits",
                  "--arg", "replays=zero")  # fmt: skip
    assert option.returncode != 0 and "replays" in option.stderr + option.stdout


def test_certify_writes_the_curve_and_metrics(square_mlp_checkpoint, tmp_path):
    proc = _run(
        "certify", "--model", str(square_mlp_checkpoint), "--sigma", "0.25", "--n", "200",
        "--n0", "20", "--alpha", "0.01", "--images", "10", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 10 and len(metrics["rows"]) == 10
    assert (tmp_path / "certified.png").stat().st_size > 1000
    curve = list(metrics["certified_accuracy_at"].values())
    assert curve == sorted(curve, reverse=True)


def test_backdoor_then_cleanse(tmp_path):
    bad = tmp_path / "bad.pt"
    proc = _run(
        "backdoor", "--model", "cnn", "--data", "digits", "--out", str(bad), "--target", "3",
        "--rate", "0.2", "--size", "3", "--epochs", "20", "--classes", "0,1,2,3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert checkpoint.load(bad)[1].metrics["attack_success_rate"] > 0.8
    run = tmp_path / "cleanse"
    proc = _run(
        "cleanse", "--model", str(bad), "--classes", "0,1,2,3", "--images", "100",
        "--steps", "100", "--out", str(run), "--unlearn", str(tmp_path / "fixed.pt"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["l1"]) == 4 and "smallest_class" in metrics
    assert (run / "triggers.png").stat().st_size > 1000
