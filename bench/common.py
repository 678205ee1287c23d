"""Helpers every benchmark shares: timing a call, the model under test (a checkpoint, or
trained here with a seed), and torch float32's own timings as the plain baseline."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from rich.console import Console

from nets import checkpoint as ckpt_io
from nets import data, models
from nets.runinfo import seed_everything
from nets.train import TrainConfig, train


def timed(fn):
    """→ (fn(), seconds)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def peak_rss(fn) -> tuple[object, int, int]:
    """(fn(), peak RSS bytes while it ran, RSS before it): Linux's high-water mark, reset
    first (``/proc/self/clear_refs`` 5) — it sees SEAL's and numba's allocations, which
    tracemalloc does not."""

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    out = fn()
    return out, status("VmHWM"), before


def trained_model(
    model_name: str,
    data_name: str,
    checkpoint: str | None,
    seed: int,
    epochs: int,
    options: dict | None = None,
):
    """→ (net in eval mode, model name, what it is: the checkpoint's metrics or how it was
    trained here)."""
    if checkpoint:
        net, meta = ckpt_io.load(checkpoint)
        return net, meta.model_name, {"checkpoint": checkpoint, **meta.metrics}
    seed_everything(seed)
    train_set = data.load(data_name, "train")
    net = models.build(model_name, train_set.shape, len(train_set.classes), **(options or {}))
    result = train(
        net,
        train_set,
        TrainConfig(epochs=epochs, seed=seed),
        console=Console(stderr=True, quiet=True),
    )
    return net.eval(), model_name, {"trained_epochs": epochs, "train_s": result.train_seconds}


def plain_timings(net, images: np.ndarray) -> dict:
    """Torch float32 on the CPU: median batch-1 latency, per-image time at batch 1,000
    (the images repeated as needed), and the predictions."""
    with torch.no_grad():
        x1 = torch.from_numpy(images[:1])
        net(x1)
        t1 = statistics.median(timed(lambda: net(x1))[1] for _ in range(50))
        xb = torch.from_numpy(images[np.arange(1000) % len(images)])
        tb = statistics.median(timed(lambda: net(xb))[1] for _ in range(5))
        pred = net(torch.from_numpy(images)).argmax(1).numpy()
    return {
        "plain_torch_batch1_s": t1,
        "plain_torch_batch1000_per_image_s": tb / len(xb),
        "plain_pred": pred,
    }
