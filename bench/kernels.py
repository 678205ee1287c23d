"""``bench kernels``: images/s of one IntModel (its kernels: exact float layers through torch
where the range analysis proves float32/float64 exact, numba int64 elsewhere), through the
numpy reference, and of the same float model through torch on the CPU — in one run.

Speed does not depend on the weights' values, so without ``--checkpoint`` the model is a
freshly initialised one (seeded), quantised with calibration images from the data set.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from bench import report
from integer_nn import quantize, reference
from nets import checkpoint as ckpt_io
from nets import data, models
from nets.runinfo import run_info, seed_everything


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()  # inference only; the caller's grad mode is given back
def run(
    *,
    model_name: str,
    data_name: str,
    checkpoint: str | None,
    batch_sizes: list[int],
    quick: bool,
    seed: int,
) -> dict:
    seed_everything(seed)
    test = data.load(data_name, "test")
    if checkpoint:
        net, meta = ckpt_io.load(checkpoint)
        model_name = meta.model_name
    else:
        net = models.build(
            model_name,
            test.shape,
            len(test.classes),
            **({"act": "relu"} if "act" in models.options(model_name) else {}),
        )
    net.eval()
    calib = data.load(data_name, "train").subset(500).images
    int_model = quantize(net, calib, square="table")
    rows = {}
    for bs in batch_sizes:
        idx = np.arange(bs) % len(test)
        x_float = test.images[idx]
        x_int = int_model.quantize_input(x_float)
        x_torch = torch.from_numpy(x_float)
        int_model.forward(x_int[:2])  # compile the numba kernels outside the timing
        fast = int_model.forward(x_int)
        ref = reference.forward(int_model, x_int)
        reps_fast = 5 if bs > 64 else 200
        reps_ref = (1 if quick else 3) if bs > 64 else 50
        net(x_torch)  # warm-up
        t_numba = _median_seconds(
            lambda x=x_int: int_model.forward(x), 3 if quick and bs > 64 else reps_fast
        )
        t_numpy = _median_seconds(lambda x=x_int: reference.forward(int_model, x), reps_ref)
        t_torch = _median_seconds(lambda x=x_torch: net(x), reps_fast)
        rows[str(bs)] = {
            "numba_images_per_s": bs / t_numba,
            "numpy_images_per_s": bs / t_numpy,
            "torch_images_per_s": bs / t_torch,
            "numba_over_numpy": t_numpy / t_numba,
            "numba_over_torch": t_torch / t_numba,
            "identical_to_reference": bool(np.array_equal(fast, ref)),
        }
    return {
        "benchmark": "kernels",
        "model": model_name,
        "data": data_name,
        "checkpoint": checkpoint,
        "layers": [op.describe() for op in int_model.ops],
        "quick": quick,
        "batches": rows,
        "run": run_info(seed=seed, device="cpu"),
    }


def table(result: dict) -> str:
    """The markdown table ``bench kernels`` prints and writes beside its JSON."""
    header = [
        "batch",
        "IntModel img/s",
        "numpy img/s",
        "torch img/s",
        "IntModel/numpy",
        "IntModel/torch",
        "exact",
    ]
    rows = [
        [
            bs,
            r["numba_images_per_s"],
            r["numpy_images_per_s"],
            r["torch_images_per_s"],
            r["numba_over_numpy"],
            r["numba_over_torch"],
            r["identical_to_reference"],
        ]
        for bs, r in result["batches"].items()
    ]
    md = (
        f"IntModel kernels: {result['model']} on {result['data']} "
        f"(baseline: numpy int64 reference, torch float32 CPU)\n\n"
        + report.markdown_table(header, rows)
    )
    return md
