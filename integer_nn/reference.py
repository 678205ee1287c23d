"""Plain numpy int64 versions of the kernels: the yardstick for tests and ``bench kernels``.

Vectorised the ordinary numpy way (one broadcast product per kernel offset), with none
of the kernels' loop structure, so agreement between the two is evidence, not a tautology.
"""

from __future__ import annotations

import numpy as np


def conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, *, stride: int = 1, padding: int = 0
) -> np.ndarray:
    x = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            patch = x[:, :, ky : ky + stride * ho : stride, kx : kx + stride * wo : stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx].astype(np.int64))
    return out + b.astype(np.int64)[None, :, None, None]


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x.astype(np.int64) @ w.astype(np.int64).T + b.astype(np.int64)


def table_lookup(acc: np.ndarray, table: np.ndarray, *, lo: int, shift: int) -> np.ndarray:
    hi = lo + (len(table) << shift) - 1
    return table[(np.clip(acc, lo, hi) - lo) >> shift]


def _windows(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    return view[:, :, ::stride, ::stride]  # (N, C, Ho, Wo, k, k)


def maxpool2d(x: np.ndarray, kernel: int, stride: int | None = None) -> np.ndarray:
    return _windows(x, kernel, stride or kernel).max(axis=(4, 5))


def sumpool2d(x: np.ndarray, kernel: int, stride: int | None = None) -> np.ndarray:
    return _windows(x.astype(np.int64), kernel, stride or kernel).sum(axis=(4, 5))


def _table(op, x):
    return table_lookup(x, op.values, lo=op.lo, shift=op.shift)


_REFERENCE_OPS = {
    "conv2d": lambda op, x: conv2d(x, op.weight, op.bias, stride=op.stride, padding=op.padding),
    "linear": lambda op, x: linear(x, op.weight, op.bias),
    "table": _table,
    "square": lambda op, x: x * x,
    "maxpool2d": lambda op, x: maxpool2d(x, op.kernel, op.stride),
    "sumpool2d": lambda op, x: sumpool2d(x, op.kernel, op.stride),
    "flatten": lambda op, x: x.reshape(x.shape[0], -1),
}


def forward(model, x: np.ndarray) -> np.ndarray:
    """``IntModel.forward`` through the numpy reference ops (no numba anywhere)."""
    for op in model.ops:
        if op.kind not in _REFERENCE_OPS:
            raise NotImplementedError(f"no numpy reference for op {op.kind!r}")
        x = _REFERENCE_OPS[op.kind](op, x)
    return x
