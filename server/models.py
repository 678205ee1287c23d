"""The served models: every checkpoint in ``--models`` compiled to CKKS plans.

A checkpoint ``name.pt`` is served as ``name`` (batch packing: up to N/2 images per
request) and ``name-single`` (single packing: one image per request, low latency).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from crypto_nn.plan import Plan, compile
from nets import checkpoint, data
from nets.errors import UserError

log = logging.getLogger(__name__)


PACKINGS = ("batch", "single")


@dataclass
class ServedModel:
    name: str
    checkpoint: Path
    plan: Plan


def served_name(stem: str, packing: str) -> str:
    return stem if packing == "batch" else f"{stem}-{packing}"


def compile_checkpoint(path: Path, calibration_images: int, packing: str = "batch") -> Plan:
    net, meta = checkpoint.load(path)
    calib = data.load(meta.data, "train").subset(calibration_images).images
    return compile(
        net, calib, packing=packing, name=served_name(path.stem, packing), classes=meta.classes
    )


def load_models(
    models_dir: Path, calibration_images: int, packings: tuple[str, ...] = PACKINGS
) -> dict[str, ServedModel]:
    """Compile every ``*.pt`` under ``models_dir``; a model that cannot be compiled is logged
    and skipped, so one bad file does not take the service down."""
    if not models_dir.is_dir():
        raise UserError(f"--models {models_dir}: not a directory; put checkpoints (*.pt) there")
    served = {}
    for path in sorted(models_dir.glob("*.pt")):
        for packing in packings:
            name = served_name(path.stem, packing)
            try:
                served[name] = ServedModel(
                    name, path, compile_checkpoint(path, calibration_images, packing)
                )
            except UserError as exc:
                log.warning("not serving %s with %s packing: %s", path.name, packing, exc)
    return served
