"""``python -m adversarial evaluate MODEL.pt``: RobustBench-style robust accuracy of a
checkpoint — AutoAttack by default — with the per-attack breakdown, time and device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from adversarial.attacks.autoattack import CLEAN, ROBUST
from adversarial.base import AttackError
from adversarial.cli import app, console
from adversarial.evaluation import ATTACKS, THREATS, robust_accuracy
from nets import checkpoint, data
from nets.cli_util import result_table, write_json
from nets.errors import UserError
from nets.runinfo import resolve_device, run_info, seed_everything


@app.command("evaluate")
def evaluate_cmd(
    model_path: Annotated[Path, typer.Argument(help="A trained checkpoint (.pt).")],
    threat: Annotated[str, typer.Option(help="linf or l2.")] = "linf",
    eps: Annotated[float, typer.Option(help="Radius of the threat ball (MNIST L∞: 0.3).")] = 0.3,
    n: Annotated[int, typer.Option(help="First N test images.")] = 1000,
    attack: Annotated[str, typer.Option(help=f"One of {', '.join(ATTACKS)}.")] = "autoattack",
    square_queries: Annotated[int, typer.Option(help="Square's query budget.")] = 5000,
    batch_size: int = 500,
    seed: int = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result.")] = None,
    data_dir: Annotated[Path | None, typer.Option(envvar="CRYPTOROBUST_DATA")] = None,
) -> None:
    """Clean accuracy, robust accuracy under the attack, who broke which point, time."""
    if threat not in THREATS:
        raise UserError(f"--threat {threat}: choose linf or l2")
    if not eps >= 0:
        raise UserError(f"--eps {eps}: the radius must be ≥ 0")
    if attack not in ATTACKS:
        raise UserError(f"--attack {attack}: choose one of {', '.join(ATTACKS)}")
    if n < 1 or batch_size < 1 or square_queries < 1:
        raise UserError(
            f"--n {n}, --batch-size {batch_size}, --square-queries {square_queries}: "
            "each must be ≥ 1"
        )
    seed_everything(seed)
    dev = resolve_device(device)
    net, meta = checkpoint.load(model_path)
    net = net.to(dev).eval()
    test = data.load(meta.data, "test", data_dir=data_dir).subset(n)
    x = torch.from_numpy(test.images).to(dev)
    y = torch.from_numpy(test.labels).long().to(dev)
    try:
        result = robust_accuracy(
            net, x, y, eps=eps, norm=threat, attack=attack, seed=seed,
            batch_size=batch_size, square_queries=square_queries, progress=True,
        )  # fmt: skip
    except AttackError as exc:
        raise UserError(str(exc)) from None
    result.update(model=str(model_path), data=meta.data, run=run_info(seed=seed, device=str(dev)))
    rows = {
        "clean accuracy": f"{result['clean_accuracy']:.4f}",
        f"robust accuracy ({attack}, {threat} ε = {eps:g})": f"{result['robust_accuracy']:.4f}",
        **{
            (k if k in (CLEAN, ROBUST) else f"broken by {k}"): v
            for k, v in result["broken_by"].items()
        },
        **{f"seconds: {k}": f"{v:.1f}" for k, v in result["seconds"].items()},
        "wall seconds": f"{result['wall_seconds']:.1f}",
        "images": result["n_images"],
        "device": result["run"]["device_name"] + f" ({dev})",
    }
    console.print(result_table(f"{model_path.name} on {meta.data}", rows))
    write_json(json_out, result)
