"""Defenses on the 8×8 digits (CPU, seconds each): each judged against the attack it is
meant to stop *and* the one adapted to it."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from scipy.stats import beta, norm

from adversarial import defenses
from adversarial.attacks.pgd import LinfPGD
from adversarial.defenses.base import DefenseError
from adversarial.defenses.judge import accuracy, judge
from nets import models
from nets.train import TrainConfig, train

QUIET = Console(quiet=True)
EPS = 0.1
CFG = TrainConfig(epochs=8, batch_size=32, lr=3e-3, seed=0)


def _net():
    torch.manual_seed(0)
    return models.build("cnn", (1, 8, 8), 10, width=16, depth=2)


@pytest.fixture(scope="module")
def test_xy(digits):
    te = digits[1]
    return torch.from_numpy(te.images), torch.from_numpy(te.labels).long()


@pytest.fixture(scope="module")
def standard(digits):
    net = _net()
    train(net, digits[0], CFG, console=QUIET)
    return net.eval()


def _robust(net, x, y, loss="ce"):
    return accuracy(net, LinfPGD(eps=EPS, step=EPS / 4, steps=20, loss=loss)(net, x, y), y)


def test_registry_lists_every_defense_and_refuses_bad_options():
    assert set(defenses.names()) >= {
        "pgd-at", "free", "fgsm-rs", "trades", "distillation", "input-gradient",
        "generator-at", "squeeze", "jpeg", "smoothing",
    }  # fmt: skip
    with pytest.raises(DefenseError, match="unknown defense 'nope'"):
        defenses.build("nope")
    with pytest.raises(DefenseError, match="replays=0"):
        defenses.build("free", replays=0)
    with pytest.raises(DefenseError, match="unexpected keyword argument 'bogus'"):
        defenses.build("free", bogus=1)
    with pytest.raises(DefenseError, match="eps=2"):
        defenses.build("pgd-at", eps=2)


def test_free_training_takes_standard_passes_and_resists_pgd(digits, standard, test_xy):
    defense = defenses.build("free", eps=EPS, replays=4)
    step = defense.step()
    cfg = defense.config(CFG)
    assert cfg.epochs == 2  # 8 epochs / m = 4
    net = _net()
    train(net, digits[0], cfg, step=step, console=QUIET)
    steps_per_epoch = -(-len(digits[0]) // CFG.batch_size)
    assert step.passes == CFG.epochs * steps_per_epoch  # as many backward passes as standard
    x, y = test_xy
    assert _robust(net, x, y) > _robust(standard, x, y) + 0.05
    assert accuracy(net, x, y) > 0.9


@pytest.mark.parametrize("name", ["pgd-at", "fgsm-rs", "n-fgsm", "trades"])
def test_adversarial_training_beats_standard_under_pgd(name, digits, standard, test_xy):
    net = _net()
    net, result = defenses.build(name, eps=EPS).fit(net, digits[0], CFG, console=QUIET)
    x, y = test_xy
    assert accuracy(net, x, y) > 0.9
    assert _robust(net, x, y) > _robust(standard, x, y) + 0.1
    assert _robust(net, x, y, "margin") > _robust(standard, x, y, "margin") + 0.1
    if name in ("fgsm-rs", "n-fgsm"):  # the catastrophic-overfitting check ran every epoch
        assert all("pgd_check_accuracy" in row for row in result.history)


def test_n_fgsm_step_is_noise_of_two_eps_plus_one_signed_step_of_eps_unclipped():
    """A linear model: ∇ₓCE has a fixed sign pattern s, so δ = u + ε·s with u ~ U[−2ε, 2ε]:
    |δ − ε·s| ≤ 2ε everywhere, δ reaches beyond ε (no projection), and FGSM-RS's δ does not."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))  # sign: W₁ − W₀
    x, y = torch.full((256, 1, 8, 8), 0.5), torch.zeros(256, dtype=torch.long)
    eps = 0.1
    n_step = defenses.build("n-fgsm", eps=eps, check_images=0).step()
    delta = n_step.perturb(net, x, y)
    x_req = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(net(x_req), y).backward()
    s = x_req.grad.sign()
    assert (delta - eps * s).abs().max() <= 2 * eps + 1e-6
    assert delta.abs().max() > 2.5 * eps  # unclipped: up to 3ε
    assert (delta - eps * s).abs().max() > 1.9 * eps  # the noise spans ±2ε
    rs = defenses.build("fgsm-rs", eps=eps, check_images=0).step().perturb(net, x, y)
    assert rs.abs().max() <= eps + 1e-6


