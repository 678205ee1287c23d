"""``python -m bench``: each benchmark prints its table and writes JSON + markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown

from bench import report

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmarks: ratios measured in one run against a named baseline.",
)
console = Console()


@app.callback()
def main() -> None:
    """Benchmarks."""


@app.command("kernels")
def kernels_cmd(
    model: Annotated[
        str, typer.Option(help="Architecture (random init, relu) when no checkpoint.")
    ] = "lenet-shallow",
    data_name: Annotated[str, typer.Option("--data")] = "fashion-mnist",
    checkpoint: Annotated[str | None, typer.Option(help="Use this trained model instead.")] = None,
    batch: Annotated[list[int] | None, typer.Option(help="Batch sizes (repeatable).")] = None,
    quick: Annotated[bool, typer.Option(help="Fewer repeats of the slow reference.")] = False,
    seed: int = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """IntModel images/s: numba vs the numpy int64 reference vs torch float32 on CPU."""
    from bench import kernels

    result = kernels.run(
        model_name=model,
        data_name=data_name,
        checkpoint=checkpoint,
        batch_sizes=batch or [1, 1024],
        quick=quick,
        seed=seed,
    )
    header = [
        "batch",
        "numba img/s",
        "numpy img/s",
        "torch img/s",
        "numba/numpy",
        "numba/torch",
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
    console.print(Markdown(md))
    report.write(result, json_out, md)
