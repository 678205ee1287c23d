"""Fixtures shared across packages."""

import pytest
import torch
from rich.console import Console

from nets import checkpoint, data, models
from nets.runinfo import run_info
from nets.train import TrainConfig, train


@pytest.fixture(scope="session")
def square_mlp_checkpoint(tmp_path_factory):
    """A small x²-activation MLP trained on the 8x8 digits, saved once per test session."""
    path = tmp_path_factory.mktemp("shared") / "digits-mlp.pt"
    torch.manual_seed(0)
    net = models.build("mlp", (1, 8, 8), 10, hidden=8, layers=1, act="square")
    train(
        net,
        data.load("digits", "train"),
        TrainConfig(epochs=8, batch_size=32, lr=5e-3),
        console=Console(quiet=True),
    )
    meta = checkpoint.Checkpoint(
        "mlp",
        {"hidden": 8, "layers": 1, "act": "square"},
        (1, 8, 8),
        10,
        data.DIGIT_CLASSES,
        "digits",
        run=run_info(seed=0, device="cpu"),
    )
    return checkpoint.save(path, net, meta)
