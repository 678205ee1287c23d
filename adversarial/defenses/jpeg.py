"""JPEG compression of the input (Dziugaite et al. 2016; Guo et al. 2018), with Pillow.

The forward pass sees the JPEG-decoded image; the backward pass is the identity's (BPDA,
Athalye et al. 2018) — so a white-box attack on the wrapper *is* the adapted attack, and
an attack on the bare model transferred through the wrapper is the naive one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from adversarial.defenses import register
from adversarial.defenses.base import InferenceDefense, check
from adversarial.defenses.squeezing import straight_through


def jpeg(x: Tensor, quality: int) -> Tensor:
    """Each image JPEG-encoded at ``quality`` and decoded back (grey or RGB)."""
    arrays = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    out = np.empty(arrays.shape, dtype=np.float32)
    for i, img in enumerate(arrays):
        mode = "L" if img.shape[0] == 1 else "RGB"
        pil = Image.fromarray(img[0] if mode == "L" else img.transpose(1, 2, 0), mode)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(buf), dtype=np.float32) / 255
        out[i] = decoded[None] if mode == "L" else decoded.transpose(2, 0, 1)
    return torch.from_numpy(out).to(x.device)


class JpegInput(nn.Module):
    def __init__(self, model: nn.Module, quality: int) -> None:
        super().__init__()
        self.model, self.quality = model, quality

    def forward(self, x: Tensor) -> Tensor:
        return self.model(straight_through(x, jpeg(x, self.quality)))


@dataclass(kw_only=True)
class JpegCompression(InferenceDefense):
    quality: int = 75

    name = "jpeg"

    def __post_init__(self) -> None:
        check(1 <= self.quality <= 95, f"quality={self.quality}: choose 1 to 95")

    def wrap(self, model: nn.Module) -> JpegInput:
        return JpegInput(model, self.quality)


@register("jpeg")
def jpeg_defense(**options) -> JpegCompression:
    return JpegCompression(**options)
