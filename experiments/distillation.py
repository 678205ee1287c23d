"""distillation (seed 000; Papernot et al. 2016, Carlini & Wagner 2017): defensive
distillation looks robust to gradient attacks on its softmax — FGSM and PGD on the T = 1
cross-entropy mostly fail — while C&W on the logits and the decision-only boundary attack,
which never touch the saturated softmax, get through."""

from __future__ import annotations

import time

import torch

from adversarial import attacks, defenses
from adversarial.metrics import summary
from adversarial.oracle import Oracle
from experiments import register
from experiments.common import datasets, fit, linf_budget, tensors
from experiments.core import Context, Outcome, Row, verdict
from nets.train import TrainConfig

TEMPERATURES = (20, 100)


def _attack_table(net, x, y, eps: float, sizes: dict) -> dict:
    runs = {
        "fgsm": (attacks.build("fgsm", eps=eps), net),
        "pgd": (attacks.build("pgd", eps=eps, steps=sizes["pgd_steps"], restarts=2), net),
        "cw_logits": (attacks.build("cw", steps=sizes["cw_steps"], search_steps=4), net),
        "boundary": (
            attacks.build("boundary", steps=sizes["boundary_steps"]),
            Oracle(net, mode="labels"),
        ),  # fmt: skip
    }
    out = {}
    for name, (attack, target) in runs.items():
        # Boundary spends thousands of queries per image: it runs on the first images only.
        n = sizes["boundary_images"] if name == "boundary" else len(x)
        xs, ys = x[:n], y[:n]
        t0 = time.perf_counter()
        x_adv = attack(target, xs, ys)
        seconds = time.perf_counter() - t0
        s = summary(net, xs, ys, x_adv)
        out[name] = {
            "success_rate": s["success_rate"],
            "mean_l2": s["mean_l2"],  # over the successful perturbations
            "mean_linf": s["mean_linf"],
            "seconds": seconds,
            "images": n,
        }
    return out


@register(
    "distillation",
    summary="seed 000: defensive distillation (T 20, 100) vs FGSM/PGD, then C&W and boundary",
    quick_min=5,
    full_min=86,  # measured 2026-12-07 (85.5 min, loaded); `list` shows it from results/
    data="mnist-5k",
)
def run(ctx: Context) -> Outcome:
    eps = linf_budget(ctx.data)
    n_train = ctx.pick(tiny=300, quick=None, full=None)
    n_eval = ctx.pick(tiny=16, quick=200, full=1000)
    epochs = ctx.pick(tiny=1, quick=6, full=15)
    sizes = ctx.pick(
        tiny={"pgd_steps": 5, "cw_steps": 10, "boundary_steps": 20, "boundary_images": 16},
        quick={"pgd_steps": 40, "cw_steps": 100, "boundary_steps": 500, "boundary_images": 200},
        full={"pgd_steps": 100, "cw_steps": 200, "boundary_steps": 2000, "boundary_images": 200},
    )
    train_set, test_set = datasets(ctx, n_train, n_eval)
    x, y = tensors(test_set, ctx.device)
    cfg = TrainConfig(epochs=epochs, seed=ctx.seed)

    def one_model(t: int) -> dict:
        name = "undistilled" if t == 1 else f"T{t}"
        ctx.log(f"training {name}, then FGSM, PGD, C&W (logits) and boundary")
        defense = None if t == 1 else defenses.build("distillation", temperature=float(t))
        net, seconds = fit(ctx, "cnn", train_set, cfg, defense)
        with torch.no_grad():
            logit_scale = float(net(x).abs().amax(1).mean())
        return {
            "temperature": t,
            "train_seconds": seconds,
            "mean_max_abs_logit": logit_scale,
            "attacks": _attack_table(net, x, y, eps, sizes),
        }

    # each model (trained, then attacked) is a unit: --resume keeps the finished ones
    models = {
        ("undistilled" if t == 1 else f"T{t}"): ctx.unit(f"model-T{t}", lambda t=t: one_model(t))
        for t in (1, *TEMPERATURES)
    }
    u, d = models["undistilled"]["attacks"], models["T100"]["attacks"]
    metrics = {"eps": eps, "n_eval": len(x), "epochs": epochs, **sizes, "models": models}
    table = [
        Row(
            "FGSM success: undistilled → T 20 → T 100",
            "gradient attacks stop working (Papernot: 95.9 % → 0.45 %, JSMA)",
            "{models.undistilled.attacks.fgsm.success_rate:.3f} → "
            "{models.T20.attacks.fgsm.success_rate:.3f} → "
            "{models.T100.attacks.fgsm.success_rate:.3f}",
            verdict(d["fgsm"]["success_rate"] < 0.5 * u["fgsm"]["success_rate"]),
        ),
        Row(
            "PGD (CE on the softmax) success: undistilled → T 20 → T 100",
            "looks robust",
            "{models.undistilled.attacks.pgd.success_rate:.3f} → "
            "{models.T20.attacks.pgd.success_rate:.3f} → "
            "{models.T100.attacks.pgd.success_rate:.3f}",
            verdict(d["pgd"]["success_rate"] < 0.5 * u["pgd"]["success_rate"]),
        ),
        Row(
            "C&W L2 on logits: success, mean L2 (T 100 vs undistilled)",
            "gets through (Carlini & Wagner: 100 %)",
            "{models.T100.attacks.cw_logits.success_rate:.3f}, "
            "{models.T100.attacks.cw_logits.mean_l2:.2f} vs "
            "{models.undistilled.attacks.cw_logits.success_rate:.3f}, "
            "{models.undistilled.attacks.cw_logits.mean_l2:.2f}",
            verdict(d["cw_logits"]["success_rate"] >= 0.9),
        ),
        Row(
            "boundary (labels only): success, mean L2 (T 100 vs undistilled)",
            "gets through (seed 000: it ignores gradients)",
            "{models.T100.attacks.boundary.success_rate:.3f}, "
            "{models.T100.attacks.boundary.mean_l2:.2f} vs "
            "{models.undistilled.attacks.boundary.success_rate:.3f}, "
            "{models.undistilled.attacks.boundary.mean_l2:.2f}",
            verdict(d["boundary"]["success_rate"] >= 0.9),
        ),
        Row(
            "logit scale at T = 1 (mean max |logit|)",
            "≈ T times larger after distillation",
            "{models.undistilled.mean_max_abs_logit:.1f} → {models.T20.mean_max_abs_logit:.1f}"
            " → {models.T100.mean_max_abs_logit:.1f}",
            verdict(
                models["T100"]["mean_max_abs_logit"]
                > 5 * models["undistilled"]["mean_max_abs_logit"]
            ),
        ),
    ]
    differs = (
        f"Papernot et al. distilled a 9-layer MNIST network on 60,000 images and measured JSMA; "
        f"we distil our `cnn` on {len(train_set)} {ctx.data} images ({epochs} epochs for the "
        f"teacher and again for the student) and attack {len(x)} test images: FGSM and "
        f"PGD-{sizes['pgd_steps']}×2 at ε = {eps} on the deployed T = 1 cross-entropy, "
        f"C&W L2 ({sizes['cw_steps']} steps × 4 binary-search steps, unbounded) on the logits, "
        f"and the boundary attack ({sizes['boundary_steps']} steps per image, unbounded, on the "
        f"first {min(sizes['boundary_images'], len(x))} images: it is the slow one)."
        " Success counts images classified right before and wrong after; C&W and boundary are "
        "minimum-norm attacks, so compare their L2."
    )
    return Outcome(metrics, table, differs, title="Defensive distillation (seed 000)")
