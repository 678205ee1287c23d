"""``python -m adversarial defend | certify | defenses``: the defenses' commands.

Every command runs on any device (``--device auto|cpu|cuda``), records seed, versions and
device, prints a result table and writes JSON on request.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from adversarial import defenses
from adversarial.attacks.pgd import LinfPGD
from adversarial.cli import app, console
from adversarial.defenses.base import DefenseError
from nets import checkpoint, data, models
from nets.cli_util import parse_options, result_table, write_json
from nets.data import Dataset
from nets.errors import UserError
from nets.runinfo import resolve_device, run_info, seed_everything
from nets.train import TrainConfig

Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
DataDir = Annotated[Path | None, typer.Option(envvar="CRYPTOROBUST_DATA")]
ADAPTED = {"distillation": "margin", "jpeg": "bpda", "squeeze": "bpda", "smoothing": "eot"}


def select_classes(ds: Dataset, classes: str | None) -> Dataset:
    """Only the listed classes (``"0,1,2,3"``), relabelled 0…k−1 in that order."""
    if not classes:
        return ds
    try:
        keep = [int(c) for c in classes.split(",")]
    except ValueError:
        raise UserError(f"--classes {classes!r}: give class indices like 0,1,2,3") from None
    if len(set(keep)) != len(keep) or not all(0 <= c < len(ds.classes) for c in keep):
        raise UserError(f"--classes {classes}: distinct indices in 0–{len(ds.classes) - 1}")
    mask = np.isin(ds.labels, keep)
    relabel = {c: i for i, c in enumerate(keep)}
    labels = np.array([relabel[int(c)] for c in ds.labels[mask]], dtype=np.int64)
    names = tuple(ds.classes[c] for c in keep)
    return Dataset(ds.name, ds.split, ds.images[mask], labels, names)


def _model(spec: str, data_name: str | None, model_args: list[str] | None, data_dir, classes):
    """A checkpoint path (→ its model and data set) or an architecture name (→ untrained)."""
    if spec.endswith(".pt"):
        if not Path(spec).is_file():
            raise UserError(f"--model {spec}: no such checkpoint")
        net, meta = checkpoint.load(spec)
        name = data_name or meta.data
        return net, meta.model_name, dict(meta.model_args), name
    if spec not in models.names():
        raise UserError(f"--model {spec}: a checkpoint (.pt) or one of {', '.join(models.names())}")
    if not data_name:
        raise UserError("--data is needed when --model names an architecture")
    shape_set = select_classes(data.load(data_name, "test", data_dir=data_dir), classes)
    args = parse_options(model_args or [], models.options(spec))
    net = models.build(spec, shape_set.shape, len(shape_set.classes), **args)
    return net, spec, args, data_name


def _options(method: str, pairs: list[str]) -> dict:
    """``--arg k=v`` typed by the defense's own defaults (None defaults parse as floats)."""
    defaults = asdict(defenses.build(method))
    return parse_options(pairs, {k: (0.0 if v is None else v) for k, v in defaults.items()})


def _tensor(ds: Dataset, dev):
    return torch.from_numpy(ds.images).to(dev), torch.from_numpy(ds.labels).long().to(dev)


@app.command("defenses")
def defenses_cmd() -> None:
    """The defenses and their options."""
    for name in defenses.names():
        d = defenses.build(name)
        options = ", ".join(f"{k}={v}" for k, v in asdict(d).items())
        console.print(f"{name} ({d.kind}): {options}")


