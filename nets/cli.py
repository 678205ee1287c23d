"""``python -m nets``: train, evaluate and list models."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nets import checkpoint, data, models
from nets.cli_util import make_app, parse_options, result_table
from nets.errors import UserError
from nets.runinfo import DEVICE_CHOICES, resolve_device, run_info, seed_everything
from nets.train import TrainConfig, evaluate, train

app = make_app("Train, evaluate and list the model zoo.")
console = Console()

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar=data.DATA_DIR_ENV, help="Directory for mnist / cifar10 files."
    ),
]
Device = Annotated[str, typer.Option(help=f"One of {', '.join(DEVICE_CHOICES)} or cuda:N.")]


@app.command("models")
def list_models() -> None:
    """List the registered architectures and their options."""
    table = Table("model", "options", "description")
    for name in models.names():
        opts = ", ".join(f"{k}={v}" for k, v in models.options(name).items())
        table.add_row(name, opts, models.describe(name))
    console.print(table)


@app.command("train")
def train_cmd(
    model: Annotated[str, typer.Option(help="Architecture name (see `python -m nets models`).")],
    data_name: Annotated[str, typer.Option("--data", help=f"One of {', '.join(data.names())}.")],
    out: Annotated[Path, typer.Option(help="Where to write the checkpoint (.pt).")],
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 2e-3,
    optimizer: Annotated[str, typer.Option(help="adam or sgd.")] = "adam",
    schedule: Annotated[str, typer.Option(help="cosine, constant or step.")] = "cosine",
    weight_decay: float = 0.0,
    seed: int = 0,
    device: Device = "auto",
    arg: Annotated[
        list[str] | None, typer.Option(help="Model option KEY=VALUE (repeatable).")
    ] = None,
    n_train: Annotated[
        int | None, typer.Option(help="Use only the first N training images.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Train a model on a data set and write a checkpoint."""
    if model not in models.names():
        raise UserError(f"unknown model {model!r}; choose one of {', '.join(models.names())}")
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,  # type: ignore[arg-type]
        schedule=schedule,
        weight_decay=weight_decay,
        seed=seed,
    )  # type: ignore[arg-type]
    dev = resolve_device(device)
    model_args = parse_options(arg or [], models.options(model))
    train_set = data.load(data_name, "train", data_dir=data_dir).subset(n_train)
    test_set = data.load(data_name, "test", data_dir=data_dir)
    seed_everything(seed)  # the initial weights depend on the seed too
    net = models.build(model, train_set.shape, len(train_set.classes), **model_args)
    console.print(
        f"training {model} on {data_name} ({len(train_set)} images) for {epochs} "
        f"epoch(s) on {dev}, seed {seed}"
    )
    result = train(net, train_set, cfg, test_data=test_set, device=dev)
    metrics = {
        "test_accuracy": result.test_accuracy,
        "train_seconds": result.train_seconds,
        "n_train": len(train_set),
        "n_test": len(test_set),
    }
    ckpt = checkpoint.Checkpoint(
        model_name=model,
        model_args=model_args,
        in_shape=train_set.shape,
        num_classes=len(train_set.classes),
        classes=train_set.classes,
        data=data_name,
        metrics=metrics,
        history=result.history,
        run={**run_info(seed=seed, device=dev), "train_config": asdict(cfg)},
    )
    checkpoint.save(out, net, ckpt)
    console.print(
        result_table(
            "trained",
            {
                "model": model,
                "data": data_name,
                "epochs": epochs,
                "seed": seed,
                "device": str(dev),
                "test images": len(test_set),
                "test accuracy": result.test_accuracy,
                "train time": f"{result.train_seconds:.1f} s",
                "checkpoint": out,
            },
        )
    )


@app.command("eval")
def eval_cmd(
    path: Annotated[Path, typer.Argument(help="Checkpoint written by `train`.")],
    data_name: Annotated[
        str | None, typer.Option("--data", help="Data set (default: the training one).")
    ] = None,
    split: str = "test",
    n: Annotated[int | None, typer.Option(help="Evaluate only the first N images.")] = None,
    device: Device = "auto",
    data_dir: DataDir = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the result as JSON.")
    ] = None,
) -> None:
    """Evaluate a checkpoint's accuracy on a data set."""
    dev = resolve_device(device)
    net, ckpt = checkpoint.load(path, dev)
    name = data_name or ckpt.data
    dataset = data.load(name, split, data_dir=data_dir).subset(n)
    if dataset.shape != ckpt.in_shape:
        raise UserError(
            f"{path} expects images of shape {ckpt.in_shape} but {name} has "
            f"{dataset.shape}; evaluate it on a data set like {ckpt.data}"
        )
    acc = evaluate(net, dataset, device=dev)
    console.print(
        f"{ckpt.model_name} ({path}) on {name} {split}: accuracy {acc:.4f} "
        f"over {len(dataset)} images"
    )
    if json_out is not None:
        record = {
            "checkpoint": str(path),
            "model": ckpt.model_name,
            "data": name,
            "split": split,
            "n": len(dataset),
            "accuracy": acc,
            "run": run_info(seed=None, device=dev),
        }
        json_out.write_text(json.dumps(record, indent=2))
