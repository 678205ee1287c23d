"""Device choice and the facts every run records: seed, versions, device."""

from __future__ import annotations

import platform
import random
from importlib import metadata

import numpy as np
import torch

from nets.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda[:i]`` fails clearly without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU on this machine; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def run_info(*, seed: int | None, device: torch.device | str) -> dict[str, object]:
    """JSON-ready record of what produced a result."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "seed": seed,
        "device": str(device),
        "device_name": name or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "cryptorobust": _version("cryptorobust"),
            "torch": str(torch.__version__),  # TorchVersion is a str subclass
            "numpy": np.__version__,
            "tenseal": _version("tenseal"),
            "numba": _version("numba"),
        },
        "platform": platform.platform(),
    }
