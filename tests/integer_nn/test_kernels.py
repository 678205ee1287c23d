"""numba kernels against the numpy reference: exact equality over random shapes and ranges."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integer_nn import kernels, reference
from integer_nn.errors import QuantizationError

# Magnitudes on both sides of the int32 fast path: 2^7 keeps it, 2^28 forces int64.
magnitudes = st.sampled_from([1, 2**7, 2**12, 2**28])


@st.composite
def conv_case(draw):
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    k = draw(st.integers(1, 4))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, k - 2 * padding), 9))
    w = draw(st.integers(max(1, k - 2 * padding), 9))
    mx, mw = draw(magnitudes), draw(magnitudes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-mx, mx + 1, size=(n, c, h, w))
    wt = rng.integers(-mw, mw + 1, size=(o, c, k, k))
    b = rng.integers(-mw, mw + 1, size=o)
    return x, wt, b, stride, padding


@settings(max_examples=150, deadline=None)
@given(conv_case())
def test_conv2d_equals_reference(case):
    x, w, b, stride, padding = case
    got = kernels.conv2d(x, w, b, stride=stride, padding=padding)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, reference.conv2d(x, w, b, stride=stride, padding=padding))


def test_conv2d_matches_torch_on_floats_that_are_integers():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 50, size=(2, 3, 11, 11))
    w = rng.integers(-20, 20, size=(5, 3, 3, 3))
    b = rng.integers(-100, 100, size=5)
    expected = torch.nn.functional.conv2d(
        torch.tensor(x, dtype=torch.float64),
        torch.tensor(w, dtype=torch.float64),
        torch.tensor(b, dtype=torch.float64),
        stride=2,
        padding=1,
    )
    np.testing.assert_array_equal(
        kernels.conv2d(x, w, b, stride=2, padding=1), expected.numpy().astype(np.int64)
    )


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 5),
    i=st.integers(1, 40),
    o=st.integers(1, 12),
    mx=magnitudes,
    mw=magnitudes,
    seed=st.integers(0, 2**32 - 1),
)
def test_linear_equals_reference(n, i, o, mx, mw, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-mx, mx + 1, size=(n, i))
    w = rng.integers(-mw, mw + 1, size=(o, i))
    b = rng.integers(-mw, mw + 1, size=o)
    np.testing.assert_array_equal(kernels.linear(x, w, b), reference.linear(x, w, b))


def test_int32_fast_path_edge_is_exact():
    # |x|·Σ|w| + |b| = 2^31 - 1 exactly: the int32 path, at the edge, must still be exact.
    x = np.full((1, 2), 46340, dtype=np.int64)
    w = np.array([[23170, 23170]], dtype=np.int64)
    b = np.array([(2**31 - 1) - 46340 * 46340], dtype=np.int64)
    assert kernels.linear(x, w, b)[0, 0] == 2**31 - 1
    b2 = b + 1  # one past: must take the int64 path, not wrap around
    assert kernels.linear(x, w, b2)[0, 0] == 2**31


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    k=st.integers(1, 3),
    stride=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_pools_equal_reference(n, c, h, w, k, stride, seed):
    if k > h or k > w:
        with pytest.raises(QuantizationError, match="larger than input"):
            kernels.maxpool2d(np.zeros((n, c, h, w), np.int64), k, stride)
        return
    x = np.random.default_rng(seed).integers(-(2**40), 2**40, size=(n, c, h, w))
    np.testing.assert_array_equal(
        kernels.maxpool2d(x, k, stride), reference.maxpool2d(x, k, stride)
    )
    np.testing.assert_array_equal(
        kernels.sumpool2d(x, k, stride), reference.sumpool2d(x, k, stride)
    )


@settings(max_examples=100, deadline=None)
@given(
    entries=st.integers(1, 300),
    shift=st.integers(0, 6),
    lo=st.integers(-(2**40), 2**40),
    seed=st.integers(0, 2**32 - 1),
)
def test_table_lookup_equals_reference(entries, shift, lo, seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(-128, 128, size=entries)
    span = entries << shift
    acc = lo + rng.integers(-span, 2 * span, size=(4, 7))  # below, inside and above the domain
    got = kernels.table_lookup(acc, table, lo=lo, shift=shift)
    np.testing.assert_array_equal(got, reference.table_lookup(acc, table, lo=lo, shift=shift))
    # Clipping: everything below the domain reads entry 0, everything above the last entry.
    assert (got[acc < lo] == table[0]).all() and (got[acc >= lo + span] == table[-1]).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: kernels.conv2d(
                np.zeros((1, 2, 5, 5)), np.zeros((1, 3, 3, 3), int), np.zeros(1, int)
            ),
            "integer array",
        ),
        (
            lambda: kernels.conv2d(
                np.zeros((1, 2, 5, 5), int), np.zeros((1, 3, 3, 3), int), np.zeros(1, int)
            ),
            "input has 2 channels",
        ),
        (
            lambda: kernels.linear(np.zeros((1, 4), int), np.zeros((2, 4), int), np.zeros(3, int)),
            "bias",
        ),
        (
            lambda: kernels.linear(np.zeros(4, int), np.zeros((2, 4), int), np.zeros(2, int)),
            "2 dimensions",
        ),
        (
            lambda: kernels.table_lookup(np.zeros(3, int), np.zeros(0, int), lo=0, shift=0),
            "empty table",
        ),
    ],
    ids=["float-input", "channels", "bias-shape", "rank", "empty-table"],
)
def test_kernels_validate(call, match):
    with pytest.raises(QuantizationError, match=match):
        call()


def test_float_routes_are_exact_at_their_edges():
    """|x|·Σ|w| + |b| = 2^24 runs in float32, 2^53 in float64, one past in the next route;
    each must still equal the int64 result exactly."""
    for edge in (2**24, 2**53):
        x = np.full((1, 2), 2 ** (edge.bit_length() // 2), dtype=np.int64)
        w = np.array([[2 ** (edge.bit_length() // 2 - 2)] * 2], dtype=np.int64)
        room = edge - 2 * int(x[0, 0]) * int(w[0, 0])
        for b in (room, room + 1, -room):
            bias = np.array([b], dtype=np.int64)
            assert kernels.linear(x, w, bias)[0, 0] == int(x[0] @ w[0]) + b


def test_a_wide_3x3_conv_on_the_float32_route_is_exact():
    """Many channels, 3×3, stride 1: where a float library could pick an inexact
    algorithm (Winograd); the float32 route must equal the integer reference."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 16, size=(4, 32, 16, 16))
    w = rng.integers(-7, 8, size=(32, 32, 3, 3))
    b = rng.integers(-100, 101, size=32)
    assert 15 * np.abs(w).reshape(32, -1).sum(1).max() + 100 <= kernels.FLOAT32_EXACT
    np.testing.assert_array_equal(
        kernels.conv2d(x, w, b, padding=1), reference.conv2d(x, w, b, padding=1)
    )
