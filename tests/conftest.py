"""Fixtures shared across packages.

One torch thread per test process, and one for every process a test starts (servers, their
workers, CLI runs): the suite's models are tiny, so a second thread buys nothing, while two
processes that each spin two OpenMP threads on a 2-core machine ran 10× slower (measured:
a 20-epoch digits training took 97 s instead of 7.8 s beside one other busy process).
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"  # children inherit it; set before torch starts its pool

import pytest  # noqa: E402
import torch  # noqa: E402
from rich.console import Console

from nets import checkpoint, data, models
from nets.runinfo import run_info
from nets.train import TrainConfig, train

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """The 8×8 digits (scikit-learn's, shipped with it): (train, test)."""
    return data.load("digits", "train"), data.load("digits", "test")


@pytest.fixture(scope="session")
def digits_cnn():
    """A small CNN (width 16, depth 2) trained 10 epochs on the digits, in eval mode: the
    model the attack tests attack. Shared: nothing may train or modify it in place."""
    from tests.helpers import train_small

    return train_small("cnn", epochs=10, lr=2e-3, width=16, depth=2)


def train_digits_mlp(path, *, act: str, seed: int, epochs: int):
    """A small MLP (8 hidden units) trained on the 8x8 digits and saved at ``path``."""
    torch.manual_seed(seed)
    net = models.build("mlp", (1, 8, 8), 10, hidden=8, layers=1, act=act)
    train(
        net,
        data.load("digits", "train"),
        TrainConfig(epochs=epochs, batch_size=32, lr=5e-3),
        console=Console(quiet=True),
    )
    meta = checkpoint.Checkpoint(
        "mlp",
        {"hidden": 8, "layers": 1, "act": act},
        (1, 8, 8),
        10,
        data.DIGIT_CLASSES,
        "digits",
        run=run_info(seed=seed, device="cpu"),
    )
    return checkpoint.save(path, net, meta)


@pytest.fixture(scope="session")
def square_mlp_checkpoint(tmp_path_factory):
    """A small x²-activation MLP trained on the 8x8 digits, saved once per test session."""
    path = tmp_path_factory.mktemp("shared") / "digits-mlp.pt"
    return train_digits_mlp(path, act="square", seed=0, epochs=8)


@pytest.fixture(scope="session")
def digits_mlp_trainer():
    """``train_digits_mlp`` for tests that need another activation or seed."""
    return train_digits_mlp
