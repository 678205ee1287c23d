"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019; seed 003 Q2).

The smoothed classifier g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I), noise added in
the [0, 1] input space. ``predict`` abstains unless a two-sided binomial test
(``scipy.stats.binomtest``) separates the top two classes at level α; ``certify`` picks
the class from n0 samples, bounds p_A from n fresh samples with the one-sided
Clopper–Pearson bound ``beta.ppf(α, k, n − k + 1)``, abstains when that bound is ≤ ½, and
certifies the L2 radius σ·Φ⁻¹(p_A). Training is Gaussian-noise augmentation at the same σ.
Sampling is batched; ``forward`` is the expectation over noise (EOT: what an adapted
attacker differentiates).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from scipy.stats import beta, binomtest, norm
from torch import Tensor, nn

from adversarial.defenses import register
from adversarial.defenses.base import TrainingDefense, check
from nets.train import TrainStep

ABSTAIN = -1


class NoiseStep(TrainStep):
    """Gaussian data augmentation at σ (Cohen et al.'s training); ``clip`` clamps the noisy
    images to [0, 1], the base classifier the encrypted certifier evaluates."""

    def __init__(self, sigma: float, clip: bool = False) -> None:
        self.sigma, self.clip = sigma, clip

    def loss(self, model, x, y):
        noisy = x + self.sigma * torch.randn_like(x)
        logits = model(noisy.clamp(0.0, 1.0) if self.clip else noisy)
        return F.cross_entropy(logits, y), logits


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1 − α) Clopper–Pearson lower bound on a binomial proportion."""
    return float(beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0


@dataclass
class Certificate:
    label: int  # the certified class, or ABSTAIN
    radius: float  # certified L2 radius (0 when abstaining)
    p_lower: float  # the lower bound on p_A
    counts: np.ndarray  # the n samples' class counts
    candidate: int  # the class the n0 samples picked (bounded by the n samples)


NOISE_CHUNK = 1000  # rows per draw: the stream is the same whatever batch evaluates it


def noisy_copies(
    x: Tensor,
    n: int,
    sigma: float,
    generator: torch.Generator | None = None,
    clip: tuple[float, float] | None = None,
) -> Iterator[Tensor]:
    """n copies of one image ``x`` (C, H, W) plus N(0, σ²I) noise, in chunks of
    ``NOISE_CHUNK`` drawn on the CPU from ``generator`` (then moved to x's device).

    Every certifier draws its samples here, so the same generator state gives the same
    noisy images whether torch evaluates them or the encrypted service does. ``clip``
    clamps the noisy images to a range: the base classifier becomes f∘clip, and Cohen et
    al.'s theorem holds for any base classifier, so the certificate stays exact."""
    left = n
    while left:
        b = min(NOISE_CHUNK, left)
        noise = torch.randn((b, *x.shape), generator=generator, device="cpu").to(x.device)
        out = x.unsqueeze(0) + sigma * noise
        yield out.clamp(*clip) if clip is not None else out
        left -= b


def certificate(guess: int, counts: np.ndarray, alpha: float, sigma: float) -> Certificate:
    """Cohen et al.'s CERTIFY from its two samples' outcomes: ``guess`` is the class the
    n0 selection samples picked, ``counts`` the n estimation samples' class counts."""
    n = int(counts.sum())
    p_lower = lower_confidence_bound(int(counts[guess]), n, alpha)
    if p_lower <= 0.5:
        return Certificate(ABSTAIN, 0.0, p_lower, counts, guess)
    return Certificate(guess, sigma * float(norm.ppf(p_lower)), p_lower, counts, guess)


def check_certify_args(sigma: float, n0: int, n: int, alpha: float) -> None:
    check(sigma > 0, f"sigma={sigma}: the noise level must be > 0")
    check(n0 >= 1 and n >= 1, f"n0={n0}, n={n}: both must be ≥ 1")
    check(0 < alpha < 0.5, f"alpha={alpha}: choose a level in (0, 0.5)")


class Smoothed(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        sigma: float,
        num_classes: int,
        *,
        batch_size: int = NOISE_CHUNK,
        eot_samples: int = 8,
        clip: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.sigma, self.num_classes = model, sigma, num_classes
        self.batch_size, self.eot_samples, self.clip = batch_size, eot_samples, clip

    def forward(self, x: Tensor) -> Tensor:
        """log E_ε[softmax f(x + ε)] over ``eot_samples`` draws: differentiable (EOT)."""
        probs = torch.stack(
            [
                F.softmax(self.model(self._clip(x + self.sigma * torch.randn_like(x))), dim=1)
                for _ in range(self.eot_samples)
            ]
        ).mean(0)
        return probs.clamp_min(1e-12).log()

    def _clip(self, x: Tensor) -> Tensor:
        return x.clamp(*self.clip) if self.clip is not None else x

    @torch.no_grad()
    def counts(self, x: Tensor, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        """Class counts of f over n noisy copies of one image ``x`` (C, H, W), batched."""
        was = self.model.training
        self.model.eval()
        out = np.zeros(self.num_classes, dtype=np.int64)
        for chunk in noisy_copies(x, n, self.sigma, generator, self.clip):
            for batch in chunk.split(self.batch_size):
                pred = self.model(batch).argmax(1)
                out += np.bincount(pred.cpu().numpy(), minlength=self.num_classes)
        self.model.train(was)
        return out

    def predict(
        self, x: Tensor, n: int, alpha: float, generator: torch.Generator | None = None
    ) -> int:
        """The smoothed class, or ABSTAIN when the top two are not separated at level α."""
        counts = self.counts(x, n, generator)
        top2 = np.argsort(counts)[::-1][:2]
        n_a, n_b = int(counts[top2[0]]), int(counts[top2[1]])
        if binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
            return ABSTAIN
        return int(top2[0])

    def certify(
        self, x: Tensor, n0: int, n: int, alpha: float, generator: torch.Generator | None = None
    ) -> Certificate:
        check_certify_args(self.sigma, n0, n, alpha)
        guess = int(self.counts(x, n0, generator).argmax())
        return certificate(guess, self.counts(x, n, generator), alpha, self.sigma)


def certify_dataset(
    smoothed: Smoothed,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n0: int = 100,
    n: int = 10_000,
    alpha: float = 0.001,
    seed: int = 0,
    device="cpu",
    progress: bool = True,
) -> list[dict]:
    """One certificate per image, each from its own seeded generator (reproducible)."""
    rows = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"certify (n={n})", total=len(images))
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            gen = torch.Generator().manual_seed(seed + i)
            cert = smoothed.certify(torch.from_numpy(image).to(device), n0, n, alpha, gen)
            rows.append(
                {
                    "label": int(label),
                    "predicted": cert.label,
                    "radius": cert.radius,
                    "p_lower": cert.p_lower,
                    "correct": cert.label == int(label),
                }
            )
            bar.update(task, advance=1)
    return rows


def certified_accuracy(rows: list[dict], radii: np.ndarray) -> np.ndarray:
    """Fraction of images certified correct with radius ≥ r, for each r."""
    radius = np.array([r["radius"] if r["correct"] else -1.0 for r in rows])
    return np.array([(radius >= r).mean() for r in radii])


@dataclass(kw_only=True)
class GaussianNoiseTraining(TrainingDefense):
    sigma: float = 0.25
    clip: bool = False  # clamp noisy images to [0, 1] (what `client certify` sends)

    name = "smoothing"

    def __post_init__(self) -> None:
        check(self.sigma > 0, f"sigma={self.sigma}: the noise level must be > 0")

    def step(self) -> TrainStep:
        return NoiseStep(self.sigma, self.clip)


@register("smoothing")
def smoothing(**options) -> GaussianNoiseTraining:
    return GaussianNoiseTraining(**options)
