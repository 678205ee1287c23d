"""BFV with lookup tables: client-aided round trips and polynomials over Z_t, both exact."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto_nn
from crypto_nn.bfv.batch import BfvBatchEvaluator
from crypto_nn.bfv.client import BfvSegmentClient
from crypto_nn.bfv.compile import compile_bfv, compile_client_aided
from crypto_nn.bfv.tables import eval_poly_plain, interpolate_mod
from crypto_nn.errors import CompileError
from integer_nn.model import IntModel
from integer_nn.ops import IntFlatten, IntLinear, IntMaxPool2d, IntTable

PRIMES = [65537, 786433, 1032193]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(-200, 200),
    st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=40),
    st.sampled_from(PRIMES),
)
def test_interpolation_hits_every_table_entry_mod_t(lo, values, t):
    xs = [(lo + i) % t for i in range(len(values))]
    coeffs = interpolate_mod(xs, [v % t for v in values], t)
    assert len(coeffs) == len(values)
    assert [eval_poly_plain(coeffs, x, t) for x in xs] == [v % t for v in values]


def _table_model(rng, hidden: int, bits: int, pool: bool = False) -> IntModel:
    """flatten → linear → relu-like table (clipped, shifted) → [maxpool] → linear."""
    side = 4
    ops = []
    if pool:
        ops += [IntMaxPool2d(kernel=2, stride=2)]
        side = 2
    ops += [
        IntFlatten(),
        IntLinear(
            weight=rng.integers(-3, 4, (hidden, side * side)), bias=rng.integers(-4, 5, hidden)
        ),
    ]
    table_lo = int(rng.integers(-12, 0))
    entries = int(rng.integers(4, 24))
    values = np.maximum(np.arange(table_lo, table_lo + entries), 0) // 2
    ops += [IntTable(values=values.astype(np.int64), function="relu", lo=table_lo)]
    ops += [IntLinear(weight=rng.integers(-3, 4, (3, hidden)), bias=rng.integers(-9, 10, 3))]
    return IntModel(ops=ops, in_shape=(1, 4, 4), input_bits=bits, output_scale=1.0)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.integers(1, 6), st.integers(1, 3))
def test_client_aided_plan_is_exact(seed, hidden, bits):
    rng = np.random.default_rng(seed)
    model = _table_model(rng, hidden, bits)
    plan = compile_client_aided(model, verify=False)
    assert plan.round_trips == 1 and [op.kind for op in plan.client_ops[0]] == ["table"]
    x = rng.integers(0, 2**bits, size=(5, 1, 4, 4))
    x[0] = 2**bits - 1
    assert _run_client_aided(plan, x).tolist() == model.forward(x).tolist()


def _run_client_aided(plan, x):
    """The client built from the plan's JSON alone, against the plan's evaluator."""
    client = crypto_nn.client_for(plan.describe())
    server = plan.evaluator(client.public_context())
    return client.infer_int(x, lambda segment, cts: server.run(cts, segment=segment))


def test_client_aided_cuts_start_from_the_table_output_range():
    """A model whose second segment reads negative values (a signed table) stays exact:
    the client sends x − lo and the server's first bias absorbs lo."""
    rng = np.random.default_rng(3)
    model = IntModel(
        ops=[
            IntFlatten(),
            IntLinear(weight=rng.integers(-3, 4, (4, 16)), bias=np.zeros(4, np.int64)),
            IntTable(values=np.arange(-5, 6, dtype=np.int64), function="identity", lo=-5),
            IntLinear(weight=rng.integers(-3, 4, (3, 4)), bias=np.array([1, -2, 3])),
        ],
        in_shape=(1, 4, 4),
        input_bits=2,
        output_scale=1.0,
    )
    plan = compile_client_aided(model, verify=False)
    assert plan.segments[1].input_min == -5
    x = rng.integers(0, 4, size=(6, 1, 4, 4))
    assert _run_client_aided(plan, x).tolist() == model.forward(x).tolist()


def test_model_starting_with_a_client_op_is_refused():
    model = _table_model(np.random.default_rng(0), 2, 2, pool=True)
    with pytest.raises(CompileError, match="starts with a non-polynomial op"):
        compile_client_aided(model)


def test_polynomial_table_runs_non_interactively_and_exactly():
    rng = np.random.default_rng(7)
    model = IntModel(
        ops=[
            IntFlatten(),
            IntLinear(weight=rng.integers(-1, 2, (2, 16)), bias=np.zeros(2, np.int64)),
            IntTable(values=np.array([0, 0, 0, 1, 2, 3, 3], np.int64), function="relu", lo=-3),
            IntLinear(weight=rng.integers(-2, 3, (3, 2)), bias=np.array([1, 0, -1])),
        ],
        in_shape=(1, 4, 4),
        input_bits=1,
        output_scale=1.0,
    )
    plan = compile_bfv(model, tables="poly")
    table = next(layer for layer in plan.layers if layer.kind == "poly_table")
    assert table.domain <= 33 and table.depth >= 4  # the worst-case accumulator interval
    client = BfvSegmentClient(plan)
    x = rng.integers(0, 2, size=(8, 1, 4, 4))
    x[0], x[1] = 1, 0
    outputs = BfvBatchEvaluator(plan, client.public_context()).run_primes(client.encrypt_batch(x))
    assert client.decrypt_batch(outputs, len(x)).tolist() == model.forward(x).tolist()


def test_tables_are_refused_without_a_mode_and_when_too_wide():
    rng = np.random.default_rng(0)
    wide = IntModel(
        ops=[
            IntFlatten(),
            IntLinear(weight=np.full((2, 16), 255, np.int64), bias=np.zeros(2, np.int64)),
            IntTable(values=np.arange(8, dtype=np.int64), function="relu"),
            IntLinear(weight=rng.integers(-2, 3, (3, 2)), bias=np.zeros(3, np.int64)),
        ],
        in_shape=(1, 4, 4),
        input_bits=8,
        output_scale=1.0,
    )
    with pytest.raises(CompileError, match=r"op 2 \(table relu.*\) is not a polynomial"):
        compile_bfv(wide)
    with pytest.raises(CompileError, match="1040401-point table .* client-aided"):
        compile_bfv(wide, tables="poly")


def test_one_compile_entry_point_dispatches_by_scheme_packing_and_tables():
    import crypto_nn
    from crypto_nn.bfv.plan import BfvPlan, ClientAidedPlan

    model = _table_model(np.random.default_rng(2), 3, 2)
    assert isinstance(
        crypto_nn.compile(model, scheme="bfv", tables="client", verify=False), ClientAidedPlan
    )
    assert isinstance(crypto_nn.compile(model, scheme="bfv", tables="poly", verify=False), BfvPlan)
    with pytest.raises(CompileError, match="quantise first"):
        crypto_nn.compile(object(), scheme="bfv")
    with pytest.raises(CompileError, match="x²"):
        crypto_nn.compile(model, scheme="bfv", packing="single", tables="client")
