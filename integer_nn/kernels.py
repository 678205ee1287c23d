"""numba kernels of the integer network: conv, matmul, pooling and table gather over int64
(and, with ``narrow``, over the narrowest integer width that holds each result).

Each public function validates its arguments, allocates the output with an explicit
dtype and calls a private ``@njit`` kernel that takes only arrays and scalars and loops
by index (the stumpy / numba-examples layout). ``integer_nn.reference`` holds the plain
numpy versions the tests and ``bench kernels`` compare against, with exact equality.
Overflow is excluded before any kernel runs by the range analysis in ``quantize``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from integer_nn.errors import QuantizationError


def _as_int(name: str, a: np.ndarray, ndim: int, *, exact_floats: bool = False) -> np.ndarray:
    """A signed integer array as given (int8 … int64: IntModel passes its activations
    between ops in the narrowest width that holds them), anything else integer as int64.
    ``exact_floats``: float32 is kept too — IntModel's own float32 products, every value
    an integer of magnitude ≤ 2^24 (proved by the range analysis), never a user's array."""
    a = np.asarray(a)
    if exact_floats and a.dtype == np.float32:
        if a.ndim != ndim:
            raise QuantizationError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
        return np.ascontiguousarray(a)
    if a.dtype.kind != "i":
        return _as_int64(name, a, ndim)
    if a.ndim != ndim:
        raise QuantizationError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return np.ascontiguousarray(a)


