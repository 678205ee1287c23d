import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from integer_nn import QuantizationError, quantize, reference
from integer_nn.ops import IntSquare, IntTable
from nets import models
from nets.layers import Square
from nets.train import predict
from tests.helpers import train_small

QUIET = Console(quiet=True)


def _trained(name, digits, epochs=12, **kwargs):
    return train_small(name, digits[0], epochs=epochs, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs, square",
    [
        ("mlp", {}, "exact"),
        ("mlp", {"act": "sigmoid"}, "exact"),
        ("mlp", {"act": "tanh"}, "exact"),
        ("cryptonets", {"act": "relu"}, "exact"),
        ("tenseal-tutorial", {}, "table"),
        ("lenet-shallow", {}, "exact"),
        ("cnn", {"width": 8, "depth": 2}, "exact"),
    ],
    ids=[
        "mlp-relu",
        "mlp-sigmoid",
        "mlp-tanh",
        "cryptonets-relu",
        "tenseal-square-table",
        "lenet-shallow",
        "cnn",
    ],
)
def test_8bit_integer_model_agrees_with_float(digits, name, kwargs, square):
    model = _trained(name, digits, **kwargs)
    train_set, test_set = digits
    int_model = quantize(model, train_set.images[:500], square=square)
    int_pred = int_model.predict(test_set.images)
    float_pred = predict(model, test_set.images)
    assert (int_pred == float_pred).mean() >= 0.97
    float_acc = (float_pred == test_set.labels).mean()
    assert (int_pred == test_set.labels).mean() >= float_acc - 0.02
    # The real-valued logits track the float ones (scale bookkeeping is right).
    float_logits = model(torch.from_numpy(test_set.images[:50])).detach().numpy()
    spread = float_logits.max() - float_logits.min()
    assert np.abs(int_model.logits(test_set.images[:50]) - float_logits).max() < 0.1 * spread


def test_forward_equals_numpy_reference_and_is_deterministic(digits):
    int_model = quantize(
        _trained("cryptonets", digits, epochs=2, act="relu"), digits[0].images[:200]
    )
    x = int_model.quantize_input(digits[1].images[:64])
    out = int_model.forward(x)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, reference.forward(int_model, x))
    np.testing.assert_array_equal(out, int_model.forward(x.copy()))


def test_observed_ranges_lie_inside_worst_case(digits):
    int_model = quantize(_trained("lenet-shallow", digits, epochs=2), digits[0].images[:300])
    for row in int_model.describe():
        assert row["worst_lo"] <= row["observed_lo"] <= row["observed_hi"] <= row["worst_hi"], row
        assert row["observed_bits"] <= row["accumulator_bits"]
    # Worst case holds on inputs never seen in calibration, including extreme images.
    for x in (np.zeros((1, 1, 8, 8)), np.ones((1, 1, 8, 8)), digits[1].images):
        cur = int_model.quantize_input(x)
        for op, st in zip(int_model.ops, int_model.stats, strict=True):
            cur = op.forward(cur)
            assert st.worst.lo <= cur.min() and cur.max() <= st.worst.hi


