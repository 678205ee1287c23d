"""The model zoo: architectures by name, each a plain ``nn.Sequential`` where possible.

Sequential models are what ``integer_nn`` and ``crypto_nn`` compile layer by layer, so
every HE-oriented model here is one. Each factory takes the input shape (C, H, W), the
number of classes, and keyword arguments recorded in checkpoints.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from nets.errors import ModelError
from nets.layers import activation

Shape = tuple[int, int, int]
Factory = Callable[..., nn.Module]
_MODELS: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def wrap(fn: Factory) -> Factory:
        _MODELS[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    return sorted(_MODELS)


def describe(name: str) -> str:
    """First docstring line of a model factory."""
    return (inspect.getdoc(_MODELS[name]) or "").splitlines()[0]


def options(name: str) -> dict[str, object]:
    """The keyword arguments a model accepts, with their defaults."""
    sig = inspect.signature(_MODELS[name])
    own = {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}
    return own | {"denoise": 0}  # feature-denoising blocks, any sequential convnet


def build(name: str, in_shape: Shape, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build model ``name`` for inputs of shape ``in_shape`` = (C, H, W).

    Every convnet also takes ``denoise=N``: N feature-denoising blocks (Xie et al. 2019,
    :mod:`nets.denoise`) after its first N convolution activations."""
    if name not in _MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(names())}")
    denoise = kwargs.pop("denoise", 0)
    if not isinstance(denoise, int) or isinstance(denoise, bool) or denoise < 0:
        raise ModelError(f"denoise={denoise!r}: give the number of denoising blocks (0, 1, 2 …)")
    allowed = options(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ModelError(
            f"model {name!r} has no option {', '.join(unknown)}; it accepts "
            f"{', '.join(f'{k}={v}' for k, v in allowed.items()) or 'none'}"
        )
    try:  # fail here, naming the shape, rather than at the first batch
        model = _MODELS[name](tuple(in_shape), num_classes, **kwargs)
        if denoise:
            from nets.denoise import insert_denoise

            try:
                model = insert_denoise(model, denoise)
            except ValueError as exc:
                raise ModelError(f"model {name!r}: {exc}") from None
        with torch.no_grad():
            model.eval()(torch.zeros(1, *in_shape))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(
            f"model {name!r} does not fit inputs of shape {in_shape}: {first}"
        ) from None
    return model.train()


def _flat_size(layers: nn.Module, in_shape: Shape) -> int:
    with torch.no_grad():
        return int(layers(torch.zeros(1, *in_shape)).numel())


def _conv_head(
    features: list[nn.Module],
    in_shape: Shape,
    hidden: list[int],
    num_classes: int,
    act: str,
    dropout: float = 0.0,
) -> nn.Sequential:
    """features → flatten → fc(hidden[0]) → act → … → fc(num_classes)."""
    body = nn.Sequential(*features, nn.Flatten())
    width = _flat_size(body, in_shape)
    layers = list(body)
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register("cryptonets")
def cryptonets(in_shape: Shape, num_classes: int, *, act: str = "square") -> nn.Module:
    """CryptoNets (Dowlin et al. 2016): conv 5x5/2, 5 maps → x² → fc 845→100 → x² → fc 100→10."""
    c = in_shape[0]
    # padding=1 turns 28x28 into the paper's 13x13x5 = 845 features.
    features = [nn.Conv2d(c, 5, 5, stride=2, padding=1), activation(act)]
    return _conv_head(features, in_shape, [100], num_classes, act)


@register("tenseal-tutorial")
def tenseal_tutorial(in_shape: Shape, num_classes: int, *, act: str = "square") -> nn.Module:
    """TenSEAL encrypted-MNIST tutorial: conv 7x7/3, 4 maps → x² → fc 256→64 → x² → fc 64→10."""
    c = in_shape[0]
    features = [nn.Conv2d(c, 4, 7, stride=3), activation(act)]
    return _conv_head(features, in_shape, [64], num_classes, act)


def _lenet(
    in_shape: Shape, num_classes: int, convs: list[int], act: str, dropout: float
) -> nn.Module:
    """3x3 convs of the given widths → max-pool → fc 128 → fc (thesis §5.4, Keras MNIST CNN)."""
    features: list[nn.Module] = []
    cin = in_shape[0]
    for width in convs:
        features += [nn.Conv2d(cin, width, 3), activation(act)]
        cin = width
    features.append(nn.MaxPool2d(2))
    if dropout:
        features.append(nn.Dropout(dropout))
    return _conv_head(features, in_shape, [128], num_classes, act, dropout)


@register("wong-mnist")
def wong_mnist(in_shape: Shape, num_classes: int, *, act: str = "relu") -> nn.Module:
    """Wong, Rice & Kolter 2020's MNIST CNN: conv 16@4x4/2 → conv 32@4x4/2 → fc 100 → fc."""
    c = in_shape[0]
    features = [
        nn.Conv2d(c, 16, 4, stride=2, padding=1), activation(act),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), activation(act),
    ]  # fmt: skip
    return _conv_head(features, in_shape, [100], num_classes, act)


