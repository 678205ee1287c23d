"""``python -m bench he`` end to end on a small square-activation model."""

import json

import pytest

from tests.helpers import run_cli


@pytest.fixture(scope="module")
def ckpt(square_mlp_checkpoint):
    return square_mlp_checkpoint


def test_bench_he_batch_fields(tmp_path, ckpt):
    js = tmp_path / "he.json"
    proc = run_cli(
        "bench",
        "he",
        "--checkpoint",
        str(ckpt),
        "--data",
        "digits",
        "--n",
        "120",
        "--quick",
        "--json",
        str(js),
    )
    assert proc.returncode == 0, proc.stderr
    batch = json.loads(js.read_text())["packings"]["batch"]
    assert batch["n_images"] == 120 and batch["argmax_agreement"] == 1.0
    for key in (
        "keygen_s",
        "encrypt_s",
        "eval_s",
        "decrypt_s",
        "e2e_s",
        "baseline_eval_s",
        "public_context_bytes",
        "upload_bytes_per_image",
        "plain_torch_batch1_s",
    ):
        assert batch[key] > 0, key
    assert batch["speedup_vs_baseline"] == batch["baseline_eval_s"] / batch["eval_s"]
    assert batch["encrypted_accuracy"] == batch["plain_accuracy"]
    assert "| batch | 120 |" in js.with_suffix(".md").read_text()


def test_bench_he_bfv_is_bit_exact(tmp_path, ckpt):
    js = tmp_path / "bfv.json"
    proc = run_cli(
        "bench",
        "he",
        "--scheme",
        "bfv",
        "--checkpoint",
        str(ckpt),
        "--data",
        "digits",
        "--n",
        "100",
        "--quick",
        "--json",
        str(js),
    )
    assert proc.returncode == 0, proc.stderr
    batch = json.loads(js.read_text())["packings"]["batch"]
    assert batch["bit_exact_rate"] == 1.0 and batch["round_trips"] == 0
    assert len(batch["plaintext_moduli"]) >= 1
    assert batch["encrypted_accuracy"] == batch["int_accuracy"]
    assert "bit-exact rate 1.0000" in proc.stdout
