"""Quantisation-aware training: the exported IntModel is the network that was trained."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from torch import nn

from integer_nn import QuantizationError, qat, quantize
from nets import models
from nets.layers import Square
from nets.train import TrainConfig, predict, train
from tests.helpers import train_small

QUIET = Console(quiet=True)


def _float_model(name_or_net, digits, epochs=10, **kwargs):
    if isinstance(name_or_net, str):
        return train_small(name_or_net, digits[0], epochs=epochs, **kwargs)
    torch.manual_seed(0)
    train(name_or_net, digits[0], TrainConfig(epochs=epochs, batch_size=32, lr=5e-3), console=QUIET)
    return name_or_net.eval()


def _fine_tuned(net, digits, config, epochs=2):
    q = qat.build(net, digits[0].images[:500], config)
    result = train(
        q,
        digits[0],
        TrainConfig(epochs=epochs, batch_size=32, lr=1e-3),
        step=qat.QATStep(),
        console=QUIET,
    )
    return q, result


def _assert_exported_equals_network(q, images):
    int_model = q.to_int_model()
    expected, scale = q.eval().forward_int(torch.from_numpy(images))
    expected = expected.detach().numpy()
    assert np.abs(expected).max() < 2**53  # float64 holds these integers exactly
    got = int_model.forward(int_model.quantize_input(images))
    np.testing.assert_array_equal(np.asarray(got, dtype=np.int64), expected.astype(np.int64))
    assert int_model.output_scale == float(scale)
    return int_model


def _avgpool_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        Square(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 16),
        nn.Tanh(),
        nn.Linear(16, 10),
    )


@pytest.mark.parametrize(
    "make, config",
    [
        # exactness does not need a well-trained float model: three epochs before QAT
        (lambda d: _float_model("mlp", d, 3), qat.QATConfig(weight_bits=3, act_bits=3)),
        (lambda d: _float_model("cryptonets", d, 3), qat.QATConfig(per_channel=True)),
        (
            lambda d: _float_model("cnn", d, 3, width=4, depth=2),
            qat.QATConfig(weight_bits=4, act_bits=5, per_channel=False),
        ),
        (lambda d: _float_model(_avgpool_net(), d, 3), qat.QATConfig(acc_bits=40)),
    ],
    ids=["mlp-relu-3bit", "cryptonets-x2-per-channel", "cnn-maxpool-per-tensor", "x2-avgpool-tanh"],
)
def test_exported_int_model_computes_what_the_fake_quantised_network_computed(digits, make, config):
    q, _ = _fine_tuned(make(digits), digits, config)
    int_model = _assert_exported_equals_network(q, digits[1].images)
    # and its accuracy is the network's (same predictions, image for image)
    np.testing.assert_array_equal(int_model.predict(digits[1].images), predict(q, digits[1].images))


def test_qat_recovers_what_post_training_quantisation_loses_at_3_bits(digits):
    net = _float_model("mlp", digits, hidden=32, layers=1)
    train_set, test_set = digits
    float_acc = (predict(net, test_set.images) == test_set.labels).mean()
    ptq = quantize(net, train_set.images[:500], weight_bits=3, act_bits=3)
    ptq_acc = (ptq.predict(test_set.images) == test_set.labels).mean()
    q, result = _fine_tuned(net, digits, qat.QATConfig(weight_bits=3, act_bits=3), epochs=4)
    qat_acc = (q.to_int_model().predict(test_set.images) == test_set.labels).mean()
    assert qat_acc > ptq_acc
    assert qat_acc >= float_acc - 0.02
    assert all("max_accumulator_bits" in row for row in result.history)  # QATStep's report


def test_per_channel_scales_only_where_the_next_affine_layer_absorbs_them(digits):
    calib, on = digits[0].images[:200], qat.QATConfig(per_channel=True)
    x2 = qat.build(_float_model("cryptonets", digits, epochs=2), calib, on)
    relu = qat.build(_float_model("cryptonets", digits, epochs=2, act="relu"), calib, on)
    # conv → x² → fc → x² → fc: the first two absorb into the next; the logits take one scale
    assert [m.per_channel for m in x2.affine_layers()] == [True, True, False]
    assert [m.per_channel for m in relu.affine_layers()] == [False, False, False]
    _, _, conv_scale = x2.affine_layers()[0].quantized(torch.tensor(1 / 15, dtype=torch.float64))
    assert conv_scale.shape == (5,) and len(set(conv_scale.tolist())) > 1
    off = qat.build(_float_model("cryptonets", digits, epochs=2), calib, qat.QATConfig())
    assert not any(m.per_channel for m in off.affine_layers())  # the default: one per tensor
    budget = qat.build(
        _float_model("cryptonets", digits, epochs=2), calib, qat.QATConfig(acc_bits=40)
    )
    assert [m.per_channel for m in budget.affine_layers()] == [True, True, False]  # with a budget


def test_accumulator_budget_bounds_every_layer_and_the_logits(digits):
    net = _float_model("cryptonets", digits)
    unbounded = qat.build(net, digits[0].images[:500], qat.QATConfig()).to_int_model()
    assert unbounded.max_value_bits > 36
    q, result = _fine_tuned(net, digits, qat.QATConfig(acc_bits=36))
    int_model = _assert_exported_equals_network(q, digits[1].images)
    assert int_model.max_value_bits <= 36
    assert all(
        max(-row["worst_lo"], row["worst_hi"]).bit_length() + 1 <= 36
        for row in int_model.describe()
    )
    assert max(row["max_value_bits"] for row in result.history) <= 36
    for layer, op in zip(
        q.affine_layers(), [o for o in int_model.ops if hasattr(o, "weight")], strict=True
    ):
        rows = op.weight.reshape(len(op.weight), -1)
        assert np.clip(rows, 0, None).sum(1).max() <= layer.cap
        assert -np.clip(rows, None, 0).sum(1).min() <= layer.cap
        assert np.abs(op.bias).max() <= layer.bias_cap
    assert int_model.meta["row_l1_caps"] == [m.cap for m in q.affine_layers()]


def test_a_budget_no_network_can_meet_is_refused_with_the_way_out(digits):
    net = _float_model("cryptonets", digits, epochs=1)
    with pytest.raises(QuantizationError, match=r"acc_bits=12 .*raise --acc-bits"):
        qat.build(net, digits[0].images[:100], qat.QATConfig(acc_bits=12))
    with pytest.raises(QuantizationError, match="weight_bits=1"):
        qat.QATConfig(weight_bits=1)
    with pytest.raises(QuantizationError, match="not supported by quantisation-aware"):
        qat.build(models.build("gru", (1, 8, 8), 10), digits[0].images[:10], qat.QATConfig())


@pytest.mark.slow  # tests/server/test_bfv_served.py checks the same over HTTP in the default run
def test_budgeted_x2_network_runs_exactly_under_one_bfv_prime(digits):
    import crypto_nn
    from crypto_nn.bfv.compile import compile_bfv

    net = _float_model("cryptonets", digits)
    ptq = quantize(net, digits[0].images[:500], weight_bits=4, act_bits=4)
    q, _ = _fine_tuned(net, digits, qat.QATConfig(acc_bits=39), epochs=1)
    int_model = q.to_int_model()
    assert ptq.max_value_bits > 40 >= int_model.max_value_bits + 1
    plan = compile_bfv(int_model, n=8192)
    assert len(plan.params.plain_moduli) == 1
    client = crypto_nn.client_for(plan.describe())
    server = plan.evaluator(client.public_context())
    x = int_model.quantize_input(digits[1].images[:16])
    x[0] = int_model.input_max  # the brightest image: logits at the edge of their range
    logits = client.infer_int(x, lambda k, cts: server.run(cts, segment=k))
    assert logits.tolist() == int_model.forward(x).tolist()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    hidden=st.integers(1, 12),
    act=st.sampled_from(["square", "relu", "sigmoid", "identity"]),
    weight_bits=st.integers(2, 6),
    act_bits=st.integers(2, 6),
    per_channel=st.booleans(),
)
def test_random_networks_export_exactly(seed, hidden, act, weight_bits, act_bits, per_channel):
    torch.manual_seed(seed)
    middle = {
        "square": Square(),
        "relu": nn.ReLU(),
        "sigmoid": nn.Sigmoid(),
        "identity": nn.Identity(),
    }
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), middle[act], nn.Linear(hidden, 3))
    images = torch.rand(40, 1, 3, 4, generator=torch.Generator().manual_seed(seed)).numpy()
    config = qat.QATConfig(weight_bits=weight_bits, act_bits=act_bits, per_channel=per_channel)
    q = qat.build(net, images[:20], config)
    _assert_exported_equals_network(q, images)
