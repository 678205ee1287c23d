"""``python -m integer_nn``: quantise a checkpoint (after training, or with quantisation in
the training loop) and compare float vs integer accuracy."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from integer_nn import io, qat
from integer_nn.model import IntModel
from integer_nn.quantize import quantize
from nets import checkpoint, data
from nets.cli_util import make_app, result_table, write_json
from nets.errors import UserError
from nets.runinfo import resolve_device, run_info
from nets.train import TrainConfig, predict

app = make_app("Integer-domain networks: quantise, inspect.")
console = Console()


def layer_table(rows: list[dict[str, object]]) -> Table:
    table = Table("layer", "op", "worst-case range", "acc bits", "observed range", "obs bits")
    for r in rows:
        observed = f"[{r['observed_lo']}, {r['observed_hi']}]" if "observed_lo" in r else "-"
        table.add_row(
            str(r["name"]),
            str(r["op"]),
            f"[{r['worst_lo']}, {r['worst_hi']}]",
            str(r["accumulator_bits"]),
            observed,
            str(r.get("observed_bits", "-")),
        )
    return table


def _inputs(ckpt_path: Path, data_name, calibration: int, n, data_dir):
    """→ (float model, its checkpoint, data name, calibration images, test set, train set)."""
    model, ckpt = checkpoint.load(ckpt_path, "cpu")
    name = data_name or ckpt.data
    if calibration < 1:
        raise UserError(f"--calibration {calibration}: need at least 1 image")
    train_set = data.load(name, "train", data_dir=data_dir)
    test = data.load(name, "test", data_dir=data_dir).subset(n)
    if test.shape != ckpt.in_shape:
        raise UserError(
            f"{ckpt_path} takes images of shape {ckpt.in_shape}, {name} has {test.shape}"
        )
    return model, ckpt, name, train_set.subset(calibration).images, test, train_set


def _accuracy(int_model: IntModel, test: data.Dataset) -> tuple[np.ndarray, float]:
    pred = int_model.predict(test.images)
    return pred, float((pred == test.labels).mean())


@app.command("quantize")
def quantize_cmd(
    ckpt_path: Annotated[
        Path, typer.Argument(metavar="MODEL.pt", help="Checkpoint from `nets train`.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the .int.npz file.")],
    data_name: Annotated[
        str | None, typer.Option("--data", help="Data set (default: training one).")
    ] = None,
    weight_bits: int = 8,
    act_bits: int = 8,
    square: Annotated[
        str, typer.Option(help="x² as 'exact' polynomial or as a 'table'.")
    ] = "exact",
    calibration: Annotated[int, typer.Option(help="Training images used to calibrate.")] = 2000,
    n: Annotated[int | None, typer.Option(help="Evaluate on the first N test images only.")] = None,
    qat_epochs: Annotated[
        int,
        typer.Option(
            help="Also fine-tune with quantisation-aware training for this many epochs and "
            "report its accuracy beside post-training's (the file written stays post-training)."
        ),
    ] = 0,
    seed: int = 0,
    data_dir: Annotated[Path | None, typer.Option(envvar=data.DATA_DIR_ENV)] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON.")
    ] = None,
) -> None:
    """Quantise a checkpoint; print float vs integer accuracy and per-layer bit widths."""
    if qat_epochs < 0:
        raise UserError(f"--qat-epochs {qat_epochs}: give 0 (none) or more epochs")
    model, ckpt, name, calib, test, train_set = _inputs(
        ckpt_path, data_name, calibration, n, data_dir
    )
    t0 = time.perf_counter()
    int_model = quantize(
        model,
        calib,
        weight_bits=weight_bits,
        act_bits=act_bits,
        square=square,
        classes=ckpt.classes,
    )  # type: ignore[arg-type]
    quantize_s = time.perf_counter() - t0
    int_model.meta.update(source=str(ckpt_path), model=ckpt.model_name, data=name)
    io.save(int_model, out)
    float_pred = predict(model, test.images)
    t0 = time.perf_counter()
    int_pred, int_acc = _accuracy(int_model, test)
    int_s = time.perf_counter() - t0
    rows = int_model.describe()
    result: dict[str, object] = {
        "model": ckpt.model_name,
        "data": name,
        "n_test": len(test),
        "weight_bits": weight_bits,
        "act_bits": act_bits,
        "square": square,
        "float_accuracy": float((float_pred == test.labels).mean()),
        "int_accuracy": int_acc,
        "ptq_accuracy": int_acc,
        "agreement": float((float_pred == int_pred).mean()),
        "max_accumulator_bits": int_model.max_accumulator_bits,
        "quantize_s": quantize_s,
        "int_eval_s": int_s,
        "layers": rows,
        "out": str(out),
        "run": run_info(seed=seed, device="cpu"),
    }
    summary = {
        "model": ckpt.model_name,
        "data": f"{name} test ({len(test)} images)",
        "bits (weights / activations)": f"{weight_bits} / {act_bits}",
        "float accuracy": result["float_accuracy"],
        "integer accuracy": result["int_accuracy"],
        "prediction agreement": result["agreement"],
        "max accumulator bits": result["max_accumulator_bits"],
        "integer eval time": f"{int_s:.2f} s",
        "written": out,
    }
    if qat_epochs:
        if square != "exact":
            raise UserError("--qat-epochs keeps x² exact; drop --square table")
        config = qat.QATConfig(weight_bits=weight_bits, act_bits=act_bits)
        qat_model, info = qat.fine_tune(
            model,
            train_set,
            calib,
            config,
            TrainConfig(epochs=qat_epochs, lr=1e-3, seed=seed),
            classes=ckpt.classes,
        )
        _, qat_acc = _accuracy(qat_model, test)
        result.update(
            qat_accuracy=qat_acc,
            qat_max_accumulator_bits=qat_model.max_accumulator_bits,
            qat={k: v for k, v in info.items() if k != "history"} | {"history": info["history"]},
        )
        summary.update(
            {
                "QAT integer accuracy": qat_acc,
                "QAT max accumulator bits": qat_model.max_accumulator_bits,
                "QAT fine-tuning": f"{qat_epochs} epoch(s), {info['train_s']:.1f} s",
            }
        )
    console.print(layer_table(rows))
    console.print(result_table("float vs integer", summary))
    write_json(json_out, result)


@app.command("qat")
def qat_cmd(
    ckpt_path: Annotated[
        Path, typer.Argument(metavar="MODEL.pt", help="Float checkpoint from `nets train`.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the .int.npz file.")],
    bits: Annotated[int, typer.Option(help="Weight and activation bits.")] = 4,
    weight_bits: Annotated[int | None, typer.Option(help="Weight bits (default --bits).")] = None,
    act_bits: Annotated[int | None, typer.Option(help="Activation bits (default --bits).")] = None,
    input_bits: Annotated[
        int | None, typer.Option(help="Pixel bits (default: the activation bits).")
    ] = None,
    acc_bits: Annotated[
        int | None,
        typer.Option(
            help="Keep every layer's worst-case accumulator within this many signed bits "
            "(e.g. 39 so the logits fit one 40-bit BFV plaintext prime)."
        ),
    ] = None,
    per_channel: Annotated[
        bool | None,
        typer.Option(
            "--per-channel/--per-tensor",
            help="Per-output-channel weight scales where the next layer absorbs them "
            "(default: with --acc-bits only, where they measured better).",
        ),
    ] = None,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    data_name: Annotated[
        str | None, typer.Option("--data", help="Data set (default: training one).")
    ] = None,
    calibration: Annotated[int, typer.Option(help="Training images used to calibrate.")] = 2000,
    n: Annotated[int | None, typer.Option(help="Evaluate on the first N test images only.")] = None,
    n_train: Annotated[
        int | None, typer.Option(help="Fine-tune on the first N training images only.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    data_dir: Annotated[Path | None, typer.Option(envvar=data.DATA_DIR_ENV)] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON.")
    ] = None,
) -> None:
    """Fine-tune a float checkpoint with quantisation in the loop; write the exact IntModel
    and print float, post-training and quantisation-aware accuracy side by side."""
    config = qat.QATConfig(
        weight_bits=weight_bits or bits,
        act_bits=act_bits or bits,
        input_bits=input_bits,
        per_channel=per_channel,
        acc_bits=acc_bits,
    )
    train_cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    dev = resolve_device(device)
    model, ckpt, name, calib, test, train_set = _inputs(
        ckpt_path, data_name, calibration, n, data_dir
    )
    ptq = quantize(
        model, calib, weight_bits=config.weight_bits, act_bits=config.act_bits, classes=ckpt.classes
    )
    float_pred = predict(model, test.images)
    int_model, info = qat.fine_tune(
        model,
        train_set.subset(n_train),
        calib,
        config,
        train_cfg,
        classes=ckpt.classes,
        device=str(dev),
    )
    int_model.meta.update(
        source=str(ckpt_path), model=ckpt.model_name, data=name, seed=seed, epochs=epochs
    )
    io.save(int_model, out)
    qat_pred, qat_acc = _accuracy(int_model, test)
    _, ptq_acc = _accuracy(ptq, test)
    rows = int_model.describe()
    float_acc = float((float_pred == test.labels).mean())
    result = {
        "model": ckpt.model_name,
        "data": name,
        "n_test": len(test),
        **{k: v for k, v in dataclasses.asdict(config).items()},
        "input_bits": config.in_bits,
        "per_channel": config.channel_scales,
        "float_accuracy": float_acc,
        "ptq_accuracy": ptq_acc,
        "qat_accuracy": qat_acc,
        "int_accuracy": qat_acc,
        "qat_minus_float": qat_acc - float_acc,
        "agreement": float((qat_pred == float_pred).mean()),
        "ptq_max_accumulator_bits": ptq.max_accumulator_bits,
        "max_accumulator_bits": int_model.max_accumulator_bits,
        "max_value_bits": int_model.max_value_bits,
        "ptq_max_value_bits": ptq.max_value_bits,
        "row_caps": int_model.meta.get("row_l1_caps"),
        "layers": rows,
        "fine_tuning": info,
        "out": str(out),
        "run": run_info(seed=seed, device=dev),
    }
    console.print(layer_table(rows))
    budget = f" (budget {acc_bits})" if acc_bits else ""
    console.print(
        result_table(
            "float vs post-training vs quantisation-aware",
            {
                "model": ckpt.model_name,
                "data": f"{name} test ({len(test)} images)",
                "bits (weights / activations / inputs)": (
                    f"{config.weight_bits} / {config.act_bits} / {config.in_bits}"
                ),
                "float accuracy": float_acc,
                "post-training integer accuracy": ptq_acc,
                "quantisation-aware integer accuracy": qat_acc,
                "max accumulator bits (post-training)": ptq.max_accumulator_bits,
                f"max value bits (QAT){budget}": int_model.max_value_bits,
                "max accumulator bits (QAT, with partial sums)": int_model.max_accumulator_bits,
                "fine-tuning": f"{epochs} epoch(s), {info['train_s']:.1f} s on {dev}",
                "written": out,
            },
        )
    )
    write_json(json_out, result)


@app.command("describe")
def describe_cmd(path: Annotated[Path, typer.Argument(help="An .int.npz file.")]) -> None:
    """Print an IntModel's layers, ranges and accumulator bits."""
    model = io.load(path)
    console.print(layer_table(model.describe()))
    console.print(
        result_table(
            "model",
            {
                "input": f"{model.in_shape}, {model.input_bits} bits",
                "output scale": f"{model.output_scale:.6g}",
                **{k: str(v) for k, v in model.meta.items()},
            },
        )
    )