def test_distillation_masks_gradients_that_the_logit_margin_walks_through(digits, test_xy):
    net = _net()
    defenses.build("distillation", temperature=50).fit(net, digits[0], CFG, console=QUIET)
    x, y = test_xy
    ce, margin = _robust(net, x, y), _robust(net, x, y, "margin")
    assert ce - margin > 0.2, (ce, margin)  # PGD on the T = 1 softmax fails far more often
    report = judge(net, x[:120], y[:120], eps=EPS, adapted="margin", steps=10, restarts=1,
                   square_queries=300, boundary_steps=20,
                   autoattack_square_queries=300)  # fmt: skip
    assert (
        report["white_box_robust_accuracy"]
        == report["robust_accuracy"]["pgd-margin (C&W loss on logits)"]
    )


class NoGradient(torch.nn.Module):
    """The model's logits with every input gradient zeroed: perfect gradient masking."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.detach()) + 0 * x.sum()


def test_judge_flags_gradient_masking_when_a_black_box_beats_the_white_box(standard, test_xy):
    x, y = test_xy[0][:120], test_xy[1][:120]
    masked = judge(NoGradient(standard), x, y, eps=EPS, steps=10, restarts=1,
                   square_queries=300, boundary_steps=20,
                   autoattack_square_queries=300)  # fmt: skip
    honest = judge(standard, x, y, eps=EPS, steps=10, restarts=1,
                   square_queries=300, boundary_steps=20,
                   autoattack_square_queries=300)  # fmt: skip
    assert masked["gradient_masking_suspected"], masked["robust_accuracy"]
    assert not honest["gradient_masking_suspected"], honest["robust_accuracy"]
    for report in (masked, honest):  # the headline: never above the PGD it replaces
        assert report["autoattack_robust_accuracy"] <= report["robust_accuracy"]["pgd-10x1"]
    # AutoAttack's Square member sees through the masking that stops PGD
    assert masked["autoattack_robust_accuracy"] < masked["robust_accuracy"]["pgd-10x1"] - 0.2


def test_input_gradient_regularisation_shrinks_input_gradients(digits, standard, test_xy):
    net = _net()
    defenses.build("input-gradient", weight=3.0).fit(net, digits[0], CFG, console=QUIET)
    x, y = test_xy

    def grad_norm(model):
        x_ = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x_), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_)
        return float(g.flatten(1).norm(dim=1).mean())

    assert grad_norm(net) < 0.6 * grad_norm(standard)  # measured: 0.27 vs 0.56
    assert accuracy(net, x, y) > 0.75  # at a cost in clean accuracy on this small model


# --- randomized smoothing ----------------------------------------------------------------
class Threshold(torch.nn.Module):
    """Class 0 iff the first pixel exceeds t: P(class 0 | x + ε) = 1 − Φ((t − x₀)/σ)."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        first = x.flatten(1)[:, 0]
        return torch.stack([first - self.t, self.t - first], dim=1)


