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


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 4),
    i=st.integers(1, 300),
    o=st.integers(1, 8),
    x_bits=st.integers(1, 15),
    w_mag=st.sampled_from([1, 7, 2**8, 2**12, 2**20]),
    signed=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_narrow_inputs_and_the_split_float32_route_are_exact(n, i, o, x_bits, w_mag, signed, seed):
    """Inputs of any width (IntModel passes int16 between ops) and the route that cuts the
    input into two float32 products (x = hi·2^s + lo) give the int64 reference exactly;
    ``narrow`` only changes the dtype, never a value."""
    rng = np.random.default_rng(seed)
    lo = -(1 << x_bits) if signed else 0
    x = rng.integers(lo, 1 << x_bits, size=(n, i)).astype(np.int16 if x_bits < 15 else np.int32)
    w = rng.integers(-w_mag, w_mag + 1, size=(o, i))
    b = rng.integers(-w_mag, w_mag + 1, size=o)
    want = reference.linear(x.astype(np.int64), w, b)
    wide, narrow = kernels.linear(x, w, b), kernels.linear(x, w, b, narrow=True)
    # narrow: int32, or a float32 product as it comes (its values exact integers)
    assert wide.dtype == np.int64 and narrow.dtype in (np.int32, np.int64, np.float32)
    np.testing.assert_array_equal(wide, want)
    np.testing.assert_array_equal(narrow, want)
    image = x[:, : (i // 4) * 4].reshape(n, 1, 2, -1) if i >= 8 else None
    if image is not None and image.shape[3] >= 2:
        kernel = rng.integers(-w_mag, w_mag + 1, size=(o, 1, 2, 2))
        got = kernels.conv2d(image, kernel, b, narrow=True)
        want_conv = reference.conv2d(image.astype(np.int64), kernel, b)
        np.testing.assert_array_equal(got, want_conv)
        # what IntModel passes on: a float32 product read by the next op as integers
        table = np.arange(-50, 50)
        np.testing.assert_array_equal(
            kernels.table_lookup(got, table, lo=-(2**20), shift=15, narrow=True),
            reference.table_lookup(want_conv, table, lo=-(2**20), shift=15),
        )
        np.testing.assert_array_equal(
            kernels.maxpool2d(got, 1, narrow=True), reference.maxpool2d(want_conv, 1, 1)
        )


def test_the_split_route_is_taken_where_float32_alone_is_not_exact():
    """255 · Σ|w| past 2^24 but each half of the input's bits within it: two float32
    products, not one float64 product; the result is exact."""
    import torch

    x = np.full((2, 9216), 255, dtype=np.int16)
    w = np.full((3, 9216), 64, dtype=np.int64)
    b = np.array([5, -5, 0])
    wts = kernels.prepare(w, b, ndim=2)
    route = kernels._exact_float(x, wts)
    assert route.bound > kernels.FLOAT32_EXACT and route.dtype == torch.float32 and route.split
    np.testing.assert_array_equal(
        kernels.linear(x, wts), reference.linear(x.astype(np.int64), w, b)
    )


def test_a_narrow_table_keeps_its_values_and_takes_the_narrowest_width():
    table = np.array([-3, 0, 100, 127])
    acc = np.array([[-10, 0, 1, 2, 3, 9]], dtype=np.int32)
    got = kernels.table_lookup(acc, table, lo=0, shift=0, narrow=True)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(
        got, reference.table_lookup(acc.astype(np.int64), table, lo=0, shift=0)
    )
    assert kernels.narrowest(-129, 0) == np.int16 and kernels.narrowest(0, 2**31) == np.int64
