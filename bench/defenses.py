"""``bench defenses``: what each training defense costs and buys, one run, one model.

Wall time of every training defense against standard training of the same model, data
and epochs (free training runs epochs/m epochs of m replays: the same passes); clean
accuracy and robust accuracy on the same test images under AutoAttack (the headline),
PGD-20×5 and APGD-CE alone (whether APGD-CE is at least as strong as PGD-20×5);
randomized-smoothing certification throughput (images/s at n samples) against the
sampling loop of Cohen et al.'s reference code (``core.py``: batches of noisy copies,
counts accumulated one prediction at a time), same model, σ, n and batch size. Published
anchors are printed beside ours (different data sizes and epochs: the report says so).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from rich.console import Console

from adversarial import defenses
from adversarial.attacks.pgd import LinfPGD
from adversarial.defenses.judge import accuracy
from adversarial.defenses.smoothing import Smoothed
from adversarial.evaluation import robust_accuracy
from bench import report
from nets import data, models
from nets.runinfo import resolve_device, run_info, seed_everything
from nets.train import TrainConfig, train

PUBLISHED = {
    "madry-mnist": "Madry 2018, MNIST ε 0.3: 89.6 % under 100-step PGD, 50 restarts",
    "trades-mnist": "Zhang 2019 (TRADES), MNIST ε 0.3: 99.48 % clean, 92.5 % robust",
    "wong-cifar": (
        "Wong 2020, CIFAR-10 ε 8/255: FGSM-RS 46.06 % in 12 min, free 46.33 % in 785 min, "
        "PGD-7 45.80 % in 4,966 min"
    ),
    "cohen-cifar": (
        "Cohen 2019, CIFAR-10 σ 0.25: certified 0.60 / 0.42 / 0.24 at r 0.25 / 0.5 / 0.75"
    ),
}


def _methods(eps: float, epochs: int) -> dict[str, object]:
    ramp = max(1, epochs // 4)  # ε warm-up over the first quarter (large ε from scratch)
    return {
        "standard": None,
        "pgd-at (7 steps)": defenses.build("pgd-at", eps=eps, steps=7, ramp_epochs=ramp),
        "free (m = 4)": defenses.build("free", eps=eps, replays=4),
        "free (m = 8)": defenses.build("free", eps=eps, replays=8),
        "fgsm-rs": defenses.build("fgsm-rs", eps=eps),
        "trades": defenses.build("trades", eps=eps, steps=7),
    }


def cohen_reference_counts(model, x, sigma: float, n: int, batch: int, k: int) -> np.ndarray:
    """The sampling loop of Cohen et al.'s ``core.py`` (``_sample_noise`` + ``_count_arr``)."""
    counts = np.zeros(k, dtype=int)
    with torch.no_grad():
        remaining = n
        for _ in range(math.ceil(n / batch)):
            this = min(batch, remaining)
            remaining -= this
            batch_x = x.repeat((this, 1, 1, 1))
            noise = torch.randn_like(batch_x) * sigma
            predictions = model(batch_x + noise).argmax(1)
            for idx in predictions.cpu().numpy():
                counts[idx] += 1
    return counts


