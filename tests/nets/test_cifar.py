import pickle

import numpy as np
import pytest

from nets import data
from nets.cifar import read_batch, write_batch
from nets.errors import DataError


def _make_cifar_dir(root, n=6, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    truth = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        write_batch(folder / name, images, labels)
        truth[name] = (images, labels)
    return truth


def test_batch_round_trip(tmp_path):
    images = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3, 32, 32)
    write_batch(tmp_path / "b", images, [3, 9])
    x, y = read_batch(tmp_path / "b")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, [3, 9])


def test_load_cifar10_from_data_dir(tmp_path):
    truth = _make_cifar_dir(tmp_path)
    train = data.load("cifar10", "train", data_dir=tmp_path)
    test = data.load("cifar10", "test", data_dir=tmp_path)
    assert train.images.shape == (30, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.images.dtype == np.float32 and train.labels.dtype == np.int64
    # The channel planes are R, G, B in the file; value 255 maps to exactly 1.0.
    np.testing.assert_array_equal(test.images, truth["test_batch"][0] / np.float32(255))
    np.testing.assert_array_equal(train.labels[6:12], truth["data_batch_2"][1])
    assert train.classes[0] == "airplane"


def test_load_cifar10_from_env(tmp_path, monkeypatch):
    _make_cifar_dir(tmp_path)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert len(data.load("cifar10", "test")) == 6


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "b").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="builtins.print is not allowed"):
        read_batch(tmp_path / "b")


@pytest.mark.parametrize(
    "obj, match",
    [
        ([1, 2], "expected a dict"),
        ({b"labels": [1]}, "missing 'data'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"expected uint8 \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "labels outside"),
    ],
    ids=["list", "no-data", "bad-shape", "count-mismatch", "bad-label"],
)
def test_malformed_batches(tmp_path, obj, match):
    (tmp_path / "b").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError, match=match):
        read_batch(tmp_path / "b")


def test_truncated_batch(tmp_path):
    write_batch(tmp_path / "b", np.zeros((4, 3, 32, 32), np.uint8), [0, 1, 2, 3])
    raw = (tmp_path / "b").read_bytes()
    (tmp_path / "b").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="not a readable CIFAR-10"):
        read_batch(tmp_path / "b")


def test_missing_batches_named(tmp_path):
    with pytest.raises(DataError, match="missing data_batch_1, .*data_batch_5; unpack"):
        data.load("cifar10", "train", data_dir=tmp_path)
