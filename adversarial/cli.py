"""``python -m adversarial attack``: run one attack on a trained checkpoint's test images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from rich.console import Console

from adversarial import attacks
from adversarial.attacks.generator import target_grid
from adversarial.base import AttackError, least_likely
from adversarial.metrics import predictions, summary
from adversarial.oracle import Oracle
from adversarial.plots import attack_grid
from adversarial.plots import target_grid as plot_grid
from nets import checkpoint, data
from nets.cli_util import make_app, parse_options, result_table, write_json
from nets.errors import UserError
from nets.runinfo import resolve_device, run_info, seed_everything

app = make_app("Adversarial attacks, defenses and experiments.")
console = Console()


@app.callback()
def main() -> None:
    """Adversarial robustness in the clear (PyTorch, CPU or GPU)."""


def _targets(mode: str, model, x: torch.Tensor, y: torch.Tensor, k: int, seed: int):
    if mode == "none":
        return None
    if mode == "least-likely":
        return least_likely(model, x)
    if mode == "random":  # any class but the true one
        gen = torch.Generator().manual_seed(seed)
        shift = torch.randint(1, k, (len(y),), generator=gen).to(y.device)
        return (y + shift) % k
    if mode.isdigit() and int(mode) < k:
        return torch.full_like(y, int(mode))
    raise UserError(f"--targeted {mode}: choose none, least-likely, random or a class 0–{k - 1}")


@app.command("attack")
def attack_cmd(
    model_path: Annotated[Path, typer.Option("--model", help="A trained checkpoint (.pt).")],
    attack: Annotated[str, typer.Option(help="Attack name (see `attacks`).")] = "pgd",
    eps: Annotated[
        float | None, typer.Option(help="Perturbation budget (bounded attacks).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Iterations (iterative attacks).")] = None,
    n: Annotated[int, typer.Option(help="Test images attacked.")] = 1000,
    targeted: Annotated[
        str, typer.Option(help="none, least-likely, random, or a class index.")
    ] = "none",
    arg: Annotated[
        list[str] | None, typer.Option(help="Attack option KEY=VALUE (repeatable).")
    ] = None,
    batch_size: int = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: int = 0,
    out: Annotated[
        Path | None, typer.Option(help="PNG grid (default runs/attacks/NAME.png).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the metrics as JSON.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(envvar="CRYPTOROBUST_DATA")] = None,
) -> None:
    """Clean and robust accuracy, success rate, mean norms, queries and time; a PNG grid."""
    if attack not in attacks.names():
        raise UserError(f"--attack {attack}: unknown; choose one of {', '.join(attacks.names())}")
    if n < 1:
        raise UserError(f"--n {n}: attack at least one image")
    seed_everything(seed)
    dev = resolve_device(device)
    net, meta = checkpoint.load(model_path)
    net = net.to(dev).eval()
    test = data.load(meta.data, "test", data_dir=data_dir).subset(n)
    spec = attacks.entry(attack)
    accepted = spec.options()
    options = parse_options(arg or [], accepted, f"attack {attack}", spec.types())
    for name, value in (("eps", eps), ("steps", steps)):
        if value is not None:
            if name not in accepted:
                raise UserError(
                    f"--{name}: attack {attack} has no {name}; it takes {', '.join(accepted)}"
                )
            options[name] = value
    try:
        runner = attacks.build(attack, **options)
    except AttackError as exc:
        raise UserError(str(exc)) from None
    x_all = torch.from_numpy(test.images).to(dev)
    y_all = torch.from_numpy(test.labels).long().to(dev)
    k = len(test.classes)
    oracle = None if runner.needs_gradients else Oracle(net)
    t0 = time.perf_counter()
    adv, targets = [], []
    for i in range(0, len(x_all), batch_size):
        x, y = x_all[i : i + batch_size], y_all[i : i + batch_size]
        target = _targets(targeted, net, x, y, k, seed + i)
        adv.append(runner(oracle or net, x, y, target))
        targets.append(target)
    elapsed = time.perf_counter() - t0
    x_adv = torch.cat(adv)
    target_all = None if targeted == "none" else torch.cat(targets)
    metrics = summary(net, x_all, y_all, x_adv, target_all)
    metrics.update(
        attack=attack,
        options=options,
        targeted=targeted,
        n_images=len(x_all),
        seconds=elapsed,
        queries=oracle.queries if oracle else None,
        queries_per_image=(oracle.queries / len(x_all)) if oracle else None,
        model=str(model_path),
        data=meta.data,
        run=run_info(seed=seed, device=str(dev)),
    )
    rows = {
        key: (f"{v:.4f}" if isinstance(v, float) else v)
        for key, v in metrics.items()
        if key not in ("run", "options")
    }
    console.print(result_table(f"{attack} on {model_path.name}", rows))
    png = attack_grid(
        x_all.cpu().numpy(),
        x_adv.cpu().numpy(),
        y_all.cpu().numpy(),
        predictions(net, x_adv).cpu().numpy(),
        test.classes,
        out or Path("runs/attacks") / f"{attack}.png",
    )
    console.print(f"grid: {png}")
    write_json(json_out, metrics)


@app.command("attacks")
def attacks_cmd() -> None:
    """The attacks and their options."""
    for name in attacks.names():
        options = attacks.options(name)
        console.print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in options.items()))


@app.command("generator-grid")
def generator_grid_cmd(
    model_path: Annotated[Path, typer.Option("--model", help="A trained checkpoint (.pt).")],
    sources: Annotated[
        int, typer.Option(help="Source images: the first test image of classes 0…S−1.")
    ] = 5,
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/generator"),
    seed: int = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    data_dir: Annotated[Path | None, typer.Option(envvar="CRYPTOROBUST_DATA")] = None,
) -> None:
    """The generator attack: every source image aimed at every class; grid, metrics, report."""
    seed_everything(seed)
    dev = resolve_device(device)
    net, meta = checkpoint.load(model_path)
    net = net.to(dev).eval()
    test = data.load(meta.data, "test", data_dir=data_dir)
    k = len(test.classes)
    if not 1 <= sources <= k:
        raise UserError(f"--sources {sources}: choose 1 to {k}")
    picks = [int(np.flatnonzero(test.labels == c)[0]) for c in range(sources)]
    grid = target_grid(
        net, torch.from_numpy(test.images[picks]).to(dev), [int(test.labels[i]) for i in picks], k
    )
    metrics = {
        "model": str(model_path),
        "data": meta.data,
        **grid.metrics(),
        "run": run_info(seed=seed, device=str(dev)),
    }
    elapsed = metrics["seconds"]
    png = plot_grid(
        grid.sources.cpu().numpy(), grid.images.cpu().numpy(), grid.reached.cpu().numpy(),
        test.classes, out / "grid.png",
    )  # fmt: skip
    write_json(out / "metrics.json", metrics)
    (out / "report.md").write_text(
        f"# Generator attack on {model_path.name} ({meta.data})\n\n"
        f"{sources} sources × {k} targets: target reached for {metrics['target_success']:.1%} "
        f"of pairs ({metrics['target_success_other_classes']:.1%} of the {sources * (k - 1)} "
        f"pairs aiming at another class), mean L2 {metrics['mean_l2']:.2f}, "
        f"{elapsed:.1f} s.\n\n![grid](grid.png)\n"
    )
    console.print(
        result_table("generator attack", {k_: v for k_, v in metrics.items() if k_ != "run"})
    )
    console.print(f"grid: {png}")