def test_square_exact_stays_polynomial_and_runs_past_int64_in_python_ints(digits):
    model = _trained("tenseal-tutorial", digits, epochs=2)
    small = quantize(model, digits[0].images[:100], weight_bits=4, act_bits=4)
    assert not any(isinstance(op, IntTable) for op in small.ops)
    assert sum(isinstance(op, IntSquare) for op in small.ops) == 2
    assert (
        not small.wide and small.forward(small.quantize_input(digits[1].images)).dtype == np.int64
    )
    wide = quantize(model, digits[0].images[:100], weight_bits=5, act_bits=5)
    assert wide.wide  # its worst case passes int64: the reference no longer refuses it
    x = wide.quantize_input(np.ones((2, 1, 8, 8)))
    out = wide.forward(x)
    assert out.dtype == object and all(isinstance(v, int) for v in out.ravel())
    # exact: the same integers as the int64 path on an input small enough for int64
    narrow = np.zeros_like(x)
    narrow[:, :, 3, 3] = 1
    forced_narrow = narrow.copy()
    for op in wide.ops:
        forced_narrow = op.forward(forced_narrow)
    assert (wide.forward(narrow) == forced_narrow.astype(object)).all()
    # and the integer logits still mean the float model's logits
    real = wide.logits(digits[1].images[:50])
    with torch.no_grad():
        ref = model(torch.from_numpy(digits[1].images[:50])).numpy()
    assert (real.argmax(1) == ref.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("name", ["lenet-shallow", "tenseal-tutorial"])
def test_python_int_ops_equal_the_int64_kernels(name, digits):
    """Every op's exact (object) path gives the int64 kernels' integers where both fit."""
    int_model = quantize(
        _trained(name, digits, epochs=1), digits[0].images[:200], weight_bits=4, act_bits=4
    )
    x = int_model.quantize_input(digits[1].images[:20])
    for op in int_model.ops:
        y = op.forward(x)
        y_wide = op.forward(x.astype(object))
        assert (np.asarray(y_wide, dtype=object) == y.astype(object)).all(), op.describe()
        x = y


def test_batchnorm_is_folded():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )
    bn = model[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.2, 0.2)
    x = torch.rand(200, 1, 8, 8)
    int_model = quantize(model, x.numpy())
    assert [op.kind for op in int_model.ops] == ["conv2d", "table", "flatten", "linear"]
    model.eval()
    agree = (int_model.predict(x.numpy()) == model(x).argmax(1).numpy()).mean()
    assert agree >= 0.95


def test_avgpool_becomes_sum_with_folded_divisor():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        Square(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 4),
    ).eval()
    x = torch.rand(100, 1, 8, 8)
    int_model = quantize(model, x.numpy(), weight_bits=6, act_bits=6)
    assert [op.kind for op in int_model.ops] == [
        "conv2d",
        "square",
        "sumpool2d",
        "flatten",
        "linear",
    ]
    ref = model(x).detach().numpy()
    err = np.abs(int_model.logits(x.numpy()) - ref).max()
    assert err < 0.05 * (ref.max() - ref.min())


def test_unsupported_layers_and_bad_arguments():
    model = models.build("resnet", (3, 8, 8))
    with pytest.raises(QuantizationError, match=r"layer 3 \(_BasicBlock\) is not supported"):
        quantize(model, np.zeros((2, 3, 8, 8), np.float32))
    mlp = models.build("mlp", (1, 8, 8))
    with pytest.raises(QuantizationError, match="weight_bits=1"):
        quantize(mlp, np.zeros((2, 1, 8, 8), np.float32), weight_bits=1)
    with pytest.raises(QuantizationError, match="non-empty"):
        quantize(mlp, np.zeros((0, 1, 8, 8), np.float32))


def test_forward_rejects_bad_inputs(digits):
    int_model = quantize(models.build("mlp", (1, 8, 8)), digits[0].images[:20])
    with pytest.raises(QuantizationError, match="int64 input"):
        int_model.forward(digits[1].images[:2])
    with pytest.raises(QuantizationError, match=r"span \[0, 256\] .* \[0, 255\]"):
        int_model.forward(np.full((1, 1, 8, 8), 256, np.int64))
    with pytest.raises(QuantizationError, match=r"shape \(1, 9, 9\)"):
        int_model.predict(np.zeros((1, 1, 9, 9), np.float32))


def test_integer_gru_agrees_with_float(digits):
    model = _trained("gru", digits, epochs=15, hidden=32)
    int_model = quantize(model, digits[0].images[:300])
    float_pred = predict(model, digits[1].images)
    agree = (int_model.predict(digits[1].images) == float_pred).mean()
    assert agree >= 0.97
    assert [op.kind for op in int_model.ops] == ["gru", "linear"]
