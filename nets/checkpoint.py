"""Checkpoints that know what they hold: architecture, data set, seed, accuracy, versions.

Format (``torch.save`` of a dict, loaded back with ``weights_only=True`` so a checkpoint
cannot run code): ``format`` = "cryptorobust.checkpoint", ``version``, ``model`` (registry
name), ``model_args``, ``in_shape``, ``num_classes``, ``classes``, ``data``, ``metrics``,
``history``, ``run`` (seed, versions, device) and ``state_dict``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from nets import models
from nets.errors import CheckpointError, ModelError

FORMAT = "cryptorobust.checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A trained model with its provenance."""

    model_name: str
    model_args: dict[str, object]
    in_shape: tuple[int, int, int]
    num_classes: int
    classes: tuple[str, ...]
    data: str
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    run: dict[str, object] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """A fresh, untrained model of this checkpoint's architecture."""
        return models.build(self.model_name, self.in_shape, self.num_classes, **self.model_args)


def save(path: str | Path, model: nn.Module, ckpt: Checkpoint) -> Path:
    """Write ``model``'s weights with ``ckpt``'s metadata; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON round trip: only plain types reach the file, so weights_only loading accepts it.
    meta = json.loads(
        json.dumps(
            {
                "model_args": ckpt.model_args,
                "in_shape": ckpt.in_shape,
                "classes": ckpt.classes,
                "metrics": ckpt.metrics,
                "history": ckpt.history,
                "run": ckpt.run,
            }
        )
    )
    payload = {
        **meta,
        "format": FORMAT,
        "version": VERSION,
        "model": ckpt.model_name,
        "num_classes": ckpt.num_classes,
        "data": ckpt.data,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def load(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Read a checkpoint → (model in eval mode on ``device``, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `python -m nets train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({reason}); retrain or copy it again"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cryptorobust checkpoint (no '{FORMAT}' header)")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this cryptorobust reads up to "
            f"{VERSION} — upgrade cryptorobust"
        )
    try:
        ckpt = Checkpoint(
            model_name=payload["model"],
            model_args=dict(payload["model_args"]),
            in_shape=tuple(payload["in_shape"]),
            num_classes=int(payload["num_classes"]),
            classes=tuple(payload["classes"]),
            data=payload["data"],
            metrics=dict(payload.get("metrics", {})),
            history=list(payload.get("history", [])),
            run=dict(payload.get("run", {})),
        )
        model = ckpt.build()
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: missing or malformed field ({exc})") from None
    except ModelError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except RuntimeError as exc:  # state_dict does not match the architecture
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{path}: weights do not match model {ckpt.model_name!r} ({first})"
        ) from None
    return model.to(device).eval(), ckpt
