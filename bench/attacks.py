"""``bench attacks``: our PGD-40, FGSM, C&W and AutoAttack against torchattacks 3.5.1, same
model, batch, seed.

Times are medians of alternating runs (ours, theirs, ours, …) so both see the same cache
and clock state; ``identical`` compares the adversarial images exactly. C&W: ours (binary
search over c, early abort) vs torchattacks' CW (fixed c, no search): success rate and
mean L2 of the successful examples, same images.
"""

from __future__ import annotations

import statistics
import time

import torch

from adversarial import attacks
from adversarial.metrics import summary
from bench import report
from bench.common import trained_model
from nets import data
from nets.runinfo import resolve_device, run_info


def _timed_seeded(fn, seed: int):
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(
    *,
    model_name: str,
    data_name: str,
    checkpoint: str | None,
    n: int,
    quick: bool,
    seed: int,
    epochs: int,
    device: str = "auto",
    aa_eps: float = 0.1,
) -> dict:
    import torchattacks

    dev = resolve_device(device)
    net, model_name, model_info = trained_model(model_name, data_name, checkpoint, seed, epochs)
    net = net.to(dev).eval()
    test = data.load(data_name, "test").subset(n)
    x = torch.from_numpy(test.images).to(dev)
    y = torch.from_numpy(test.labels).long().to(dev)
    repeats = 3 if quick else 5
    cases = {
        "pgd40": (
            attacks.build("pgd", eps=0.3, step=0.01, steps=40),
            torchattacks.PGD(net, eps=0.3, alpha=0.01, steps=40, random_start=True),
        ),
        "fgsm": (attacks.build("fgsm", eps=0.3), torchattacks.FGSM(net, eps=0.3)),
    }
    out: dict[str, dict] = {}
    for name, (ours, theirs) in cases.items():
        ours_t, theirs_t = [], []
        for r in range(repeats):
            a, dt = _timed_seeded(lambda ours=ours: ours(net, x, y), seed + r)
            ours_t.append(dt)
            b, dt = _timed_seeded(lambda theirs=theirs: theirs(x, y), seed + r)
            theirs_t.append(dt)
        out[name] = {
            "ours_s": statistics.median(ours_t),
            "torchattacks_s": statistics.median(theirs_t),
            "ratio": statistics.median(ours_t) / statistics.median(theirs_t),
            "identical": bool(torch.equal(a, b)),
            "max_abs_difference": float((a - b).abs().max()),
            "ours": summary(net, x, y, a),
            "torchattacks": summary(net, x, y, b),
        }
    k = min(len(x), 64 if quick else 256)
    ours_cw, ours_cw_s = _timed_seeded(
        lambda: attacks.build("cw", steps=100, search_steps=5)(net, x[:k], y[:k]), seed
    )
    theirs_cw, theirs_cw_s = _timed_seeded(
        lambda: torchattacks.CW(net, c=1, kappa=0, steps=100, lr=0.01)(x[:k], y[:k]), seed
    )
    out["cw"] = {
        "n_images": k,
        "ours_s": ours_cw_s,
        "torchattacks_s": theirs_cw_s,
        "ours": summary(net, x[:k], y[:k], ours_cw),
        "torchattacks": summary(net, x[:k], y[:k], theirs_cw),
        "note": "ours: binary search over c (5 steps × 100 Adam steps, early abort); "
        "torchattacks: c = 1 fixed, 100 steps",
    }
    out["autoattack"] = autoattack_row(
        net, x, y, eps=aa_eps, k=min(len(x), 64 if quick else 256), seed=seed
    )
    return {
        "benchmark": "attacks",
        "model": model_name,
        "data": data_name,
        "model_info": model_info,
        "n_images": len(x),
        "device": str(dev),
        "attacks": out,
        "quick": quick,
        "run": run_info(seed=seed, device=str(dev)),
    }


def autoattack_row(net, x, y, *, eps: float, k: int, seed: int) -> dict:
    """Standard AutoAttack, ours against torchattacks' on the same k images, one run each.

    The peer is composed from torchattacks' members with the paper's settings (APGD-CE,
    APGD-T over 9 targets, FAB-T over 9 targets: 100 iterations each; Square: 5,000
    queries) in its ``MultiAttack``, which attacks each member's survivors as AutoAttack
    does. Its ``AutoAttack`` class builds the same members with 10 iterations by default —
    a weaker attack than the paper's, so not the baseline.
    """
    import torchattacks

    from adversarial.attacks.autoattack import AutoAttack

    x, y = x[:k], y[:k]
    peer = torchattacks.MultiAttack(
        [
            torchattacks.APGD(net, eps=eps, steps=100, loss="ce", n_restarts=1, seed=seed),
            torchattacks.APGDT(net, eps=eps, steps=100, n_restarts=1, n_classes=10, seed=seed),
            torchattacks.FAB(net, eps=eps, steps=100, multi_targeted=True, n_classes=10, seed=seed),
            torchattacks.Square(net, eps=eps, n_queries=5000, n_restarts=1, seed=seed),
        ]
    )
    ours = AutoAttack(eps=eps, seed=seed)
    (ours_adv, breakdown), ours_s = _timed_seeded(lambda: ours.evaluate(net, x, y), seed)
    theirs_adv, theirs_s = _timed_seeded(lambda: peer(x, y), seed)
    ours_sum, theirs_sum = summary(net, x, y, ours_adv), summary(net, x, y, theirs_adv)
    return {
        "n_images": k,
        "eps": eps,
        "ours_s": ours_s,
        "torchattacks_s": theirs_s,
        "ratio": ours_s / theirs_s,
        "ours": ours_sum,
        "torchattacks": theirs_sum,
        "robust_accuracy_gap_points": 100
        * (ours_sum["robust_accuracy"] - theirs_sum["robust_accuracy"]),
        "ours_breakdown": breakdown.as_dict(),
        "note": "torchattacks: MultiAttack of APGD, APGDT, FAB (multi-targeted), Square with "
        "the paper's 100 iterations / 5,000 queries (its AutoAttack class defaults to 10)",
    }


def table(r: dict) -> str:
    """The markdown table ``bench attacks`` prints and writes beside its JSON."""
    a = r["attacks"]
    header = [
        "attack",
        "ours s",
        "torchattacks s",
        "ratio",
        "identical",
        "ours success",
        "theirs success",
        "ours robust acc",
        "theirs robust acc",
        "ours mean L2",
        "theirs mean L2",
    ]
    rows = [
        [
            name,
            c["ours_s"],
            c["torchattacks_s"],
            c.get("ratio", "-"),
            c.get("identical", "-"),
            c["ours"]["success_rate"],
            c["torchattacks"]["success_rate"],
            c["ours"]["robust_accuracy"],
            c["torchattacks"]["robust_accuracy"],
            c["ours"]["mean_l2"],
            c["torchattacks"]["mean_l2"],
        ]
        for name, c in a.items()
    ]
    md = (
        f"Attacks on {r['model']} ({r['data']}, {r['n_images']} images, {r['device']}); baseline: "
        "torchattacks 3.5.1, same model, batch and seed\n\n"
        + report.markdown_table(header, rows)
        + f"\nC&W: {a['cw']['note']} ({a['cw']['n_images']} images)\n"
        + (
            f"AutoAttack (L∞ ε = {a['autoattack']['eps']}, {a['autoattack']['n_images']} images): "
            f"{a['autoattack']['note']}; robust-accuracy gap "
            f"{a['autoattack']['robust_accuracy_gap_points']:+.1f} points\n"
            if "autoattack" in a
            else ""
        )
    )
    return md
