"""Training against the generator attack (seed 001, bonus D): the generator's adversarial
images for a pool of training images, each aimed at a random other class, are added to
the training set with their true labels; the model is then fine-tuned on clean and
generated images together. Regenerated every ``refresh`` epochs, so the attack follows
the model."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from adversarial import attacks
from adversarial.defenses import register
from adversarial.defenses.base import TrainingDefense, check
from nets.data import Dataset
from nets.train import TrainResult, TrainStep, train


def generated(
    model, images: np.ndarray, labels: np.ndarray, classes: int, seed: int, device, rounds=100
):
    """The generator attack's images for ``images``, each aimed at a random other class."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.from_numpy(labels).long()
    target = (y + torch.randint(1, classes, (len(y),), generator=gen)) % classes
    x = torch.from_numpy(images).to(device)
    out = attacks.build("generator", rounds=rounds)(model, x, y.to(device), target.to(device))
    return out.cpu().numpy(), target.numpy()


def generator_success(model, test_set, seed: int, device, n: int = 20, rounds: int = 100) -> float:
    """Targeted success of the generator attack on the first n test images (random other
    classes as targets): what training against it should lower."""
    part = test_set.subset(n)
    adv, target = generated(
        model.eval(), part.images, part.labels, len(part.classes), seed, device, rounds
    )
    with torch.no_grad():
        pred = model(torch.from_numpy(adv).to(device)).argmax(1).cpu().numpy()
    return float((pred == target).mean())


@dataclass(kw_only=True)
class GeneratorTraining(TrainingDefense):
    pool: int = 512  # training images the generator attacks each round
    refresh: int = 1  # epochs between regenerations
    rounds: int = 100  # the generator's alternations at most

    name = "generator-at"

    def __post_init__(self) -> None:
        check(min(self.pool, self.refresh, self.rounds) >= 1, "pool, refresh, rounds must be ≥ 1")

    def step(self) -> TrainStep:
        return TrainStep()

    def fit(self, model, train_data, cfg, *, test_data=None, device="cpu", console=None):
        rng = np.random.default_rng(cfg.seed)
        history, seconds, result = [], 0.0, None
        classes = len(train_data.classes)
        for start in range(0, cfg.epochs, self.refresh):
            picks = rng.choice(len(train_data), min(self.pool, len(train_data)), replace=False)
            adv, _ = generated(
                model.eval(),
                train_data.images[picks],
                train_data.labels[picks],
                classes,
                cfg.seed + start,
                device,
                self.rounds,
            )
            mixed = Dataset(
                train_data.name,
                train_data.split,
                np.concatenate([train_data.images, adv]).astype(np.float32),
                np.concatenate([train_data.labels, train_data.labels[picks]]),
                train_data.classes,
            )
            epochs = min(self.refresh, cfg.epochs - start)
            result = train(
                model,
                mixed,
                replace(cfg, epochs=epochs, seed=cfg.seed + start),
                test_data=test_data,
                device=device,
                console=console,
            )
            history += result.history
            seconds += result.train_seconds
        return model, TrainResult(history, result.test_accuracy, seconds)


@register("generator-at")
def generator_at(**options) -> GeneratorTraining:
    return GeneratorTraining(**options)