def narrowest(lo: int, hi: int) -> np.dtype:
    """The smallest signed integer dtype holding [lo, hi]."""
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _as_int64(name: str, a: np.ndarray, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.int64:
        if not np.issubdtype(a.dtype, np.integer):
            raise QuantizationError(f"{name} must be an integer array, got {a.dtype}")
        a = a.astype(np.int64)
    if a.ndim != ndim:
        raise QuantizationError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return np.ascontiguousarray(a)


INT32_LIMIT = (1 << 31) - 1


@dataclass(frozen=True)
class Weights:
    """A layer's int64 weights and bias, with int32 copies and the largest row L1 norm,
    prepared once so that each call only has to look at its input."""

    weight: np.ndarray  # int64 (O, ...)
    bias: np.ndarray  # int64 (O,)
    weight32: np.ndarray | None  # int32 copy, None when the weights do not fit int32
    bias32: np.ndarray | None
    row_l1: int  # max over outputs of Σ|w|
    bias_max: int  # max |b|
    floats: dict = field(default_factory=dict, compare=False)  # torch copies per dtype


def prepare(weight: np.ndarray, bias: np.ndarray, *, ndim: int) -> Weights:
    weight = _as_int64("weight", weight, ndim)
    bias = _as_int64("bias", bias, 1)
    if bias.shape[0] != weight.shape[0]:
        raise QuantizationError(f"bias {bias.shape} does not match weight {weight.shape}")
    row_l1 = int(np.abs(weight).reshape(weight.shape[0], -1).sum(1).max()) if weight.size else 0
    bias_max = int(np.abs(bias).max()) if bias.size else 0
    fits = row_l1 <= INT32_LIMIT and bias_max <= INT32_LIMIT
    return Weights(
        weight,
        bias,
        weight.astype(np.int32) if fits else None,
        bias.astype(np.int32) if fits else None,
        row_l1,
        bias_max,
    )


def _narrowed(x: np.ndarray, wts: Weights):
    """int32 operands when every partial sum provably fits (|x|·max Σ|w| + |b| < 2^31).

    The same loops then run twice as many SIMD lanes; the result is bit-identical because
    nothing can overflow. Otherwise the int64 arrays are used.
    """
    if x.size and wts.weight32 is not None:
        x_mag = max(abs(int(x.max())), abs(int(x.min())))
        if x_mag * wts.row_l1 + wts.bias_max <= INT32_LIMIT:
            return x.astype(np.int32), wts.weight32, wts.bias32
    return x.astype(np.int64, copy=False), wts.weight, wts.bias


FLOAT32_EXACT = 1 << 24  # every integer of magnitude ≤ 2^24 is a float32
FLOAT64_EXACT = 1 << 53


@dataclass(frozen=True)
class FloatRoute:
    """How a layer runs exactly in torch: ``dtype``, and ``split`` > 0 when the input is cut
    at that bit into two float32 products (x = hi·2^split + lo, lo in [0, 2^split)) that
    are each exact, then joined in int64; ``bound`` = max |x|·max Σ|w| + max |b|."""

    dtype: object
    split: int
    bound: int


def _exact_float(x: np.ndarray, wts: Weights) -> FloatRoute | None:
    """The float route on which this layer is exact, or None (the numba int64 kernels).

    When every product and partial sum, in any order BLAS or oneDNN add them, is an integer
    float32 (|·| ≤ 2^24) holds exactly, the float layer *is* the integer layer, at float
    speed (torch's own kernels, all cores). Past 2^24, two float32 products on the input's
    high and low bits when each stays within 2^24 (float64 products run several times
    slower on CPU than two float32 ones); else one float64 product up to 2^53.
    """
    import torch

    if not x.size:
        return None
    mag = max(abs(int(x.max())), abs(int(x.min())))
    bound = mag * wts.row_l1 + wts.bias_max
    if bound <= FLOAT32_EXACT:
        return FloatRoute(torch.float32, 0, bound)
    for split in range(1, mag.bit_length()):
        low = ((1 << split) - 1) * wts.row_l1 + wts.bias_max  # the low piece adds the bias
        high = -(-mag >> split) * wts.row_l1  # |x >> split| ≤ ⌈mag/2^split⌉, no bias
        if low <= FLOAT32_EXACT and high <= FLOAT32_EXACT:
            return FloatRoute(torch.float32, split, bound)
    if bound <= FLOAT64_EXACT:
        return FloatRoute(torch.float64, 0, bound)
    return None


def _run_float(x: np.ndarray, wts: Weights, route: FloatRoute, product, narrow: bool):
    """``product(x, w, b)`` (b may be None) on ``route`` → the exact integer result as a
    numpy array: int64; with ``narrow`` a plain float32 product as it comes (its values
    exact integers), else int32 when the bound allows."""
    import torch

    w, b = _float_weights(wts, route.dtype)
    xt = torch.from_numpy(x)
    if narrow and route.dtype == torch.float32 and not route.split:
        # float32 as it comes: every value an integer ≤ 2^24, read as such by the next op
        return product(xt.to(route.dtype), w, b).numpy()
    out = torch.int32 if narrow and route.bound <= INT32_LIMIT else torch.int64
    if not route.split:
        return product(xt.to(route.dtype), w, b).to(out).numpy()
    if xt.is_floating_point():
        xt = xt.to(torch.int32)  # exact integers: the bit split needs an integer type
    high = product((xt >> route.split).to(route.dtype), w, None).to(torch.int64)
    low = product((xt & ((1 << route.split) - 1)).to(route.dtype), w, b).to(torch.int64)
    return ((high << route.split) + low).to(out).numpy()


def _float_weights(wts: Weights, dtype):
    """The layer's weights and bias as torch tensors of ``dtype`` (made once per dtype)."""
    import torch

    cache = wts.floats
    if dtype not in cache:
        cache[dtype] = (
            torch.from_numpy(wts.weight).to(dtype),
            torch.from_numpy(wts.bias).to(dtype),
        )
    return cache[dtype]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@njit(parallel=True, cache=True)
def _conv2d_im2col_kernel(x, w, b, stride, padding, ho, wo, out):
    """Any stride: per image, gather the patches (im2col) so that each weight then
    multiplies one contiguous row of ho·wo values — long loops that vectorise."""
    n_img, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    taps = c_in * kh * kw
    w2 = w.reshape(c_out, taps)
    for n in prange(n_img):
        cols = np.zeros((taps, ho * wo), dtype=x.dtype)
        for c in range(c_in):
            for ky in range(kh):
                for kx in range(kw):
                    j = (c * kh + ky) * kw + kx
                    for oy in range(ho):
                        iy = oy * stride + ky - padding
                        if iy < 0 or iy >= h:
                            continue
                        for ox in range(wo):
                            ix = ox * stride + kx - padding
                            if 0 <= ix < wd:
                                cols[j, oy * wo + ox] = x[n, c, iy, ix]
        for o in range(c_out):
            acc = np.full(ho * wo, b[o])  # int32 or int64, as the inputs
            for j in range(taps):
                wv = w2[o, j]
                if wv == 0:
                    continue
                row = cols[j]
                for i in range(ho * wo):  # range index on a row view: SIMD
                    acc[i] += wv * row[i]
            for oy in range(ho):
                for ox in range(wo):
                    out[n, o, oy, ox] = acc[oy * wo + ox]


@njit(parallel=True, cache=True)
def _conv2d_stride1_kernel(xp, w, b, ho, wo, out):
    """Stride 1 over a padded input: each output row is computed full input width ("wide"),
    so the inner loop runs over ho·Wp contiguous values and vectorises; the columns past
    wo are garbage and cropped when copied out."""
    n_img, c_in, hp, wp = xp.shape
    c_out, _, kh, kw = w.shape
    span = (ho - 1) * wp + wo  # last useful wide index + 1
    for job in prange(n_img * c_out):
        n = job // c_out
        o = job % c_out
        wide = np.full(ho * wp, b[o])  # int32 or int64, as the inputs
        for c in range(c_in):
            src = xp[n, c].reshape(-1)
            for ky in range(kh):
                for kx in range(kw):
                    wv = w[o, c, ky, kx]
                    if wv == 0:
                        continue
                    tap = src[ky * wp + kx : ky * wp + kx + span]
                    for i in range(span):  # range index on a slice: no wraparound check, SIMD
                        wide[i] += wv * tap[i]
        for oy in range(ho):
            for ox in range(wo):
                out[n, o, oy, ox] = wide[oy * wp + ox]


def conv2d(
    x: np.ndarray,
    weight: np.ndarray | Weights,
    bias: np.ndarray | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
    narrow: bool = False,
) -> np.ndarray:
    """Integer 2-D convolution (cross-correlation, as torch): (N,C,H,W) → (N,O,Ho,Wo) int64;
    with ``narrow`` (IntModel's path) int32 where the bound allows, or a float32 product's
    output as it comes (exact integers), and float32 input is taken.

    ``weight`` is (O, C, kh, kw) with ``bias`` (O,), or :class:`Weights` from :func:`prepare`.
    """
    wts = weight if isinstance(weight, Weights) else prepare(weight, bias, ndim=4)
    x = _as_int("x", x, 4, exact_floats=narrow)
    o, c, kh, kw = wts.weight.shape
    if c != x.shape[1]:
        raise QuantizationError(
            f"conv2d: input has {x.shape[1]} channels, weight {wts.weight.shape}"
        )
    if stride < 1 or padding < 0:
        raise QuantizationError(f"conv2d: stride {stride} must be ≥ 1, padding {padding} ≥ 0")
    ho = conv_output_size(x.shape[2], kh, stride, padding)
    wo = conv_output_size(x.shape[3], kw, stride, padding)
    if ho < 1 or wo < 1:
        raise QuantizationError(f"conv2d: kernel {(kh, kw)} larger than input {x.shape[2:]}")
    route = _exact_float(x, wts)
    if route is not None:
        import torch

        def product(xf, w, b):
            return torch.nn.functional.conv2d(xf, w, b, stride=stride, padding=padding)

        return _run_float(x, wts, route, product, narrow)
    out = np.empty((x.shape[0], o, ho, wo), dtype=np.int64)
    xn, wn, bn = _narrowed(x, wts)
    if stride == 1:
        pads = ((0, 0), (0, 0), (padding, padding), (padding, padding))
        xp = np.pad(xn, pads) if padding else xn
        _conv2d_stride1_kernel(xp, wn, bn, ho, wo, out)
    else:
        _conv2d_im2col_kernel(xn, wn, bn, stride, padding, ho, wo, out)
    return out


@njit(parallel=True, cache=True)
def _linear_kernel(x, w, b, out):
    n_img, n_in = x.shape
    n_out = w.shape[0]
    for job in prange(n_img * n_out):  # (image, output) pairs: batch 1 uses every core too
        n = job // n_out
        o = job % n_out
        xr = x[n]
        wr = w[o]
        acc = b[o]
        for i in range(n_in):  # row views indexed by range: a SIMD dot product
            acc += wr[i] * xr[i]
        out[n, o] = acc


def linear(
    x: np.ndarray,
    weight: np.ndarray | Weights,
    bias: np.ndarray | None = None,
    *,
    narrow: bool = False,
) -> np.ndarray:
    """Integer fully connected layer: (N, I) @ (O, I)ᵀ + (O,) → (N, O) int64; ``narrow`` as
    in :func:`conv2d`."""
    wts = weight if isinstance(weight, Weights) else prepare(weight, bias, ndim=2)
    x = _as_int("x", x, 2, exact_floats=narrow)
    if wts.weight.shape[1] != x.shape[1]:
        raise QuantizationError(f"linear: input {x.shape}, weight {wts.weight.shape}")
    route = _exact_float(x, wts)
    if route is not None:
        import torch

        def product(xf, w, b):
            return xf @ w.T if b is None else torch.addmm(b, xf, w.T)

        return _run_float(x, wts, route, product, narrow)
    out = np.empty((x.shape[0], wts.weight.shape[0]), dtype=np.int64)
    _linear_kernel(*_narrowed(x, wts), out)
    return out


@njit(parallel=True, cache=True)
def _table_kernel(flat, table, lo, hi, shift, out):
    for i in prange(flat.shape[0]):
        v = np.int64(flat[i])  # any input width; the clip bounds are int64
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        out[i] = table[(v - lo) >> shift]


def table_lookup(
    acc: np.ndarray, table: np.ndarray, *, lo: int, shift: int, narrow: bool = False
) -> np.ndarray:
    """``table[(clip(acc, lo, hi) - lo) >> shift]`` with hi = lo + len(table)·2^shift - 1;
    int64, or with ``narrow`` the narrowest dtype that holds the table (a narrow gather: the
    table stays in cache, the output is 1–4 bytes a value)."""
    acc = _as_int("acc", acc, np.ndim(acc), exact_floats=narrow)
    table = _as_int64("table", table, 1)
    if len(table) == 0 or shift < 0:
        raise QuantizationError(f"table_lookup: empty table or negative shift {shift}")
    if narrow:
        table = table.astype(narrowest(int(table.min()), int(table.max())))
    hi = lo + (len(table) << shift) - 1
    out = np.empty(acc.size, dtype=table.dtype)
    _table_kernel(acc.reshape(-1), table, np.int64(lo), np.int64(hi), np.int64(shift), out)
    return out.reshape(acc.shape)


@njit(parallel=True, cache=True)
def _pool_kernel(x, k, stride, take_max, out):
    n_img, c, _, _ = x.shape
    ho, wo = out.shape[2], out.shape[3]
    for job in prange(n_img * c):
        n = job // c
        ch = job % c
        for oy in range(ho):
            for ox in range(wo):
                acc = x[n, ch, oy * stride, ox * stride]
                for ky in range(k):
                    for kx in range(k):
                        if ky == 0 and kx == 0:
                            continue
                        v = x[n, ch, oy * stride + ky, ox * stride + kx]
                        if take_max:
                            if v > acc:
                                acc = v
                        else:
                            acc += v
                out[n, ch, oy, ox] = acc


def _pool(
    x: np.ndarray, kernel: int, stride: int, take_max: bool, exact_floats: bool = False
) -> np.ndarray:
    # max keeps the input's width; a sum may pass a narrow one, so it runs in int64
    x = _as_int("x", x, 4, exact_floats=exact_floats) if take_max else _as_int64("x", x, 4)
    if kernel < 1 or stride < 1:
        raise QuantizationError(f"pool: kernel {kernel} and stride {stride} must be ≥ 1")
    ho = conv_output_size(x.shape[2], kernel, stride, 0)
    wo = conv_output_size(x.shape[3], kernel, stride, 0)
    if ho < 1 or wo < 1:
        raise QuantizationError(f"pool: kernel {kernel} larger than input {x.shape[2:]}")
    out = np.empty((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    _pool_kernel(x, kernel, stride, take_max, out)
    return out


def maxpool2d(
    x: np.ndarray, kernel: int, stride: int | None = None, *, narrow: bool = False
) -> np.ndarray:
    """Max over kernel x kernel windows (no padding, floor mode, as torch's default);
    ``narrow``: IntModel's exact float32 activations are taken as they come."""
    return _pool(x, kernel, stride or kernel, True, exact_floats=narrow)


def sumpool2d(x: np.ndarray, kernel: int, stride: int | None = None) -> np.ndarray:
    """Sum over windows: average pooling with the divisor folded into the next layer's scale."""
    return _pool(x, kernel, stride or kernel, False)
