"""The generator attack (the MNIST-simple-generator exercise).

A trainable image G, initialised at the source image, is trained alternately with Adam:
some steps of MSE toward the source image (stay close), then some steps of MSE between
the frozen classifier's softmax and the one-hot target (move toward the target) — repeated
until the classifier says the target. Each image stops once it is there; rounds that end
short of the target lengthen the target phase (×``growth``). Targeted by nature;
untargeted runs aim at (y + 1) mod K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from adversarial.attacks import register
from adversarial.base import Attack


@register("generator")
@dataclass
class Generator(Attack):
    rounds: int = 100  # alternations at most
    image_steps: int = 5  # Adam steps toward the source image per round
    target_steps: int = 5  # Adam steps toward the one-hot target in the first round
    growth: float = 1.2  # target steps grow by this each round the target is not reached
    max_target_steps: int = 200
    lr: float = 0.01

    name = "generator"

    def _run(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        params = list(getattr(model, "parameters", lambda: [])())
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)  # a frozen classifier (flags restored below)
        try:
            return self._train(model, x, y, target)
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)

    def _train(self, model, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        with torch.no_grad():
            k = model(x[:1]).shape[1]
        target = target if target is not None else (y + 1) % k
        onehot = F.one_hot(target, k).to(x.dtype)
        g = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([g], lr=self.lr)
        live = torch.ones(len(x), dtype=torch.bool, device=x.device)
        done = x.clone()
        target_steps = self.target_steps
        for _ in range(self.rounds):
            for phase, steps in (("image", self.image_steps), ("target", target_steps)):
                for _ in range(steps):
                    opt.zero_grad()
                    if phase == "image":
                        loss = F.mse_loss(g, x, reduction="none").flatten(1).mean(1)
                    else:
                        logits = model(g)
                        with torch.no_grad():  # an image stops the moment it gets there
                            reached = live & (logits.argmax(1) == target)
                            done[reached] = g[reached]
                            live &= ~reached
                        if not live.any():
                            break
                        loss = F.mse_loss(logits.softmax(1), onehot, reduction="none").mean(1)
                    (loss * live).sum().backward()
                    opt.step()
                    with torch.no_grad():
                        g.clamp_(0, 1)
                        g[~live] = done[~live]  # Adam's momentum must not move finished images
            with torch.no_grad():
                reached = live & (model(g).argmax(1) == target)
                done[reached] = g[reached]
                live &= ~reached
            if not live.any():
                break
            # still short of the target: lean harder on it next round (Adam's steps have the
            # same size whatever the loss scale, so the balance is set by the step counts)
            target_steps = min(self.max_target_steps, int(target_steps * self.growth) + 1)
        with torch.no_grad():
            g[~live] = done[~live]  # finished images as they were when they got there
        return g.detach()


@dataclass
class TargetGrid:
    """Every source image aimed at every class: the exercise's grid (seed 001 B)."""

    sources: Tensor  # (S, C, H, W) the originals
    images: Tensor  # (S, K, C, H, W) the generator's image aimed at each class
    reached: Tensor  # (S, K) bool: the classifier said the target
    source_labels: list[int]
    seconds: float

    def metrics(self) -> dict[str, float]:
        s, k = self.reached.shape
        own = sum(int(self.reached[r, c]) for r, c in enumerate(self.source_labels))
        flat_src = self.sources.repeat_interleave(k, 0)
        return {
            "pairs": s * k,
            "other_class_pairs": s * (k - 1),
            "target_success": self.reached.float().mean().item(),
            # aiming at the image's own class is no attack: not counted
            "target_success_other_classes": (int(self.reached.sum()) - own) / (s * (k - 1)),
            "mean_l2": (self.images.flatten(0, 1) - flat_src).flatten(1).norm(dim=1).mean().item(),
            "seconds": self.seconds,
        }


def target_grid(model, images: Tensor, labels: list[int], classes: int, **options) -> TargetGrid:
    """Run the generator attack from each of ``images`` toward each of ``classes``."""
    import time

    s = len(images)
    x = images.repeat_interleave(classes, 0)
    y = torch.tensor(labels, device=images.device).repeat_interleave(classes)
    target = torch.arange(classes, device=images.device).repeat(s)
    t0 = time.perf_counter()
    x_adv = Generator(**options)(model, x, y, target)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        model.eval()
        reached = (model(x_adv).argmax(1) == target).view(s, classes)
    return TargetGrid(images, x_adv.view(s, classes, *images.shape[1:]), reached, labels, seconds)