@register("lenet-shallow")
def lenet_shallow(
    in_shape: Shape, num_classes: int, *, act: str = "relu", dropout: float = 0.0
) -> nn.Module:
    """Thesis §5.4 shallow model: conv 32 → conv 64 → max-pool → fc 128 → fc 10."""
    return _lenet(in_shape, num_classes, [32, 64], act, dropout)


@register("lenet-deep")
def lenet_deep(
    in_shape: Shape, num_classes: int, *, act: str = "relu", dropout: float = 0.0
) -> nn.Module:
    """Thesis §5.4 deep model: the shallow one with a third conv (64) before the max-pool."""
    return _lenet(in_shape, num_classes, [32, 64, 64], act, dropout)


@register("cnn")
def cnn(
    in_shape: Shape,
    num_classes: int,
    *,
    width: int = 32,
    depth: int = 2,
    act: str = "relu",
    hidden: int = 128,
) -> nn.Module:
    """Width x depth CNN for the plasticity grid: `depth` conv 3x3 of `width` maps, pool, fc."""
    if width < 1 or depth < 1:
        raise ModelError(f"cnn needs width ≥ 1 and depth ≥ 1, got width={width}, depth={depth}")
    c, h, _ = in_shape
    features: list[nn.Module] = []
    for i in range(depth):
        features += [nn.Conv2d(c if i == 0 else width, width, 3, padding=1), activation(act)]
        if i % 2 == 1 and h >= 4:  # halve the resolution after every second conv
            features.append(nn.MaxPool2d(2))
            h //= 2
    return _conv_head(features, in_shape, [hidden], num_classes, act)


@register("mlp")
def mlp(
    in_shape: Shape, num_classes: int, *, hidden: int = 128, layers: int = 2, act: str = "relu"
) -> nn.Module:
    """Multi-layer perceptron: flatten → `layers` x (fc `hidden` → act) → fc."""
    return _conv_head([], in_shape, [hidden] * layers, num_classes, act)


class _BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 convs with a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = activation(act)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.act2 = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # (N, cout, H/s, W/s)
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


@register("resnet")
def resnet(
    in_shape: Shape, num_classes: int, *, width: int = 16, blocks: int = 1, act: str = "relu"
) -> nn.Module:
    """Small CIFAR ResNet: stem + 3 stages (width, 2w, 4w) of `blocks` blocks, global pool, fc."""
    c = in_shape[0]
    layers: list[nn.Module] = [
        nn.Conv2d(c, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        activation(act),
    ]
    cin = width
    for stage, cout in enumerate((width, 2 * width, 4 * width)):
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            layers.append(_BasicBlock(cin, cout, stride, act))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


class GRUClassifier(nn.Module):
    """Reads an image row by row (each row of C*W values is one time step) with a GRU."""

    def __init__(self, in_shape: Shape, num_classes: int, hidden: int) -> None:
        super().__init__()
        c, _, w = in_shape
        self.gru = nn.GRU(c * w, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 1, 3).reshape(n, h, c * w)  # (N, H steps, C*W features)
        _, last = self.gru(rows)  # last: (1, N, hidden)
        return self.fc(last[0])


@register("gru")
def gru(in_shape: Shape, num_classes: int, *, hidden: int = 64) -> nn.Module:
    """GRU classifier reading the image one row per time step, fc on the last state."""
    return GRUClassifier(in_shape, num_classes, hidden)