@pytest.mark.parametrize("x0", [0.9, 0.6, 0.5, 0.3])
def test_certify_matches_the_closed_form(x0):
    from adversarial.defenses.smoothing import ABSTAIN, Smoothed

    sigma, t, n, alpha = 0.25, 0.5, 5000, 0.001
    smoothed = Smoothed(Threshold(t), sigma, 2, batch_size=777)
    x = torch.full((1, 2, 2), x0)
    cert = smoothed.certify(x, 100, n, alpha, torch.Generator().manual_seed(1))
    p_true = 1 - norm.cdf((t - x0) / sigma)
    top = cert.candidate  # picked by the n0 samples; bounded by the n fresh ones
    k = int(cert.counts[top])
    p_top = p_true if top == 0 else 1 - p_true
    assert abs(k / n - p_top) < 4 * np.sqrt(p_top * (1 - p_top) / n) + 1e-9  # binomial
    bound = beta.ppf(alpha, k, n - k + 1)
    assert cert.p_lower == pytest.approx(bound, abs=1e-9)
    if bound <= 0.5:
        assert cert.label == ABSTAIN and cert.radius == 0.0
    else:
        assert cert.label == top
        assert cert.radius == pytest.approx(sigma * norm.ppf(bound), abs=1e-9)
    if x0 == 0.5:  # p_A = ½: no bound from finitely many samples clears it
        assert cert.label == ABSTAIN


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 2500), st.integers(1, 3000), st.sampled_from([None, (0.0, 1.0)]))
def test_the_noise_stream_does_not_depend_on_the_evaluation_batch(batch, n, clip):
    """What lets the encrypted certifier (4,096 per request) reproduce the clear counts."""
    from adversarial.defenses.smoothing import Smoothed, noisy_copies

    x = torch.full((1, 2, 2), 0.55)
    counts = [
        Smoothed(Threshold(0.5), 0.25, 2, batch_size=b, clip=clip).counts(
            x, n, torch.Generator().manual_seed(3)
        )
        for b in (batch, 4096)
    ]
    assert (counts[0] == counts[1]).all() and counts[0].sum() == n
    copies = torch.cat(list(noisy_copies(x, n, 0.25, torch.Generator().manual_seed(3), clip)))
    first = copies.flatten(1)[:, 0]
    assert counts[0][0] == int((first - 0.5 > 0.5 - first).sum())
    if clip is not None:
        assert copies.min() >= 0.0 and copies.max() <= 1.0


def test_certified_accuracy_at_radius_zero_is_at_most_smoothed_accuracy(digits):
    from adversarial.defenses.smoothing import (
        ABSTAIN,
        Smoothed,
        certified_accuracy,
        certify_dataset,
    )

    net = _net()
    defenses.build("smoothing", sigma=0.25).fit(net, digits[0], CFG, console=QUIET)
    te = digits[1].subset(60)
    smoothed = Smoothed(net, 0.25, 10, batch_size=500)
    rows = certify_dataset(smoothed, te.images, te.labels, n0=50, n=500, alpha=0.01, progress=False)
    certified = certified_accuracy(rows, np.array([0.0, 0.25, 0.5]))
    predicted = [
        smoothed.predict(torch.from_numpy(img), 500, 0.01, torch.Generator().manual_seed(i))
        for i, img in enumerate(te.images)
    ]
    smoothed_acc = np.mean(
        [p == lab and p != ABSTAIN for p, lab in zip(predicted, te.labels, strict=True)]
    )
    assert certified[0] <= smoothed_acc + 0.05  # different draws: a little slack
    assert certified[0] >= certified[1] >= certified[2]
    assert certified[0] > 0.5


# --- inference-time wrappers -------------------------------------------------------------
def test_jpeg_forward_decodes_and_backward_is_straight_through(standard, test_xy):
    from adversarial.defenses.jpeg import jpeg

    wrapped = defenses.build("jpeg", quality=30).wrap(standard)
    x = test_xy[0][:16].clone().requires_grad_(True)
    out = wrapped(x)
    assert torch.allclose(out, standard(jpeg(x, 30)))
    out.sum().backward()
    x2 = jpeg(x, 30).requires_grad_(True)
    standard(x2).sum().backward()
    assert torch.allclose(x.grad, x2.grad)  # BPDA: the gradient at the decoded image
    with pytest.raises(DefenseError, match="quality=0"):
        defenses.build("jpeg", quality=0)


