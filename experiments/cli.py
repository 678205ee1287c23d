"""``python -m experiments``: list the experiments, run one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import experiments
from experiments import index
from experiments.core import execute, make_context
from nets.cli_util import make_app, parse_options
from nets.errors import UserError
from nets.runinfo import DEVICE_CHOICES

app = make_app("The seeds' published figures, one command each, ours beside theirs.")
console = Console()


@app.callback()
def main() -> None:
    """Experiments."""


RESULTS = Path("results")


@app.command("list")
def list_cmd(
    json_out: Annotated[bool, typer.Option("--json")] = False,
    results: Annotated[Path, typer.Option(help="Committed full-mode results.")] = RESULTS,
) -> None:
    """Every experiment, its default data and time on 2 CPU cores: measured where a
    full-mode result is committed under results/, else the estimate (~)."""
    rows = [experiments.get(n) for n in experiments.names()]
    measured = {e.name: index.measured_minutes(results / e.name) for e in rows}
    if json_out:
        console.print_json(
            json.dumps(
                [
                    {
                        "name": e.name,
                        "summary": e.summary,
                        "data": e.data,
                        **e.minutes,
                        "full_measured": measured[e.name],
                    }
                    for e in rows
                ]
            )  # fmt: skip
        )
        return
    table = Table()
    table.add_column("name", no_wrap=True)  # a name is what a user types: never cut
    for header in ("what it reproduces", "data", "--quick", "full", "--arg"):
        table.add_column(header)
    for e in rows:
        full = measured[e.name]
        table.add_row(
            e.name, e.summary, e.data, f"~{e.minutes['quick']:g} min",
            f"{full:.0f} min (measured)" if full is not None else f"~{e.minutes['full']:g} min",
            ", ".join(f"{k}={v}" for k, v in e.options.items()),
        )  # fmt: skip
    # a pipe or a file has no width: rich would wrap at 80 columns; give the table its own
    out = console if console.is_terminal else Console(width=200)
    out.print(table)


@app.command("index")
def index_cmd(
    results: Annotated[Path, typer.Option(help="The results folder to index.")] = RESULTS,
) -> None:
    """Write results/README.md: one row per committed result, from its metrics.json."""
    if not results.is_dir():
        raise UserError(f"{results}: no such folder; run an experiment with --out {results}/NAME")
    path = index.write_index(results)
    console.print(f"wrote {path}")


@app.command("partial")
def partial_cmd(
    folder: Annotated[Path, typer.Argument(help="The --out folder of a run that did not finish.")],
    missing: Annotated[str, typer.Option(help="What the run did not finish, in words.")],
) -> None:
    """Publish an unfinished run's kept units as a partial result (metrics.json, report.md):
    for runs longer than a session; ``run --resume`` later replaces it with the full one."""
    from experiments import partial

    metrics = partial.publish(folder, missing=missing)
    console.print(
        f"{folder}/report.md, metrics.json: {len(metrics['kept_units'])} unit(s), partial"
    )


@app.command("run")
def run_cmd(
    name: Annotated[str, typer.Argument(help="An experiment (python -m experiments list).")],
    quick: Annotated[bool, typer.Option(help="Fewer images and epochs (≤ 10 min).")] = False,
    tiny: Annotated[bool, typer.Option(hidden=True, help="Smoke-test sizes.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    data: Annotated[str | None, typer.Option(help="Data set (default: the experiment's).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    seed: int = 0,
    data_dir: Annotated[
        Path | None, typer.Option(envvar="CRYPTOROBUST_DATA", help="User data sets (CIFAR-10).")
    ] = None,
    ray: Annotated[bool, typer.Option(help="Run grid cells as Ray tasks (local).")] = False,
    resume: Annotated[
        bool, typer.Option(help="Keep the finished units (grid cells, images) of a killed run.")
    ] = False,
    ray_address: Annotated[str | None, typer.Option(help="An existing Ray cluster.")] = None,
    arg: Annotated[
        list[str] | None, typer.Option("--arg", help="Experiment option KEY=VALUE (see list).")
    ] = None,
) -> None:
    """Run one experiment: metrics.json, report.md and PNGs in --out."""
    if device not in DEVICE_CHOICES and not device.startswith("cuda:"):
        raise UserError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    if quick and tiny:
        raise UserError("--quick and --tiny are exclusive; pick one")
    exp = experiments.get(name)
    options = parse_options(arg or [], exp.options, what=f"experiment {name}")
    mode = "tiny" if tiny else "quick" if quick else "full"
    ctx = make_context(
        name, out=out, mode=mode, device=device, data=data, seed=seed, data_dir=data_dir, ray=ray,
        ray_address=ray_address, options=options, console=console, resume=resume,
    )  # fmt: skip
    if mode != "tiny":
        console.print(
            f"[bold]{name}[/] ({mode}): expected ~{exp.minutes[mode]:g} min on 2 CPU cores; "
            f"writing {ctx.out}/"
        )
    metrics = execute(exp.run, ctx, exp.data)
    table = Table("figure", "published", "ours", "holds?", title=f"{name} ({mode})")
    for row in metrics["table"]:
        table.add_row(row["figure"], row["published"], row["ours"], row["holds"])
    console.print(table)
    console.print(f"{ctx.out}/report.md, metrics.json ({metrics['wall_s']:.0f} s)")
