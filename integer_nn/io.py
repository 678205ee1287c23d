"""The IntModel file: one ``.npz`` holding the arrays and a JSON header.

Layout (``numpy.savez_compressed``, read back with ``allow_pickle=False``):

- ``header``: uint8 bytes of UTF-8 JSON::

      {"format": "cryptorobust.intmodel", "version": 1,
       "in_shape": [C, H, W], "input_bits": 8, "output_scale": 0.0123,
       "classes": [...], "meta": {...},
       "layers": [{"kind": "conv2d", "params": {...}, "arrays": ["weight", "bias"],
                   "observed": [lo, hi]}, ...]}

- ``L{i}.{name}``: the int64 arrays of layer ``i``.

A missing, truncated, corrupt or newer-version file is an :class:`IntModelFileError`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from integer_nn.errors import IntModelFileError
from integer_nn.model import IntModel, LayerStats
from integer_nn.ops import OPS
from nets.errors import UserError

FORMAT = "cryptorobust.intmodel"
VERSION = 1


def save(model: IntModel, path: str | Path) -> Path:
    path = Path(path)
    layers, arrays = [], {}
    for i, (op, st) in enumerate(zip(model.ops, model.stats, strict=True)):
        parts = op.arrays()
        layers.append(
            {
                "kind": op.kind,
                "params": op.params(),
                "arrays": sorted(parts),
                "observed": [st.observed_lo, st.observed_hi],
            }
        )
        arrays.update(
            {f"L{i}.{name}": np.ascontiguousarray(a, np.int64) for name, a in parts.items()}
        )
    header = {
        "format": FORMAT,
        "version": VERSION,
        "in_shape": list(model.in_shape),
        "input_bits": model.input_bits,
        "output_scale": model.output_scale,
        "classes": list(model.classes),
        "meta": model.meta,
        "layers": layers,
    }
    raw = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, header=raw, **arrays)
    tmp.replace(path)
    return path


def load(path: str | Path) -> IntModel:
    path = Path(path)
    if not path.is_file():
        raise IntModelFileError(f"{path} not found; make one with `python -m integer_nn quantize`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise IntModelFileError(f"{path} is truncated or corrupt ({exc}); quantise again") from None
    if "header" not in contents:
        raise IntModelFileError(f"{path} is not an IntModel file (no header)")
    try:
        header = json.loads(contents.pop("header").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntModelFileError(f"{path}: unreadable header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise IntModelFileError(
            f"{path} is not an IntModel file (format {header.get('format')!r})"
            if isinstance(header, dict)
            else f"{path}: malformed header"
        )
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise IntModelFileError(
            f"{path} has IntModel format version {version}; this cryptorobust "
            f"reads up to {VERSION} — upgrade cryptorobust"
        )
    try:
        ops, observed = [], []
        for i, layer in enumerate(header["layers"]):
            kind = layer["kind"]
            if kind not in OPS:
                raise IntModelFileError(f"{path}: layer {i} has unknown kind {kind!r}")
            parts = {name: contents[f"L{i}.{name}"] for name in layer["arrays"]}
            ops.append(OPS[kind].from_parts(layer["params"], parts))
            observed.append(layer.get("observed", [None, None]))
        model = IntModel(
            ops=ops,
            in_shape=tuple(header["in_shape"]),
            input_bits=int(header["input_bits"]),
            output_scale=float(header["output_scale"]),
            classes=tuple(header["classes"]),
            meta=dict(header["meta"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntModelFileError(f"{path}: missing or malformed field ({exc})") from None
    model.stats = [
        LayerStats(st.worst, lo, hi) for st, (lo, hi) in zip(model.stats, observed, strict=True)
    ]
    _check_shapes(model, path)
    return model


def _check_shapes(model: IntModel, path: Path) -> None:
    """Run one zero image through: arrays that do not fit each other fail here, not later."""
    try:
        model.forward(np.zeros((1, *model.in_shape), np.int64))
    except (UserError, ValueError, IndexError, TypeError) as exc:
        raise IntModelFileError(f"{path}: layers do not fit together ({exc})") from None
