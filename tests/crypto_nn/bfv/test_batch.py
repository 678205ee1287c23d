import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto_nn.bfv.batch import BfvBatchEvaluator
from crypto_nn.bfv.client import BfvSegmentClient
from crypto_nn.bfv.compile import compile_bfv
from crypto_nn.bfv.params import crt_combine
from crypto_nn.errors import CompileError
from integer_nn.model import IntModel
from integer_nn.ops import IntFlatten, IntLinear, IntSquare, IntTable

MODULI = (638977, 737281, 786433, 1032193)  # batching primes for N = 8192, as compile picks


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_crt_is_exact_up_to_the_range_edges(data):
    k = data.draw(st.integers(1, 4))
    moduli = MODULI[:k]
    half = math.prod(moduli) // 2
    values = data.draw(
        st.lists(
            st.one_of(
                st.integers(-half, half),
                st.sampled_from([-half, -half + 1, -1, 0, 1, half - 1, half]),
            ),
            min_size=1,
            max_size=20,
        )
    )
    residues = [np.array([v % t for v in values], dtype=np.int64) for t in moduli]
    assert crt_combine(residues, moduli).tolist() == values


@st.composite
def polynomial_int_models(draw):
    """Random IntModels of the shape BFV runs: flatten → linear → x² → linear [→ x² → linear]."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    widths = [c * h * w] + draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)) + [3]
    wmax = draw(st.sampled_from([1, 7, 127]))
    ops = [IntFlatten()]
    for i in range(len(widths) - 1):
        if i:
            ops.append(IntSquare())
        ops.append(
            IntLinear(
                weight=rng.integers(-wmax, wmax + 1, (widths[i + 1], widths[i])),
                bias=rng.integers(-50, 51, widths[i + 1]),
            )
        )
    bits = draw(st.integers(2, 8))
    # past int64 too: the reference then runs in Python ints, and BFV must match it exactly
    model = IntModel(ops=ops, in_shape=(c, h, w), input_bits=bits, output_scale=1.0)
    n = draw(st.integers(1, 6))
    x = rng.integers(0, 2**bits, size=(n, c, h, w))
    x[0] = 2**bits - 1  # the largest input: logits at the edge of their range
    return model, x


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=polynomial_int_models())
def test_bfv_decrypts_to_exactly_the_integer_forward(case):
    model, x = case
    plan = compile_bfv(model)
    assert math.prod(plan.params.plain_moduli) > 2 * plan.logit_bound
    client = BfvSegmentClient(plan)
    public, inputs = client.public_context(), client.encrypt_batch(x)
    ring = BfvBatchEvaluator(plan, public)  # the default: our ring route, SEAL at the edges
    assert ring._sets[0].ring.schedule(plan, plan.n_inputs) is not None  # not a fallback
    lazy = ring.run_primes(inputs)  # relinearised after the next affine layer
    assert "serialise" in ring._sets[0].ring.profile  # where the time went, per step kind
    assert client.decrypt_batch(lazy, len(x)).tolist() == model.forward(x).tolist()
    # relinearised right after each x², as SEAL's route does: its bytes
    outputs = BfvBatchEvaluator(plan, public, lazy=False).run_primes(inputs)
    got = client.decrypt_batch(outputs, len(x))
    assert got.tolist() == model.forward(x).tolist()
    for route in ("terms", "gemm"):  # SEAL's square, relinearisation and bias: same bytes
        other = BfvBatchEvaluator(plan, public, route=route).run_primes(inputs)
        assert [[_residues(c) for c in per] for per in outputs] == [
            [_residues(c) for c in per] for per in other
        ]  # the same ciphertexts, bit for bit


def _residues(blob: bytes) -> bytes:
    from crypto_nn.wire import residues

    return residues.parse(blob)[1].tobytes() if blob else b""


def test_table_models_are_refused_for_the_non_interactive_plan():
    model = IntModel(
        ops=[
            IntFlatten(),
            IntLinear(weight=np.ones((2, 4), np.int64), bias=np.zeros(2, np.int64)),
            IntTable(values=np.arange(4, dtype=np.int64), function="relu"),
        ],
        in_shape=(1, 2, 2),
        input_bits=4,
        output_scale=1.0,
    )
    with pytest.raises(CompileError, match=r"op 2 \(table relu.*\) is not a polynomial"):
        compile_bfv(model)


def test_noise_overflow_is_refused_at_compile_time():
    # Two squares at N = 4096: SEAL's default modulus (109 bits) runs out of noise budget
    # (TenSEAL decrypts such products wrongly without a word); the plan is refused instead.
    rng = np.random.default_rng(0)
    ops = [IntFlatten()]
    for i in range(3):
        if i:
            ops.append(IntSquare())
        ops.append(IntLinear(weight=rng.integers(-31, 32, (4, 4)), bias=np.zeros(4, np.int64)))
    model = IntModel(ops=ops, in_shape=(1, 2, 2), input_bits=2, output_scale=1.0)
    with pytest.raises(CompileError, match="bits of noise budget .* use N=16384"):
        compile_bfv(model, n=4096)


def test_outputs_no_input_reaches_are_folded_constants():
    w1 = np.array([[1, 2], [0, 0], [3, -1]], np.int64)  # hidden unit 1 is the constant 5
    w2 = np.array([[1, 1, 1], [0, 0, 0]], np.int64)  # logit 1 is the constant -7
    model = IntModel(
        ops=[
            IntFlatten(),
            IntLinear(weight=w1, bias=np.array([0, 5, 1])),
            IntSquare(),
            IntLinear(weight=w2, bias=np.array([2, -7])),
        ],
        in_shape=(1, 1, 2),
        input_bits=3,
        output_scale=1.0,
    )
    plan = compile_bfv(model)
    assert plan.constant_outputs == {1: -7}
    client = BfvSegmentClient(plan)
    x = np.array([[[[7, 0]]], [[[3, 5]]]])
    public, inputs = client.public_context(), client.encrypt_batch(x)
    for route in ("gemm", "ring"):
        outputs = BfvBatchEvaluator(plan, public, route=route).run_primes(inputs)
        assert client.decrypt_batch(outputs, 2).tolist() == model.forward(x).tolist()


def test_measured_noise_headroom_buys_fewer_wider_primes():
    rng = np.random.default_rng(1)
    ops = [IntFlatten()]
    for i in range(3):
        if i:
            ops.append(IntSquare())
        ops.append(IntLinear(weight=rng.integers(-31, 32, (4, 4)), bias=rng.integers(-9, 9, 4)))
    model = IntModel(ops=ops, in_shape=(1, 2, 2), input_bits=2, output_scale=1.0)
    narrow = compile_bfv(model, verify=False)  # 20-bit primes only
    plan = compile_bfv(model)
    assert len(plan.params.plain_moduli) < len(narrow.params.plain_moduli)
    assert math.prod(plan.params.plain_moduli) > 2 * plan.logit_bound
    client = BfvSegmentClient(plan)
    x = rng.integers(0, 4, size=(16, 1, 2, 2))
    x[0] = 3
    outputs = BfvBatchEvaluator(plan, client.public_context()).run_primes(client.encrypt_batch(x))
    assert client.decrypt_batch(outputs, len(x)).tolist() == model.forward(x).tolist()
    assert min(client.noise_budgets(outputs)) >= 10


def test_bfv_is_exact_where_the_integer_model_passes_int64():
    """Two squares of 8-bit values: logits near 2^86. The integer reference runs those
    layers in Python ints (it no longer refuses them) and BFV matches it bit for bit."""
    rng = np.random.default_rng(7)
    ops = [IntFlatten()]
    for i, (o, n) in enumerate([(4, 4), (4, 4), (3, 4)]):
        if i:
            ops.append(IntSquare())
        ops.append(IntLinear(weight=rng.integers(-127, 128, (o, n)), bias=rng.integers(-50, 51, o)))
    model = IntModel(ops=ops, in_shape=(1, 2, 2), input_bits=8, output_scale=1.0)
    assert model.wide
    x = rng.integers(0, 256, size=(5, 1, 2, 2))
    x[0] = 255
    expected = model.forward(x)
    assert expected.dtype == object and max(abs(v) for v in expected.ravel()) > 2**63
    plan = compile_bfv(model)
    client = BfvSegmentClient(plan)
    outputs = BfvBatchEvaluator(plan, client.public_context()).run_primes(client.encrypt_batch(x))
    assert client.decrypt_batch(outputs, len(x)).tolist() == expected.tolist()