def run(
    *,
    data_name: str,
    model_name: str,
    eps: float,
    epochs: int,
    n_train: int | None,
    eval_n: int,
    certify_images: int,
    certify_n: int,
    seed: int,
    device: str = "auto",
) -> dict:
    dev = resolve_device(device)
    train_set = data.load(data_name, "train").subset(n_train)
    test = data.load(data_name, "test").subset(eval_n)
    x, y = torch.from_numpy(test.images).to(dev), torch.from_numpy(test.labels).long().to(dev)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, seed=seed)
    pgd = LinfPGD(eps=eps, step=eps / 4, steps=20, restarts=5)
    quiet = Console(quiet=True)
    rows = {}
    warm = models.build(model_name, train_set.shape, len(train_set.classes)).to(dev)
    train(warm, train_set.subset(512), TrainConfig(epochs=1), device=dev, console=quiet)  # warm-up
    for name, defense in _methods(eps, epochs).items():
        seed_everything(seed)
        net = models.build(model_name, train_set.shape, len(train_set.classes)).to(dev)
        t0 = time.perf_counter()
        if defense is None:
            train(net, train_set, cfg, device=dev, console=quiet)
        else:
            defense.fit(net, train_set, cfg, device=dev, console=quiet)
        seconds = time.perf_counter() - t0
        adv = torch.cat([pgd(net, x[i : i + 256], y[i : i + 256]) for i in range(0, len(x), 256)])
        aa = robust_accuracy(net, x, y, eps=eps, attack="autoattack", seed=seed)
        apgd = robust_accuracy(net, x, y, eps=eps, attack="apgd-ce", seed=seed)
        rows[name] = {
            "train_seconds": seconds,
            "clean_accuracy": accuracy(net, x, y),
            "autoattack_robust_accuracy": aa["robust_accuracy"],
            "autoattack_broken_by": aa["broken_by"],
            "pgd20x5_robust_accuracy": accuracy(net, adv, y),
            "apgd_ce_robust_accuracy": apgd["robust_accuracy"],
        }
        rows[name]["apgd_ce_at_least_as_strong_as_pgd"] = (
            apgd["robust_accuracy"] <= rows[name]["pgd20x5_robust_accuracy"]
        )
        if name == "standard":
            standard_net = net
    base = rows["standard"]["train_seconds"]
    for row in rows.values():
        row["time_vs_standard"] = row["train_seconds"] / base
    pgd_time = rows["pgd-at (7 steps)"]["train_seconds"]
    for row in rows.values():
        row["time_vs_pgd_at"] = row["train_seconds"] / pgd_time
    # certification throughput, same (standard) model: ours vs Cohen's reference loop
    k = len(test.classes)
    smoothed = Smoothed(standard_net.eval(), 0.25, k, batch_size=1000)
    images = x[:certify_images]
    t0 = time.perf_counter()
    for i, img in enumerate(images):
        smoothed.certify(img, 100, certify_n, 0.001, torch.Generator().manual_seed(i))
    ours = certify_images / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for img in images:
        cohen_reference_counts(standard_net, img, 0.25, 100, 1000, k)
        cohen_reference_counts(standard_net, img, 0.25, certify_n, 1000, k)
    theirs = certify_images / (time.perf_counter() - t0)
    return {
        "data": data_name,
        "model": model_name,
        "eps": eps,
        "epochs": epochs,
        "n_train": len(train_set),
        "eval_images": len(x),
        "training": rows,
        "certify": {
            "n": certify_n,
            "images": certify_images,
            "ours_images_per_s": ours,
            "cohen_reference_images_per_s": theirs,
            "ratio": ours / theirs,
        },
        "published": PUBLISHED,
        "run": run_info(seed=seed, device=str(dev)),
    }


def table(r: dict) -> str:
    """The markdown table ``bench defenses`` prints and writes beside its JSON."""
    header = ["method", "train s", "× standard", "× PGD-AT", "clean", "AutoAttack robust",
              "PGD-20×5 robust", "APGD-CE robust", "APGD-CE ≥ PGD"]  # fmt: skip
    rows = [
        [name, c["train_seconds"], c["time_vs_standard"], c["time_vs_pgd_at"],
         c["clean_accuracy"], c["autoattack_robust_accuracy"], c["pgd20x5_robust_accuracy"],
         c["apgd_ce_robust_accuracy"], "yes" if c["apgd_ce_at_least_as_strong_as_pgd"] else "NO"]
        for name, c in r["training"].items()
    ]  # fmt: skip
    c = r["certify"]
    md = (
        f"Defenses: {r['model']} on {r['data']} ({r['n_train']} training images, "
        f"{r['epochs']} epochs, ε = {r['eps']}, {r['eval_images']} test images attacked; "
        f"{r['run']['device']}); baseline: standard training of the same model\n\n"
        + report.markdown_table(header, rows)
        + f"\nCertification (σ 0.25, n {c['n']}): ours {c['ours_images_per_s']:.2f} images/s, "
        f"Cohen et al.'s reference sampling loop {c['cohen_reference_images_per_s']:.2f} "
        f"images/s: {c['ratio']:.2f}×\n\nPublished (other data sizes and schedules):\n"
        + "".join(f"- {v}\n" for v in r["published"].values())
    )
    return md
