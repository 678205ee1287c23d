"""Fixtures shared across packages."""

import pytest
import torch
from rich.console import Console

from nets import checkpoint, data, models
from nets.runinfo import run_info
from nets.train import TrainConfig, train


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