@app.command("defend")
def defend_cmd(
    method: Annotated[str, typer.Option(help="Defense name (see `defenses`).")],
    model: Annotated[str, typer.Option(help="An architecture (train) or a checkpoint (.pt).")],
    data_name: Annotated[str | None, typer.Option("--data", help="Data set name.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where the defended checkpoint goes.")] = None,
    arg: Annotated[list[str] | None, typer.Option(help="Defense option KEY=VALUE.")] = None,
    model_arg: Annotated[list[str] | None, typer.Option(help="Model option KEY=VALUE.")] = None,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 2e-3,
    n_train: Annotated[int | None, typer.Option(help="First N training images.")] = None,
    eval_n: Annotated[int, typer.Option(help="Test images attacked when judging.")] = 500,
    budget: Annotated[
        str,
        typer.Option(
            help="Judging attacks' strength: full (PGD-20×5, AutoAttack with Square 5,000, "
            "Square 1,000, Boundary 200) or quick (fewer steps: a smoke check only)."
        ),
    ] = "full",
    eps: Annotated[float, typer.Option(help="L∞ budget of the judging attacks.")] = 0.1,
    classes: Annotated[str | None, typer.Option(help="Only these classes: 0,1,2,3.")] = None,
    seed: int = 0,
    device: Device = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Metrics as JSON.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Train (or wrap) a model with a defense, then judge it: clean accuracy, AutoAttack
    (the headline), PGD-20×5, the attack adapted to the defense, score- and decision-only
    black boxes, and the gradient-masking check."""
    from adversarial.defenses.judge import BUDGETS, judge

    if budget not in BUDGETS:
        raise UserError(f"--budget {budget}: choose {' or '.join(BUDGETS)}")
    if method not in defenses.names():
        raise UserError(f"--method {method}: unknown; choose one of {', '.join(defenses.names())}")
    seed_everything(seed)
    dev = resolve_device(device)
    try:
        defense = defenses.build(method, **_options(method, arg or []))
    except DefenseError as exc:
        raise UserError(str(exc)) from None
    net, arch, model_args, data_name = _model(model, data_name, model_arg, data_dir, classes)
    train_set = select_classes(data.load(data_name, "train", data_dir=data_dir), classes)
    train_set = train_set.subset(n_train)
    test_set = select_classes(data.load(data_name, "test", data_dir=data_dir), classes)
    net = net.to(dev)
    base = None
    t0 = time.perf_counter()
    history: list = []
    generator_before = None
    from adversarial.defenses.generator_at import generator_success

    if method == "generator-at":  # the seed's bonus: the generator's success before/after
        generator_before = generator_success(net, test_set, seed, dev)
    if defense.kind == "train":
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        net, result = defense.fit(net, train_set, cfg, test_data=test_set, device=dev)
        history = result.history
        defended = net
        if method == "smoothing":  # judged as the smoothed classifier (EOT in its forward)
            from adversarial.defenses.smoothing import Smoothed

            defended = Smoothed(net, defense.sigma, len(test_set.classes))
    else:
        if not model.endswith(".pt"):
            raise UserError(f"--method {method} wraps a trained model: give --model CKPT.pt")
        base = net.eval()
        defended = defense.wrap(base).to(dev)
    seconds = time.perf_counter() - t0
    x, y = _tensor(test_set.subset(eval_n), dev)
    report = judge(
        defended, x, y, eps=eps, adapted=ADAPTED.get(method, "none"), base=base,
        **BUDGETS[budget],
    )  # fmt: skip
    report["budget"] = budget
    if method == "squeeze":
        report["detection"] = _detection(defended, x, y, eps, seed)
    if generator_before is not None:
        report["generator_success_before"] = generator_before
        report["generator_success_after"] = generator_success(net, test_set, seed, dev)
    metrics = {
        "method": method,
        "options": asdict(defense),
        "model": arch,
        "data": data_name,
        "train_seconds": seconds,
        **report,
        "run": run_info(seed=seed, device=str(dev)),
    }
    if out is not None and defense.kind == "train":
        ckpt = checkpoint.Checkpoint(
            model_name=arch,
            model_args=model_args,
            in_shape=test_set.shape,
            num_classes=len(test_set.classes),
            classes=test_set.classes,
            data=data_name,
            metrics={
                "test_accuracy": report["clean_accuracy"],
                "robust_accuracy": report["worst_case_robust_accuracy"],
            },
            history=history,
            run={**metrics["run"], "defense": method, "defense_options": asdict(defense)},
        )
        checkpoint.save(out, net, ckpt)
        metrics["checkpoint"] = str(out)
    rows = {"method": method, "clean accuracy": report["clean_accuracy"]}
    rows["robust accuracy (AutoAttack, headline)"] = report["autoattack_robust_accuracy"]
    rows |= {f"robust: {k}": v for k, v in report["robust_accuracy"].items()}
    rows["gradient masking suspected"] = report["gradient_masking_suspected"]
    if generator_before is not None:
        rows["generator success before → after"] = (
            f"{generator_before:.2f} → {report['generator_success_after']:.2f}"
        )
    rows["time (train or wrap)"] = f"{seconds:.1f} s"
    console.print(result_table(f"{method} on {data_name} (ε = {eps})", rows))
    if report["gradient_masking_suspected"]:
        console.print("gradient masking suspected: a black box beats the white-box attacks")
    write_json(json_out, metrics)


def _detection(detector, x, y, eps: float, seed: int) -> dict:
    """Feature squeezing: threshold at 5 % false positives on half the clean images,
    detection rate of successful adversarial examples of each attack on the other half."""
    from adversarial import attacks

    half = len(x) // 2
    threshold = detector.calibrate(x[:half], 0.05)
    xs, ys = x[half:], y[half:]
    out = {"threshold": threshold, "false_positive_rate": float(detector.detect(xs).float().mean())}
    for name, attack in (
        ("fgsm", attacks.build("fgsm", eps=eps)),
        ("pgd-20", LinfPGD(eps=eps, step=eps / 4, steps=20)),
        ("cw-l2", attacks.build("cw", steps=50, search_steps=3)),
    ):
        x_adv = attack(detector.model, xs, ys)
        with torch.no_grad():
            fooled = detector.model(x_adv).argmax(1) != ys
        flagged = detector.detect(x_adv)
        out[name] = float(flagged[fooled].float().mean()) if fooled.any() else None
    return out


@app.command("certify")
def certify_cmd(
    model: Annotated[Path, typer.Option(help="A checkpoint trained with noise (smoothing).")],
    sigma: Annotated[float, typer.Option(help="Noise level σ of the smoothed classifier.")],
    n: Annotated[int, typer.Option(help="Samples that bound p_A.")] = 10_000,
    n0: Annotated[int, typer.Option(help="Samples that pick the class.")] = 100,
    alpha: Annotated[float, typer.Option(help="Failure probability.")] = 0.001,
    images: Annotated[int, typer.Option(help="Test images certified.")] = 100,
    batch_size: int = 1000,
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/certify"),
    seed: int = 0,
    device: Device = "auto",
    data_dir: DataDir = None,
) -> None:
    """Certify test images (Cohen et al. 2019): certified accuracy against L2 radius (PNG),
    smoothed prediction accuracy, abstention rate, images/s."""
    from adversarial.defenses.smoothing import (
        ABSTAIN,
        Smoothed,
        certified_accuracy,
        certify_dataset,
    )
    from adversarial.plots import certified_curve

    if sigma <= 0 or n < 1 or n0 < 1 or not 0 < alpha < 0.5 or images < 1:
        raise UserError("need --sigma > 0, --n ≥ 1, --n0 ≥ 1, 0 < --alpha < 0.5, --images ≥ 1")
    dev = resolve_device(device)
    net, meta = checkpoint.load(model)
    net = net.to(dev).eval()
    test = data.load(meta.data, "test", data_dir=data_dir).subset(images)
    smoothed = Smoothed(net, sigma, len(test.classes), batch_size=batch_size)
    t0 = time.perf_counter()
    rows = certify_dataset(
        smoothed, test.images, test.labels, n0=n0, n=n, alpha=alpha, seed=seed, device=dev
    )
    elapsed = time.perf_counter() - t0
    radii = np.linspace(0, 4 * sigma, 41)
    curve = certified_accuracy(rows, radii)
    png = certified_curve({f"σ = {sigma}": (radii, curve)}, out / "certified.png")
    metrics = {
        "model": str(model),
        "data": meta.data,
        "sigma": sigma,
        "n": n,
        "n0": n0,
        "alpha": alpha,
        "images": len(rows),
        "certified_accuracy_at": {f"{r:.2f}": float(a) for r, a in zip(radii, curve, strict=True)},
        "abstained": sum(r["predicted"] == ABSTAIN for r in rows) / len(rows),
        "images_per_second": len(rows) / elapsed,
        "seconds": elapsed,
        "rows": rows,
        "run": run_info(seed=seed, device=str(dev)),
    }
    write_json(out / "metrics.json", metrics)
    table = {f"certified at r = {r:.2f}": float(a) for r, a in zip(radii, curve, strict=True)}
    table = {k: v for i, (k, v) in enumerate(table.items()) if i % 5 == 0}
    table |= {"abstained": metrics["abstained"], "images/s": metrics["images_per_second"]}
    console.print(result_table(f"randomized smoothing σ = {sigma}, n = {n}", table))
    console.print(f"curve: {png}")
