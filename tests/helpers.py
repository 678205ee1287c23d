"""Helpers the test packages share: a command line run in process, small trained models."""

from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import dataclass

import torch
from rich.console import Console

from nets import data, models
from nets.cli_util import run_app
from nets.train import TrainConfig, train

QUIET = Console(quiet=True)
# commands registered on a package's app by modules its __main__ imports
EXTRA_COMMANDS = {"adversarial": ("backdoor_cli", "defense_cli", "evaluate_cli")}


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(package: str, *args: str) -> CliResult:
    """``python -m PACKAGE ARGS…`` in this process: the same app, exit code and output as
    the real command (``__main__`` is ``sys.exit(run_app(app))``) without the seconds a new
    interpreter spends importing torch. The entry point itself is run as a real process in
    tests/test_usage_errors.py, and by the server and environment tests that need one."""
    app = importlib.import_module(f"{package}.cli").app
    for module in EXTRA_COMMANDS.get(package, ()):  # what __main__ imports to register
        importlib.import_module(f"{package}.{module}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_app(app, [str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def train_small(name: str, train_set=None, *, epochs: int, seed: int = 0, lr: float = 5e-3,
                batch_size: int = 32, **options) -> torch.nn.Module:  # fmt: skip
    """A zoo model trained on the 8×8 digits (or ``train_set``), in eval mode."""
    train_set = train_set or data.load("digits", "train")
    torch.manual_seed(seed)
    net = models.build(name, train_set.shape, len(train_set.classes), **options)
    train(net, train_set, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr), console=QUIET)
    return net.eval()
