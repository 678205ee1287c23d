import pytest
import torch
from torch import nn

from nets import models
from nets.errors import ModelError
from nets.layers import Square

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", models.names())
def test_every_model_runs_and_backprops(name, shape):
    torch.manual_seed(0)
    model = models.build(name, shape, 7)
    x = torch.rand(3, *shape)
    out = model(x)
    assert out.shape == (3, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_cryptonets_matches_the_paper():
    m = models.build("cryptonets", (1, 28, 28))
    linears = [layer for layer in m if isinstance(layer, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(845, 100), (100, 10)]
    assert sum(isinstance(layer, Square) for layer in m) == 2
    conv = m[0]
    assert (conv.out_channels, conv.kernel_size, conv.stride) == (5, (5, 5), (2, 2))


def test_tenseal_tutorial_matches_the_tutorial():
    m = models.build("tenseal-tutorial", (1, 28, 28))
    linears = [layer for layer in m if isinstance(layer, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(256, 64), (64, 10)]
    assert (m[0].out_channels, m[0].kernel_size, m[0].stride) == (4, (7, 7), (3, 3))


def test_shallow_vs_deep_differ_by_one_conv():
    def convs(name):
        return sum(isinstance(m, nn.Conv2d) for m in models.build(name, (1, 28, 28)).modules())

    assert (convs("lenet-shallow"), convs("lenet-deep")) == (2, 3)


@pytest.mark.parametrize(
    "act, cls", [("relu", nn.ReLU), ("square", Square), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)]
)
def test_activation_is_a_parameter(act, cls):
    m = models.build("cryptonets", (1, 28, 28), act=act)
    assert sum(isinstance(layer, cls) for layer in m) == 2


@pytest.mark.parametrize("width, depth", [(8, 1), (16, 3), (4, 5)])
def test_cnn_grid(width, depth):
    m = models.build("cnn", (1, 28, 28), width=width, depth=depth)
    convs = [c for c in m if isinstance(c, nn.Conv2d)]
    assert len(convs) == depth and all(c.out_channels == width for c in convs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"colour": 1}, "has no option colour; it accepts act=square"),
        ({"act": "gelu"}, "unknown activation 'gelu'"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ModelError, match=match):
        models.build("cryptonets", (1, 28, 28), **kwargs)


def test_unknown_model_and_bad_shape():
    with pytest.raises(ModelError, match="unknown model 'vgg'"):
        models.build("vgg", (1, 28, 28))
    with pytest.raises(ModelError, match=r"does not fit inputs of shape \(1, 4, 4\)"):
        models.build("lenet-deep", (1, 4, 4))


def test_gru_reads_rows_in_order():
    torch.manual_seed(0)
    m = models.build("gru", (1, 8, 8)).eval()
    x = torch.rand(2, 1, 8, 8)
    # The same computation by hand: a GRU over the 8 rows, fc on the last hidden state.
    _, h = m.gru(x[:, 0])
    torch.testing.assert_close(m(x), m.fc(h[0]))
    assert not torch.allclose(m(x), m(x.flip(2)))
