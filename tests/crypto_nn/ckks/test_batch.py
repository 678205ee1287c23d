import json

import numpy as np
import pytest
import tenseal.sealapi as seal
import torch
from rich.console import Console
from torch import nn

from crypto_nn.ckks import compile as plan_mod
from crypto_nn.ckks.batch import CkksBatchEvaluator
from crypto_nn.ckks.client import make_keys
from crypto_nn.ckks.layers import Affine, Square
from crypto_nn.ckks.params import choose_ckks
from crypto_nn.errors import CompileError, ContextError
from crypto_nn.roles import parse_description
from crypto_nn.security import MAX_LOG_Q_128
from crypto_nn.wire import context as ctx_format
from nets import models
from nets.layers import Square as Square_
from nets.train import TrainConfig, train
from tests.helpers import train_small


def _mlp(digits, act):
    return train_small("mlp", digits[0], epochs=8, hidden=16, layers=1, act=act)


@pytest.fixture(scope="module")
def square_plan(digits):
    return plan_mod.compile(_mlp(digits, "square"), digits[0].images[:500], name="mlp-sq")


def error_bound(plan, images) -> float:
    """Worst-case decoding error, propagated layer by layer.

    CKKS noise in slot units: fresh symmetric encryption has coefficient noise of σ = 3.2,
    |e| ≤ 6σ w.h.p., and decoding sums N of them with unit-size roots of unity, so a slot
    is off by ≤ 6σ·√N ≈ 2^11 / Δ at N = 8192; a rescale's rounding meets the ternary
    secret's 2N/3 terms, σ ≈ √(N/12)·√(2N/3) ≈ 2^11, 6σ ≈ 2^13.5. We use 2^14 / Δ for
    both. A weighted sum multiplies errors by its row's Σ|w|; each weight is a constant
    rounded at its scale (Δ, or Δw in a fused plan): off by ≤ 1/2 / scale, times Σ|x|.
    x² turns an error e on |x| ≤ M into 2·M·e + e².
    """
    unit = 2.0**14 / plan.params.scale
    w_scale = 2.0 ** (plan.params.weight_scale_bits or plan.params.scale_bits)
    err = unit
    x = images.reshape(len(images), -1).astype(np.float64)
    for layer in plan.layers:
        if isinstance(layer, Affine):
            err = np.abs(layer.weight).sum(1).max() * err + 0.5 / w_scale * np.abs(x).sum(1).max()
        elif isinstance(layer, Square):
            m = np.abs(x).max()
            err = 2 * m * err + err * err + unit
        x = layer.forward(x)
    return float(err)


def test_encrypted_logits_match_plain_within_derived_bound(square_plan, digits):
    images = digits[1].images[:200]
    keys, public = make_keys(square_plan)
    outputs = CkksBatchEvaluator(square_plan, public).run(keys.encrypt_batch(images))
    logits = keys.decrypt_batch(outputs, len(images))
    plain = square_plan.forward_plain(images)
    bound = error_bound(square_plan, images)
    assert np.abs(logits - plain).max() <= bound
    assert bound < 0.01 * np.abs(plain).max()  # tight enough to matter for an argmax
    assert (logits.argmax(1) == plain.argmax(1)).mean() == 1.0


def test_plan_equals_torch_for_polynomial_models(square_plan, digits):
    model = _mlp(digits, "square").double()
    x = digits[1].images[:50]
    expected = model(torch.from_numpy(x).double()).detach().numpy()
    np.testing.assert_allclose(square_plan.forward_plain(x), expected, atol=1e-9)


@pytest.mark.parametrize("degree", [2, 3, 4])
def test_relu_becomes_fitted_polynomial_and_runs(digits, degree):
    plan = plan_mod.compile(_mlp(digits, "relu"), digits[0].images[:300], poly_degree=degree)
    poly = plan.layers[1]
    assert poly.kind == "poly" and poly.degree == degree and poly.fit_error > 0
    assert plan.depth == 2 + (degree - 1).bit_length() + 1  # two affine levels, powers, coeffs
    xs = np.linspace(poly.lo, poly.hi, 101)
    assert np.abs(poly.forward(xs) - np.maximum(xs, 0)).max() == pytest.approx(
        poly.fit_error, rel=0.05
    )
    images = digits[1].images[:64]
    keys, public = make_keys(plan)
    logits = keys.decrypt_batch(
        CkksBatchEvaluator(plan, public).run(keys.encrypt_batch(images)), len(images)
    )
    assert np.abs(logits - plan.forward_plain(images)).max() < 1e-2


