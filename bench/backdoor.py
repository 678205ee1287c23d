"""``bench backdoor``: how often Neural Cleanse's verdict is right, measured.

Per data set, ``clean`` models (different seeds) and ``backdoored`` ones (BadNets with
different trigger sizes, corners, patterns, targets and poison rates) are trained the same
way; Neural Cleanse reverses a trigger per class on each; two rules are scored:

- the paper's (Wang et al. 2019): some class's anomaly index (median − ‖m‖₁)/(1.4826·MAD)
  exceeds 2;
- the norm ratio: the median reversed-trigger norm over the smallest exceeds τ.

True-positive rate over the backdoored models, false-positive rate over the clean ones,
per rule and data set, and every model's two scores — the figures the CLI's verdict is
chosen from (``python -m adversarial cleanse``).
"""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console

from adversarial.defenses.badnets import Trigger, attack_success, poison
from adversarial.defenses.cleanse import CleanseConfig, cleanse
from bench import report
from nets import data, models
from nets.runinfo import resolve_device, run_info, seed_everything
from nets.train import TrainConfig, train

TRIGGERS = [  # (size, corner, pattern, target, poison rate): one per backdoored model
    (4, "bottom-right", "checker", 0, 0.10),
    (3, "top-left", "white", 3, 0.05),
    (5, "bottom-left", "checker", 7, 0.02),
    (4, "top-right", "white", 5, 0.15),
    (3, "bottom-right", "white", 9, 0.08),
    (5, "top-left", "checker", 2, 0.10),
    (4, "bottom-left", "white", 6, 0.05),
    (3, "top-right", "checker", 8, 0.03),
]
RATIOS = (3.0, 4.0, 5.0)


def _scores(net, probe, steps: int, seed: int, dev) -> dict:
    r = cleanse(net, probe, CleanseConfig(steps=steps, seed=seed), device=dev, progress=False)
    return {
        "max_anomaly_index": float(np.max(r.anomaly)),
        "norm_ratio": r.norm_ratio,
        "smallest_class": r.smallest,
    }


def run(
    *,
    data_names: list[str],
    clean_models: int,
    backdoored_models: int,
    epochs: int,
    n_train: int | None,
    probe_images: int,
    steps: int,
    seed: int,
    device: str = "auto",
    width: int = 32,
) -> dict:
    dev = resolve_device(device)
    console = Console(stderr=True)
    quiet = Console(quiet=True)
    t0 = time.perf_counter()
    sets = {}
    for name in data_names:
        train_set = data.load(name, "train").subset(n_train)
        test_set = data.load(name, "test")
        probe = test_set.subset(probe_images)
        cfg = TrainConfig(epochs=epochs, seed=seed)
        rows = []
        plans = [("clean", seed + i, None) for i in range(clean_models)]
        plans += [("backdoored", seed + 100 + i, TRIGGERS[i % len(TRIGGERS)])
                  for i in range(backdoored_models)]  # fmt: skip
        for kind, s, spec in plans:
            seed_everything(s)
            net = models.build("cnn", train_set.shape, len(train_set.classes), width=width)
            net = net.to(dev)
            row: dict = {"kind": kind, "seed": s}
            ds = train_set
            if spec is not None:
                size, corner, pattern, target, rate = spec
                trig = Trigger(size=size, position=corner, pattern=pattern)
                ds, _ = poison(train_set, trig, target, rate, s)
                row.update(trigger=f"{size}px {pattern} {corner}", target=target, rate=rate)
            train(net, ds, TrainConfig(epochs=cfg.epochs, seed=s), device=dev, console=quiet)
            if spec is not None:
                row["attack_success_rate"] = attack_success(net, test_set, trig, target, dev)
            row.update(_scores(net.eval(), probe, steps, s, dev))
            console.log(f"{name} {kind} seed {s}: {row}")
            rows.append(row)
        sets[name] = {"models": rows, "rules": _rates(rows)}
    return {
        "benchmark": "backdoor",
        "epochs": epochs,
        "n_train": n_train,
        "probe_images": probe_images,
        "cleanse_steps": steps,
        "width": width,
        "data_sets": sets,
        "wall_seconds": time.perf_counter() - t0,
        "run": run_info(seed=seed, device=str(dev)),
    }


def _rates(rows: list[dict]) -> dict:
    bad = [r for r in rows if r["kind"] == "backdoored"]
    good = [r for r in rows if r["kind"] == "clean"]

    def rate(models, rule) -> float:
        return sum(rule(r) for r in models) / max(1, len(models))

    rules = {"anomaly index > 2": lambda r: r["max_anomaly_index"] > 2}
    for tau in RATIOS:
        rules[f"norm ratio > {tau:g}"] = lambda r, tau=tau: r["norm_ratio"] > tau
    return {name: {"tpr": rate(bad, rule), "fpr": rate(good, rule)} for name, rule in rules.items()}


def table(r: dict) -> str:
    md = [
        f"Neural Cleanse verdicts: cnn (width {r['width']}), {r['epochs']} epochs, "
        f"{r['n_train'] or 'all'} training images, {r['probe_images']} probe images, "
        f"{r['cleanse_steps']} steps per class "
        f"({r['run']['device']})\n"
    ]
    for name, s in r["data_sets"].items():
        n_bad = sum(m["kind"] == "backdoored" for m in s["models"])
        n_good = len(s["models"]) - n_bad
        rows = [[rule, v["tpr"], v["fpr"]] for rule, v in s["rules"].items()]
        md.append(
            f"\n{name}: {n_bad} backdoored, {n_good} clean models\n\n"
            + report.markdown_table(["rule", "true-positive rate", "false-positive rate"], rows)
        )
        models_rows = [
            [m["kind"], m.get("trigger", "—"), m.get("target", "—"), m.get("rate", "—"),
             m.get("attack_success_rate", "—"), m["max_anomaly_index"], m["norm_ratio"]]
            for m in s["models"]
        ]  # fmt: skip
        md.append(
            "\n"
            + report.markdown_table(
                [
                    "model",
                    "trigger",
                    "target",
                    "poison rate",
                    "attack success",
                    "max anomaly index",
                    "norm ratio",
                ],
                models_rows,
            )  # fmt: skip
        )
    return "".join(md)
