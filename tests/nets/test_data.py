import numpy as np
import pytest

from nets import data
from nets.errors import DataError
from nets.idx import write_idx


def _write_mnist_dir(folder, n_train=5, n_test=3, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    truth = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        truth[prefix] = (images, labels)
    return truth


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_mnist_from_data_dir(tmp_path, gz):
    truth = _write_mnist_dir(tmp_path, gz=gz)
    train = data.load("mnist", "train", data_dir=tmp_path)
    test = data.load("mnist", "test", data_dir=tmp_path)
    assert train.images.shape == (5, 1, 28, 28) and test.images.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(test.images[:, 0] * 255, truth["t10k"][0].astype(np.float32))
    np.testing.assert_array_equal(train.labels, truth["train"][1])
    assert train.labels.dtype == np.int64 and train.images.dtype == np.float32


def test_mnist_label_count_mismatch(tmp_path):
    _write_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_mnist_label_out_of_range(tmp_path):
    _write_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 12], np.uint8))
    with pytest.raises(DataError, match="labels outside 0..9"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_fashion_mnist_dir_override_missing_file(tmp_path):
    _write_mnist_dir(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="fashion-mnist is incomplete.*apt-get install"):
        data.load("fashion-mnist", "test", data_dir=tmp_path)


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        data.load("fashion-mnist", "test", data_dir=tmp_path / "nope")


def test_user_dataset_without_dir(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match=r"--data-dir DIR or set \$CRYPTOROBUST_DATA"):
        data.load("mnist", "train")


@pytest.mark.parametrize(
    "name, split, match",
    [
        ("imagenet", "train", "unknown data set 'imagenet'"),
        ("digits", "val", "unknown split 'val'"),
    ],
)
def test_unknown_names(name, split, match):
    with pytest.raises(DataError, match=match):
        data.load(name, split)


def test_fashion_mnist_real_files():
    test = data.load("fashion-mnist", "test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == np.float32
    assert test.images.min() == 0.0 and test.images.max() == 1.0
    assert np.bincount(test.labels).tolist() == [1000] * 10  # the published test set is balanced
    assert test.classes[9] == "Ankle boot"


@pytest.mark.slow
def test_fashion_mnist_real_train():
    train = data.load("fashion-mnist", "train")
    assert train.images.shape == (60000, 1, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10


def test_mnist_5k_split_is_fixed_stratified_and_disjoint():
    train, test = data.load("mnist-5k", "train"), data.load("mnist-5k", "test")
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    flat_train = {row.tobytes() for row in (train.images * 255).astype(np.uint8)}
    overlap = sum(row.tobytes() in flat_train for row in (test.images * 255).astype(np.uint8))
    assert overlap <= 5  # MNIST holds a handful of exact duplicates, not a leaked split
    again = data.load("mnist-5k", "test")
    np.testing.assert_array_equal(again.images, test.images)


def test_digits_split():
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert train.images.shape == (1437, 1, 8, 8) and len(test) == 360
    assert train.images.max() == 1.0 and train.images.min() == 0.0


def test_subset():
    test = data.load("digits", "test")
    assert len(test.subset(10)) == 10 and test.subset(None) is test and test.subset(10**6) is test