def test_plan_description_round_trips_through_json(square_plan):
    desc = parse_description(square_plan.to_json())
    assert desc == json.loads(json.dumps(square_plan.describe()))
    assert desc["rotations"] == [] and desc["galois_keys"] is False and desc["relin_keys"] is True
    assert desc["params"]["total_bits"] <= MAX_LOG_Q_128[desc["params"]["poly_modulus_degree"]]
    with pytest.raises(CompileError, match="version 99"):
        parse_description(json.dumps({**desc, "version": 99}))


def test_security_table_is_seal_table():
    for n, bits in MAX_LOG_Q_128.items():
        assert seal.CoeffModulus.MaxBitCount(n, seal.SEC_LEVEL_TYPE.TC128) == bits


@pytest.mark.parametrize("depth, value_bits", [(1, 4), (5, 8), (12, 10), (25, 6)])
def test_chosen_parameters_fit_and_are_accepted_by_seal(depth, value_bits):
    params = choose_ckks(depth, value_bits)
    assert len(params.coeff_mod_bit_sizes) == depth + 2
    assert sum(params.coeff_mod_bit_sizes) <= MAX_LOG_Q_128[params.poly_modulus_degree]
    assert params.coeff_mod_bit_sizes[0] >= params.scale_bits + value_bits
    assert params.seal_context().parameters_set()


def test_too_deep_model_is_refused_at_compile_time(digits):
    torch.manual_seed(0)
    deep = models.build("mlp", (1, 8, 8), 10, hidden=4, layers=20, act="square")
    with pytest.raises(CompileError, match=r"depth 41 .* N=32768 allows 881"):
        plan_mod.compile(deep, digits[0].images[:50])


def test_unsupported_layer_is_refused(digits):
    with pytest.raises(CompileError, match=r"layer 4 \(MaxPool2d\) has no homomorphic form"):
        plan_mod.compile(models.build("lenet-shallow", (1, 8, 8)), digits[0].images[:10])
    with pytest.raises(CompileError, match="packing 'rows' is not available yet"):
        plan_mod.compile(
            nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), digits[0].images[:10], packing="rows"
        )


def test_public_context_carries_no_secret_and_is_checked(square_plan):
    keys, public = make_keys(square_plan)
    header, parts = ctx_format.unpack(public)
    assert set(parts) == {"params", "relin_keys"}
    assert 0 < len(parts["relin_keys"]) < 2_000_000 and len(parts["params"]) < 200
    secret = keys.save_secret()
    forged = (
        ctx_format.MAGIC
        + json.dumps(
            {
                "format": ctx_format.FORMAT,
                "version": 1,
                "scheme": "ckks",
                "parts": [["params", len(parts["params"])], ["secret_key", len(secret)]],
            }
        ).encode()
    )
    with pytest.raises(ContextError, match="secret_key"):
        ctx_format.unpack(forged + b"\n" + parts["params"] + secret)
    with pytest.raises(ContextError, match="truncated"):
        ctx_format.unpack(public[:-10])
    with pytest.raises(ContextError, match="not a cryptorobust context"):
        ctx_format.unpack(b"garbage")


def test_context_without_relin_keys_is_refused(square_plan):
    _, public = make_keys(square_plan)
    _, parts = ctx_format.unpack(public)
    with pytest.raises(ContextError, match="must carry relinearisation keys"):
        CkksBatchEvaluator(square_plan, ctx_format.pack("ckks", {"params": parts["params"]}))


def test_mismatched_parameters_are_refused(square_plan, digits):
    other = plan_mod.compile(_mlp(digits, "square"), digits[0].images[:500], n=16384)
    _, public_other = make_keys(other)
    with pytest.raises(ContextError, match="do not match the plan"):
        CkksBatchEvaluator(square_plan, public_other)


