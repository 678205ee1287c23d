"""The served models: every checkpoint in ``--models`` compiled once, at start-up.

A checkpoint ``name.pt`` is served as ``name`` (CKKS batch packing: up to N/2 images per
request), ``name-single`` (CKKS single packing: one image per request) and ``name-bfv``
(BFV, exact: the checkpoint quantised to ``bfv_bits`` by integer_nn — or, when an IntModel
file ``name.int.npz`` lies beside it, that model, e.g. one written by ``integer_nn qat``; a
model with lookup tables — ReLU, sigmoid — runs client-aided, one request per segment).

Compiling needs the training data (calibration images); evaluating does not. So the API
process compiles (or reuses a plan saved by an earlier start, when the checkpoint and the
options are the same) and writes each plan to ``state/plans/<name>.plan``; workers —
local processes or Ray — load the plan, never the data.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from crypto_nn import roles
from crypto_nn.errors import CompileError
from nets import checkpoint
from nets.errors import UserError

log = logging.getLogger(__name__)

PACKINGS = ("batch", "single", "bfv")
SUFFIX = {"batch": "", "single": "-single", "bfv": "-bfv"}


@dataclass
class ServedModel:
    name: str
    checkpoint: Path
    plan: roles.Plan
    plan_path: Path  # what workers load


def served_name(stem: str, packing: str) -> str:
    return stem + SUFFIX[packing]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _calibration(path: Path, calibration_images: int):
    from nets import data

    net, meta = checkpoint.load(path)
    return net, meta, data.load(meta.data, "train").subset(calibration_images).images


def smoothing_sigma(meta) -> float:
    """The σ a checkpoint was trained with for randomized smoothing (``adversarial defend
    --method smoothing``), else 0: its CKKS plans are calibrated on noisy images too, so
    ``client certify`` can send noisy copies up to that σ."""
    if meta.run.get("defense") != "smoothing":
        return 0.0
    return float(meta.run.get("defense_options", {}).get("sigma", 0.0))


def int_model_file(path: Path) -> Path:
    """Where an IntModel for checkpoint ``path`` may lie: ``NAME.int.npz`` beside it."""
    return path.with_name(path.stem + ".int.npz")


def quantized(path: Path, calibration_images: int, bfv_bits: int):
    """The IntModel ``NAME-bfv`` is compiled from: the ``NAME.int.npz`` beside the checkpoint
    if there is one (``integer_nn qat`` writes them), else the checkpoint quantised after
    training (deterministic: the demo and tests rebuild it to check the served logits bit
    for bit)."""
    from integer_nn import quantize

    given = int_model_file(path)
    if given.is_file():
        from integer_nn import io

        model = io.load(given)
        in_shape = tuple(checkpoint.load(path)[1].in_shape)
        if tuple(model.in_shape) != in_shape:
            raise UserError(
                f"{given.name} takes images of shape {tuple(model.in_shape)} but {path.name} "
                f"takes {in_shape}; write it from this checkpoint (integer_nn qat {path.name})"
            )
        return model
    net, meta, calib = _calibration(path, calibration_images)
    return quantize(
        net, calib, weight_bits=bfv_bits, act_bits=bfv_bits, classes=tuple(meta.classes)
    )


def compile_checkpoint(
    path: Path, calibration_images: int, packing: str = "batch", *, bfv_bits: int = 4
) -> roles.Plan:
    """One checkpoint → one plan (this loads the training data: API process only)."""
    import crypto_nn

    name = served_name(path.stem, packing)
    if packing != "bfv":
        net, meta, calib = _calibration(path, calibration_images)
        return crypto_nn.compile(
            net,
            calib,
            packing=packing,
            name=name,
            classes=meta.classes,
            noise_sigma=smoothing_sigma(meta),
        )
    int_model = quantized(path, calibration_images, bfv_bits)
    has_tables = any(op.kind == "table" or op.kind == "maxpool2d" for op in int_model.ops)
    return crypto_nn.compile(
        int_model, scheme="bfv", tables="client" if has_tables else "refuse", name=name
    )


def load_models(
    models_dir: Path,
    calibration_images: int,
    packings: tuple[str, ...] = PACKINGS,
    *,
    plans_dir: Path,
    bfv_bits: int = 4,
) -> dict[str, ServedModel]:
    """Compile every ``*.pt`` under ``models_dir`` (or load its saved plan); a model that
    cannot be compiled is logged and skipped, so one bad file does not take the service
    down."""
    if not models_dir.is_dir():
        raise UserError(f"--models {models_dir}: not a directory; put checkpoints (*.pt) there")
    unknown = sorted(set(packings) - set(PACKINGS))
    if unknown:
        raise UserError(f"packings {unknown}: choose from {list(PACKINGS)}")
    plans_dir.mkdir(parents=True, exist_ok=True)
    served = {}
    for path in sorted(models_dir.glob("*.pt")):
        digest = _sha256(path)
        for packing in packings:
            name = served_name(path.stem, packing)
            plan_path = plans_dir / f"{name}.plan"
            source = {
                "checkpoint": path.name,
                "sha256": digest,
                "calibration_images": calibration_images,
                **({"bfv_bits": bfv_bits} if packing == "bfv" else {}),
            }
            given = int_model_file(path)
            if packing == "bfv" and given.is_file():  # a new IntModel file: recompile
                source["int_model_sha256"] = _sha256(given)
            try:
                plan = _saved(plan_path, source)
                if plan is None:
                    plan = compile_checkpoint(path, calibration_images, packing, bfv_bits=bfv_bits)
                    roles.save(plan, plan_path, source)
            except (UserError, CompileError) as exc:
                log.warning("not serving %s as %s: %s", path.name, name, exc)
                continue
            served[name] = ServedModel(name, path, plan, plan_path)
    return served


def _saved(plan_path: Path, source: dict) -> roles.Plan | None:
    """The plan an earlier start saved, if it was compiled from the same file and options."""
    if not plan_path.is_file():
        return None
    try:
        if roles.read_header(plan_path).get("source") != source:
            return None
        return roles.load(plan_path)
    except (CompileError, OSError, EOFError, ValueError) as exc:  # stale or foreign: recompile
        log.info("recompiling %s: %s", plan_path.name, exc)
        return None
