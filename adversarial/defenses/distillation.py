"""Defensive distillation (Papernot et al. 2016; seed 000): a teacher trained with its
logits divided by T, a student trained on the teacher's soft labels at the same T, and the
student deployed at T = 1 — its logits come out ≈ T times larger, the softmax saturates,
and gradients of the softmax/CE vanish: what stops plain FGSM/PGD and what C&W on the
logits (Carlini & Wagner 2016) walks straight through."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adversarial.defenses import register
from adversarial.defenses.base import TrainingDefense, check
from nets.train import TrainResult, TrainStep, train


class TemperatureStep(TrainStep):
    """The teacher: cross-entropy of logits / T."""

    def __init__(self, temperature: float) -> None:
        self.t = temperature

    def loss(self, model, x, y):
        logits = model(x)
        return F.cross_entropy(logits / self.t, y), logits


class SoftLabelStep(TrainStep):
    """The student: cross-entropy against the teacher's softmax at T, its own logits / T."""

    def __init__(self, teacher, temperature: float) -> None:
        self.teacher, self.t = teacher.eval(), temperature

    def loss(self, model, x, y):
        with torch.no_grad():
            soft = F.softmax(self.teacher(x) / self.t, dim=1)
        logits = model(x)
        return -(soft * F.log_softmax(logits / self.t, dim=1)).sum(1).mean(), logits


@dataclass(kw_only=True)
class Distillation(TrainingDefense):
    temperature: float = 100.0  # Papernot et al. used T = 100 for MNIST

    name = "distillation"

    def __post_init__(self) -> None:
        check(self.temperature >= 1, f"temperature={self.temperature}: T must be ≥ 1")

    def fit(self, model, train_data, cfg, *, test_data=None, device="cpu", console=None):
        teacher = copy.deepcopy(model)
        first = train(
            teacher,
            train_data,
            cfg,
            step=TemperatureStep(self.temperature),
            device=device,
            console=console,
        )
        second = train(
            model,
            train_data,
            cfg,
            test_data=test_data,
            step=SoftLabelStep(teacher, self.temperature),
            device=device,
            console=console,
        )
        history = [{**r, "stage": "teacher"} for r in first.history]
        history += [{**r, "stage": "student"} for r in second.history]
        return model, TrainResult(
            history, second.test_accuracy, first.train_seconds + second.train_seconds
        )


@register("distillation")
def distillation(**options) -> Distillation:
    return Distillation(**options)