def test_bad_ciphertexts_are_refused(square_plan, digits):
    keys, public = make_keys(square_plan)
    evaluator = CkksBatchEvaluator(square_plan, public)
    cts = keys.encrypt_batch(digits[1].images[:4])
    with pytest.raises(ContextError, match="63 input ciphertexts; the plan takes 64"):
        evaluator.evaluate(evaluator.load_inputs(cts[:63]))
    with pytest.raises(ContextError, match="input 0 is not a SEAL object"):
        evaluator.load_inputs([b"x" * 40] + cts[1:])
    with pytest.raises(ContextError, match="input 0 declares .* bytes but .* were sent"):
        evaluator.load_inputs([cts[0][: len(cts[0]) // 2]] + cts[1:])
    with pytest.raises(ContextError, match="1 to 4096"):
        keys.encrypt_batch(np.zeros((4097, 1, 8, 8)))
    with pytest.raises(ContextError, match=r"span \[0, 255\]; .* images in \[0, 1\]"):
        keys.encrypt_batch(np.full((2, 1, 8, 8), 255.0) * np.arange(2)[:, None, None, None])


def test_batchnorm_joins_the_affine_chain(digits):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), Square_(), nn.Linear(8, 10)
    ).eval()
    model[2].running_mean.uniform_(-1, 1)
    model[2].running_var.uniform_(0.5, 2)
    plan = plan_mod.compile(model, digits[0].images[:50])
    assert [layer.kind for layer in plan.layers] == ["affine", "square", "affine"]
    x = digits[1].images[:20]
    expected = model.double()(torch.from_numpy(x).double()).detach().numpy()
    np.testing.assert_allclose(plan.forward_plain(x), expected, atol=1e-9)


def test_two_squares_stay_within_bound(digits):
    """Depth 5 like the tutorial net: the chain leaves a smaller scale, relinearisation keeps
    the rescaling error small (un-relinearised size-5 ciphertexts failed here)."""
    torch.manual_seed(0)
    model = models.build("mlp", (1, 8, 8), 10, hidden=16, layers=2, act="square")
    train(
        model, digits[0], TrainConfig(epochs=8, batch_size=32, lr=2e-3), console=Console(quiet=True)
    )
    plan = plan_mod.compile(model, digits[0].images[:500])
    assert plan.depth == 5 and plan.params.scale_bits < 40
    images = digits[1].images[:100]
    keys, public = make_keys(plan)
    logits = keys.decrypt_batch(
        CkksBatchEvaluator(plan, public).run(keys.encrypt_batch(images)), len(images)
    )
    plain = plan.forward_plain(images)
    assert np.abs(logits - plain).max() <= error_bound(plan, images)
    assert (logits.argmax(1) == plain.argmax(1)).mean() == 1.0


@pytest.mark.parametrize("route, reports", [("gemm", 20), ("ring", 10)])
def test_progress_is_reported_as_the_work_advances(square_plan, digits, route, reports):
    """Every 1 % of the work; the ring route's work comes in fewer, larger calls (a matrix
    product per layer, activations in chunks of 32 ciphertexts), so it reports less often."""
    keys, public = make_keys(square_plan)
    seen = []
    CkksBatchEvaluator(square_plan, public, route=route).run(
        keys.encrypt_batch(digits[1].images[:4]), on_progress=seen.append
    )
    assert len(seen) >= reports and seen == sorted(seen)
    assert 0 < seen[0] < 0.1 and seen[-1] > 0.97


@pytest.mark.parametrize("layers", [1, 2])
def test_ring_route_gives_the_gemm_routes_ciphertexts_bit_for_bit(digits, layers, monkeypatch):
    """The whole fused plan in our own kernels (crypto_nn.ring: square, relinearise,
    rescale) against SEAL doing them: the same output bytes' residues, level and scale —
    in chunks of 3 ciphertexts, so each chunk's result overwrites the inputs' buffer
    behind the chunks still to come."""
    from crypto_nn.ckks import batch
    from crypto_nn.wire import residues

    monkeypatch.setattr(batch, "RING_CHUNK", 3)

    torch.manual_seed(0)
    model = models.build("mlp", (1, 8, 8), 10, hidden=16, layers=layers, act="square")
    train(
        model, digits[0], TrainConfig(epochs=3, batch_size=32, lr=2e-3), console=Console(quiet=True)
    )
    plan = plan_mod.compile(model, digits[0].images[:500])
    assert plan.params.weight_scale_bits  # fused: what the ring route runs
    keys, public = make_keys(plan)
    inputs = keys.encrypt_batch(digits[1].images[:50])
    outs = {
        route: CkksBatchEvaluator(plan, public, route=route).run(inputs)
        for route in ("gemm", "ring")
    }
    # relinearised after the next affine layer (lazy): other bytes, the same slots
    lazy = CkksBatchEvaluator(plan, public, lazy=True).run(inputs)
    bound = error_bound(plan, digits[1].images[:50])
    got, want = keys.decrypt_batch(lazy, 50), keys.decrypt_batch(outs["gemm"], 50)
    assert np.abs(got - want).max() <= bound
    for a, b in zip(outs["gemm"], outs["ring"], strict=True):
        (meta_a, res_a), (meta_b, res_b) = residues.parse(a), residues.parse(b)
        assert meta_a == meta_b and np.array_equal(res_a, res_b)
    with pytest.raises(ValueError, match="route"):
        CkksBatchEvaluator(plan, public, route="fast")
