"""``python -m integer_nn``: quantise a checkpoint and compare float vs integer accuracy."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from integer_nn import io
from integer_nn.quantize import quantize
from nets import checkpoint, data
from nets.cli_util import make_app, result_table
from nets.errors import UserError
from nets.runinfo import run_info
from nets.train import predict

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
    data_dir: Annotated[Path | None, typer.Option(envvar=data.DATA_DIR_ENV)] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON.")
    ] = None,
) -> None:
    """Quantise a checkpoint; print float vs integer accuracy and per-layer bit widths."""
    model, ckpt = checkpoint.load(ckpt_path, "cpu")
    name = data_name or ckpt.data
    if calibration < 1:
        raise UserError(f"--calibration {calibration}: need at least 1 image")
    calib = data.load(name, "train", data_dir=data_dir).subset(calibration)
    test = data.load(name, "test", data_dir=data_dir).subset(n)
    if test.shape != ckpt.in_shape:
        raise UserError(
            f"{ckpt_path} takes images of shape {ckpt.in_shape}, {name} has {test.shape}"
        )
    t0 = time.perf_counter()
    int_model = quantize(
        model,
        calib.images,
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
    int_pred = int_model.predict(test.images)
    int_s = time.perf_counter() - t0
    rows = int_model.describe()
    result = {
        "model": ckpt.model_name,
        "data": name,
        "n_test": len(test),
        "weight_bits": weight_bits,
        "act_bits": act_bits,
        "square": square,
        "float_accuracy": float((float_pred == test.labels).mean()),
        "int_accuracy": float((int_pred == test.labels).mean()),
        "agreement": float((float_pred == int_pred).mean()),
        "max_accumulator_bits": int_model.max_accumulator_bits,
        "quantize_s": quantize_s,
        "int_eval_s": int_s,
        "layers": rows,
        "out": str(out),
        "run": run_info(seed=None, device="cpu"),
    }
    console.print(layer_table(rows))
    console.print(
        result_table(
            "float vs integer",
            {
                "model": ckpt.model_name,
                "data": f"{name} test ({len(test)} images)",
                "bits (weights / activations)": f"{weight_bits} / {act_bits}",
                "float accuracy": result["float_accuracy"],
                "integer accuracy": result["int_accuracy"],
                "prediction agreement": result["agreement"],
                "max accumulator bits": result["max_accumulator_bits"],
                "integer eval time": f"{int_s:.2f} s",
                "written": out,
            },
        )
    )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))


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
