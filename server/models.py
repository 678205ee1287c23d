"""The served models: every checkpoint in ``--models`` compiled to a CKKS batch plan."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from crypto_nn.plan import Plan, compile
from nets import checkpoint, data
from nets.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    name: str
    checkpoint: Path
    plan: Plan


def compile_checkpoint(path: Path, calibration_images: int) -> Plan:
    net, meta = checkpoint.load(path)
    calib = data.load(meta.data, "train").subset(calibration_images).images
    return compile(net, calib, name=path.stem, classes=meta.classes)


def load_models(models_dir: Path, calibration_images: int) -> dict[str, ServedModel]:
    """Compile every ``*.pt`` under ``models_dir``; a model that cannot be compiled is logged
    and skipped, so one bad file does not take the service down."""
    if not models_dir.is_dir():
        raise UserError(f"--models {models_dir}: not a directory; put checkpoints (*.pt) there")
    served = {}
    for path in sorted(models_dir.glob("*.pt")):
        try:
            served[path.stem] = ServedModel(
                path.stem, path, compile_checkpoint(path, calibration_images)
            )
        except UserError as exc:
            log.warning("not serving %s: %s", path.name, exc)
    return served
