"""Units of a long experiment, each kept on disk the moment it finishes, so a run that is
killed (Ctrl-C, a lost machine) loses at most the unit in progress and ``--resume`` skips
every finished one.

A unit is a key (a grid cell, an attacked image) and a JSON-able result, stored as
``units/KEY.json`` in the run's folder: written to a temporary file, then renamed — a
rename is atomic, so a unit file is either whole or absent. Tensors go in ``.pt`` beside it.
The seconds a unit took go in ``KEY.seconds``, so a run finished over several sessions
reports the compute time of all of them (``summary``), not only that of its last process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nets.errors import UserError

_SAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


class Units:
    def __init__(self, folder: Path, *, resume: bool, config: dict | None = None) -> None:
        """``config``: what the units depend on (experiment, mode, data, seed, options); a
        ``--resume`` under another config is refused, never mixed with the kept units."""
        self.folder = folder / "units"
        if not resume and self.folder.exists():
            shutil.rmtree(self.folder)  # a fresh run starts from nothing
        self.folder.mkdir(parents=True, exist_ok=True)
        if config is not None:
            self._check_config(json.loads(json.dumps(config)))
        self.reused = 0
        self.computed = 0
        self.reused_seconds = 0.0  # what the reused units took when they were computed

    def kept(self) -> list[str]:
        """The finished units on disk (their file stems), sorted."""
        return sorted(
            p.stem for p in self.folder.iterdir() if p.suffix in (".json", ".pt")
            and p.name != "config.json"
        )  # fmt: skip

    def _check_config(self, config: dict) -> None:
        path = self.folder / "config.json"
        if path.is_file():
            kept = json.loads(path.read_text())
            if kept != config:
                raise UserError(
                    f"--resume: the units kept in {self.folder} were computed with {kept}, "
                    f"this run is {config}; run with the same settings, or without --resume "
                    "to start over"
                )
        else:
            path.write_text(json.dumps(config))

    def _path(self, key: str, suffix: str = ".json") -> Path:
        return self.folder / (_SAFE.sub("_", key) + suffix)

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def _seconds(self, key: str) -> float:
        path = self._path(key, ".seconds")
        return float(path.read_text()) if path.is_file() else 0.0

    def _took(self, key: str, seconds: float) -> None:
        self._path(key, ".seconds").write_text(f"{seconds:.3f}")

    def put(self, key: str, value: Any, seconds: float | None = None) -> None:
        path = self._path(key)
        if seconds is not None:
            self._took(key, seconds)  # first: a unit whose value is on disk has its time
        tmp = path.with_suffix(".tmp")
        from experiments.core import _jsonable  # numpy scalars and arrays, paths

        tmp.write_text(json.dumps(_jsonable(value)))
        os.replace(tmp, path)

    def run(self, key: str, fn: Callable[[], Any]) -> Any:
        """The stored result of ``key``, or ``fn()`` stored as soon as it returns."""
        done = self.get(key)
        if done is not None:
            self.reused += 1
            self.reused_seconds += self._seconds(key)
            return done
        t0 = time.perf_counter()
        value = fn()
        self.put(key, value, seconds=time.perf_counter() - t0)
        self.computed += 1
        return value

    def tensor(self, key: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Like :meth:`run` for a tensor or a dict of them (an adversarial image, a
        model's weights)."""
        path = self._path(key, ".pt")
        if path.is_file():
            self.reused += 1
            self.reused_seconds += self._seconds(key)
            return torch.load(path, weights_only=True)
        t0 = time.perf_counter()
        value = fn()
        self._took(key, time.perf_counter() - t0)
        tmp = path.with_suffix(".pt.tmp")
        torch.save(value, tmp)
        os.replace(tmp, path)
        self.computed += 1
        return value

    def summary(self) -> dict[str, float]:
        return {
            "units_reused": self.reused,
            "units_computed": self.computed,
            "units_reused_seconds": round(self.reused_seconds, 1),
        }
