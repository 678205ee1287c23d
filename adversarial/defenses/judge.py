"""How every defense is judged: clean accuracy, robust accuracy under AutoAttack (the
headline, as the field reports it), under PGD with restarts (beside it, labelled), under an
attack adapted to the defense, and under score-only and decision-only black boxes — and
the gradient-masking check: a black box that beats the white box means the
white box was fooled by the defense's gradients, not stopped by its robustness.

Adapted attacks (Athalye, Carlini & Wagner 2018; Tramèr et al. 2020):
- distillation: PGD on the C&W logit margin (the softmax is saturated at T = 1);
- JPEG, feature squeezing: BPDA — their wrappers pass gradients straight through, so PGD
  on the wrapper is the adapted attack; a PGD transferred from the bare model is the
  naive one, reported beside it;
- randomized smoothing: EOT — PGD on the expectation over noise (the wrapper's forward).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from adversarial import attacks
from adversarial.attacks.pgd import LinfPGD
from adversarial.evaluation import robust_accuracy
from adversarial.oracle import Oracle

GAP = 0.02  # black-box success this much above white-box success: masking suspected


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return correct / max(1, len(x))


def _attack_all(attack, model, x, y, batch_size):
    return torch.cat(
        [
            attack(model, x[i : i + batch_size], y[i : i + batch_size])
            for i in range(0, len(x), batch_size)
        ]
    )


# attack budgets of ``judge``: "full" is the published strength; "quick" the same attacks
# with fewer steps and queries (a smoke check; its numbers over-state robustness)
BUDGETS: dict[str, dict[str, int]] = {
    "full": {"steps": 20, "restarts": 5, "square_queries": 1000, "boundary_steps": 200,
             "autoattack_square_queries": 5000},
    "quick": {"steps": 10, "restarts": 1, "square_queries": 200, "boundary_steps": 30,
              "autoattack_square_queries": 300},
}  # fmt: skip


def judge(
    defended: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    adapted: str = "none",
    base: nn.Module | None = None,
    steps: int = 20,
    restarts: int = 5,
    square_queries: int = 1000,
    boundary_steps: int = 200,
    batch_size: int = 256,
    autoattack_square_queries: int = 5000,
) -> dict:
    """Robust accuracy of ``defended`` on (x, y) under each attack; the worst case; the
    masking flag. ``adapted``: none, margin (distillation), bpda (JPEG, squeezing), eot
    (smoothing). ``base``: the undefended model, for the transfer attack of BPDA."""
    out: dict = {"clean_accuracy": accuracy(defended, x, y, batch_size)}
    robust: dict[str, float] = {}
    timings: dict[str, float] = {}

    def run(name, attack, model=defended, target_model=defended):
        t0 = time.perf_counter()
        x_adv = _attack_all(attack, model, x, y, batch_size)
        timings[name] = time.perf_counter() - t0
        robust[name] = accuracy(target_model, x_adv, y, batch_size)

    pgd = LinfPGD(eps=eps, step=eps / 4, steps=steps, restarts=restarts)
    label = {"bpda": " (BPDA: straight-through)", "eot": " (EOT: mean over noise)"}
    run(f"pgd-{steps}x{restarts}{label.get(adapted, '')}", pgd)  # the wrappers adapt it
    if adapted == "margin":
        margin = LinfPGD(eps=eps, step=eps / 4, steps=steps, restarts=restarts, loss="margin")
        run("pgd-margin (C&W loss on logits)", margin)
    if adapted == "bpda" and base is not None:
        run("pgd-transfer (from the bare model)", pgd, model=base)
    aa = robust_accuracy(
        defended, x, y, eps=eps, attack="autoattack", batch_size=max(batch_size, 500),
        square_queries=autoattack_square_queries,
    )  # fmt: skip
    robust["autoattack (standard)"] = aa["robust_accuracy"]
    timings["autoattack (standard)"] = aa["wall_seconds"]
    white = min(v for k, v in robust.items() if k.startswith("pgd"))
    square = attacks.build("square", eps=eps, queries=square_queries)
    t0 = time.perf_counter()
    x_sq = _attack_all(square, Oracle(defended), x, y, batch_size)
    timings["square (scores only)"] = time.perf_counter() - t0
    robust["square (scores only)"] = accuracy(defended, x_sq, y, batch_size)
    boundary = attacks.build("boundary", steps=boundary_steps)
    x_bd = _attack_all(boundary, Oracle(defended, mode="labels"), x, y, batch_size)
    within = (x_bd - x).flatten(1).abs().amax(1) <= eps + 1e-6  # counts only inside the ball
    with torch.no_grad():
        defended.eval()
        fooled = (defended(x_bd).argmax(1) != y) & within
    robust["boundary (labels only, within ε)"] = 1.0 - float(fooled.float().mean())
    black = min(robust["square (scores only)"], robust["boundary (labels only, within ε)"])
    out.update(
        robust_accuracy=robust,
        autoattack_robust_accuracy=aa["robust_accuracy"],
        autoattack_broken_by=aa["broken_by"],
        worst_case_robust_accuracy=min(robust.values()),
        white_box_robust_accuracy=white,
        black_box_robust_accuracy=black,
        gradient_masking_suspected=black < white - GAP,
        seconds=timings,
        eps=eps,
    )
    return out