def test_feature_squeezing_threshold_meets_its_false_positive_rate(standard, test_xy):
    detector = defenses.build("squeeze", bits=3, median=2).wrap(standard)
    x, y = test_xy
    detector.calibrate(x[:200], false_positive_rate=0.05)
    assert float(detector.detect(x[:200]).float().mean()) <= 0.05 + 1e-9
    assert torch.equal(detector(x[:5]), standard(x[:5]))  # predictions are the model's
    scores = detector.score(x[:10])
    assert ((scores >= 0) & (scores <= 2)).all()  # an L1 distance of two distributions


def test_denoise_blocks_start_as_the_identity():
    torch.manual_seed(0)
    plain = models.build("lenet-shallow", (1, 28, 28), 10)
    torch.manual_seed(0)
    denoised = models.build("lenet-shallow", (1, 28, 28), 10, denoise=1)
    assert any(type(m).__name__ == "NonLocalDenoise" for m in denoised.modules())
    mapped = dict(zip(plain.state_dict(), [v for k, v in denoised.state_dict().items()
                                            if not k.startswith("2.")], strict=True))  # fmt: skip
    plain.load_state_dict(mapped)
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(plain.eval()(x), denoised.eval()(x), atol=1e-6)
    with pytest.raises(Exception, match="denoise"):
        models.build("gru", (1, 28, 28), 10, denoise=1)


def test_generator_training_runs_and_keeps_accuracy(digits):
    net = _net()
    cfg = replace(CFG, epochs=2)
    net, result = defenses.build("generator-at", pool=32).fit(net, digits[0], cfg, console=QUIET)
    assert len(result.history) == 2
    x, y = torch.from_numpy(digits[1].images), torch.from_numpy(digits[1].labels).long()
    assert accuracy(net, x, y) > 0.8


def test_eps_ramp_grows_linearly_and_is_recorded(digits):
    from adversarial.defenses.base import ramped

    assert [ramped(0.3, 3, k) for k in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert ramped(0.3, 0, 0) == 0.3
    net = _net()
    cfg = replace(CFG, epochs=3)
    _, result = defenses.build("pgd-at", eps=0.3, steps=2, ramp_epochs=3).fit(
        net, digits[0].subset(256), cfg, console=QUIET
    )
    assert [row["train_eps"] for row in result.history] == pytest.approx([0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    "checks, kept",
    [
        ((0.8, 0.5, 0.8), 2),  # a collapse, then recovery: the final, annealed weights
        ((0.7, 0.9, 0.75), 2),  # the best was mid-schedule, no collapse (≤ 20 points): final
        ((0.9, 0.9, 0.3), 1),  # a collapse in the last epoch: the last weights before it
    ],
)
def test_fast_step_keeps_final_weights_unless_the_check_collapsed(checks, kept):
    """Wong et al.'s early stopping: the best-scoring epoch is not kept on its own (a noisy
    check would pick a mid-schedule model); only a collapse reverts to the last good one."""
    from adversarial.defenses.fast import FastStep

    x = torch.zeros(100, 1)
    step = FastStep(0.1, 0.125, x, None, check_steps=1)
    step.pgd = lambda model, x, y: x  # no attack: the check's accuracy is set by the labels
    net = torch.nn.Linear(1, 2)  # predicts class 1 on every image; weight[1, 0] tags the epoch
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([0.0, 1.0]))
    for epoch, acc in enumerate(checks):
        with torch.no_grad():
            net.weight[1, 0] = float(epoch)
        step.check_y = (torch.arange(100) < round(acc * 100)).long()
        step.end_epoch(net, epoch)
        assert step.history[-1] == pytest.approx(acc)
    step.finish(net)
    assert net.weight[1, 0].item() == kept
