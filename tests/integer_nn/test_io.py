import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integer_nn import IntModelFileError, io
from integer_nn.model import IntModel
from integer_nn.ops import IntConv2d, IntFlatten, IntLinear, IntMaxPool2d, IntSquare, IntTable


@st.composite
def int_models(draw):
    """Random small IntModels: conv → (table | square) → [maxpool] → flatten → linear."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c, h = draw(st.integers(1, 3)), draw(st.integers(4, 8))
    o, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    bits = draw(st.integers(2, 8))
    ops = [
        IntConv2d(
            weight=rng.integers(-127, 128, (o, c, k, k)),
            bias=rng.integers(-500, 500, o),
            stride=stride,
            padding=padding,
        )
    ]
    ho = (h + 2 * padding - k) // stride + 1
    if draw(st.booleans()):
        entries = draw(st.integers(1, 64))
        ops.append(
            IntTable(
                values=rng.integers(0, 256, entries),
                function="relu",
                lo=int(rng.integers(-1000, 0)),
                shift=draw(st.integers(0, 8)),
                in_scale=0.01,
                out_scale=0.02,
            )
        )
    else:
        ops.append(IntSquare())
    if ho >= 2 and draw(st.booleans()):
        ops.append(IntMaxPool2d(kernel=2, stride=2))
        ho //= 2
    ops += [
        IntFlatten(),
        IntLinear(weight=rng.integers(-127, 128, (3, o * ho * ho)), bias=rng.integers(-99, 99, 3)),
    ]
    model = IntModel(
        ops=ops,
        in_shape=(c, h, h),
        input_bits=bits,
        output_scale=0.5,
        classes=("a", "b", "c"),
        meta={"note": "random"},
    )
    x = rng.integers(0, 2**bits, size=(3, c, h, h))
    return model, x


@settings(max_examples=40, deadline=None)
@given(case=int_models())
def test_save_load_forward_identical(tmp_path_factory, case):
    model, x = case
    model.observe(x)
    path = io.save(model, tmp_path_factory.mktemp("io") / "m.int.npz")
    back = io.load(path)
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    assert back.describe() == model.describe()
    assert (back.in_shape, back.input_bits, back.output_scale, back.classes, back.meta) == (
        model.in_shape,
        model.input_bits,
        model.output_scale,
        model.classes,
        model.meta,
    )


@settings(max_examples=40, deadline=None)
@given(case=int_models())
def test_worst_case_bounds_hold(case):
    model, x = case
    x = np.concatenate([x, np.zeros_like(x[:1]), np.full_like(x[:1], model.input_max)])
    for op, st_ in zip(model.ops, model.stats, strict=True):
        x = op.forward(x)
        assert st_.worst.lo <= x.min() and x.max() <= st_.worst.hi


@pytest.fixture
def saved(tmp_path):
    model = IntModel(
        ops=[IntFlatten(), IntLinear(weight=np.ones((2, 4), np.int64), bias=np.zeros(2, np.int64))],
        in_shape=(1, 2, 2),
        input_bits=8,
        output_scale=1.0,
    )
    return io.save(model, tmp_path / "m.int.npz")


def _rewrite(path, mutate):
    with np.load(path) as npz:
        contents = {k: npz[k] for k in npz.files}
    header = json.loads(contents["header"].tobytes())
    mutate(header, contents)
    contents["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **contents)


def test_truncated_file(saved):
    raw = saved.read_bytes()
    saved.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IntModelFileError, match="truncated or corrupt"):
        io.load(saved)


def test_newer_version(saved):
    _rewrite(saved, lambda h, c: h.update(version=io.VERSION + 1))
    with pytest.raises(IntModelFileError, match="format version 2; .* upgrade"):
        io.load(saved)


def test_wrong_dtype_and_shapes(saved):
    _rewrite(saved, lambda h, c: c.update({"L1.weight": c["L1.weight"].astype(np.float32)}))
    with pytest.raises(IntModelFileError, match="linear.weight is float32, expected int64"):
        io.load(saved)


def test_layers_that_do_not_fit(saved):
    _rewrite(saved, lambda h, c: c.update({"L1.weight": np.ones((2, 5), np.int64)}))
    with pytest.raises(IntModelFileError, match="layers do not fit together"):
        io.load(saved)


def test_unknown_kind_and_foreign_files(saved, tmp_path):
    _rewrite(saved, lambda h, c: h["layers"][0].update(kind="attention"))
    with pytest.raises(IntModelFileError, match="unknown kind 'attention'"):
        io.load(saved)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(IntModelFileError, match="no header"):
        io.load(tmp_path / "other.npz")
    # An object array needs pickle to load: refused, never unpickled.
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as zf, zf.open("header.npy", "w") as f:
        np.save(f, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(IntModelFileError, match="truncated or corrupt"):
        io.load(tmp_path / "pickled.npz")
    with pytest.raises(IntModelFileError, match="not found"):
        io.load(tmp_path / "absent.npz")
