"""Batch jobs on disk: ``state/jobs/<id>/`` holds ``status.json``, ``input.bin``, ``result.bin``.

A job's status is rewritten atomically at each step (queued → running → done | failed), so
a restart finds finished results where they were; jobs that were queued or running when
the server stopped are marked failed with that reason rather than silently lost. Inputs
live only on disk (the API never holds a queued job's ciphertexts) and are deleted when
the job ends; finished and failed jobs expire after ``ttl_s``. Admission is bounded per
key and overall, so one client cannot queue the disk full.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from pathlib import Path

from fastapi import HTTPException

STATES = ("queued", "running", "done", "failed")
ACTIVE = ("queued", "running")


class JobStore:
    def __init__(self, root: Path, *, max_active: int, max_active_per_key: int, ttl_s: float):
        self.root = root / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_active, self.max_active_per_key, self.ttl_s = max_active, max_active_per_key, ttl_s
        self._active: dict[str, str] = {}  # job id → key id, for queued and running jobs
        for status_file in self.root.glob("*/status.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                status = json.loads(status_file.read_text())
                if status["state"] in ACTIVE:
                    self.fail(status_file.parent.name, "the server restarted during the job")
        for leftover in self.root.iterdir():  # a job whose upload never finished
            if leftover.is_dir() and not (leftover / "status.json").exists():
                shutil.rmtree(leftover, ignore_errors=True)
        self.sweep()

    # --- admission ---------------------------------------------------------------------
    def admit(self, key_id: str) -> None:
        """503 + Retry-After when the server's or this key's active jobs are at their bound."""
        if len(self._active) >= self.max_active:
            raise HTTPException(
                503,
                f"{len(self._active)} jobs queued or running, the server's bound — retry later",
                headers={"Retry-After": "30"},
            )
        mine = sum(k == key_id for k in self._active.values())
        if mine >= self.max_active_per_key:
            raise HTTPException(
                503,
                f"key {key_id} has {mine} jobs queued or running, the bound per key — "
                "wait for one to finish",
                headers={"Retry-After": "30"},
            )

    def in_use(self, key_id: str) -> bool:
        return key_id in self._active.values()

    def active(self) -> list[str]:
        return list(self._active)

    # --- lifecycle ---------------------------------------------------------------------
    def new_dir(self) -> tuple[str, Path]:
        """A fresh job directory for the upload to stream into (no status yet)."""
        job_id = secrets.token_hex(16)
        (self.root / job_id).mkdir()
        return job_id, self.root / job_id / "input.bin"

    def discard(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def create(self, job_id: str, model: str, key_id: str, n_inputs: int) -> None:
        self._active[job_id] = key_id
        self._write(
            job_id,
            {
                "id": job_id,
                "model": model,
                "key_id": key_id,
                "state": "queued",
                "progress": 0.0,
                "created": time.time(),
                "inputs": n_inputs,
            },
        )

    def _write(self, job_id: str, status: dict) -> None:
        tmp = self.root / job_id / "status.json.tmp"
        tmp.write_text(json.dumps(status))
        tmp.replace(self.root / job_id / "status.json")

    def exists(self, job_id: str) -> bool:
        return len(job_id) == 32 and (self.root / job_id / "status.json").is_file()

    def status(self, job_id: str) -> dict:
        """The stored status; a running job's progress as its worker last wrote it."""
        status = json.loads((self.root / job_id / "status.json").read_text())
        if status["state"] == "running":
            with contextlib.suppress(OSError, ValueError):  # not written yet
                status["progress"] = float(self.progress_path(job_id).read_text())
        return status

    def progress_path(self, job_id: str) -> Path:
        return self.root / job_id / "progress"

    def input_path(self, job_id: str) -> Path:
        return self.root / job_id / "input.bin"

    def update(self, job_id: str, **changes) -> None:
        self._write(job_id, {**self.status(job_id), **changes})

    def _end(self, job_id: str) -> None:
        self._active.pop(job_id, None)
        self.input_path(job_id).unlink(missing_ok=True)
        self.progress_path(job_id).unlink(missing_ok=True)

    def fail(self, job_id: str, error: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.update(job_id, state="failed", error=error, finished=time.time())
        self._end(job_id)

    def finish(self, job_id: str, result: bytes) -> None:
        tmp = self.root / job_id / "result.bin.tmp"
        tmp.write_bytes(result)
        tmp.replace(self.result_path(job_id))
        self.update(job_id, state="done", progress=1.0, finished=time.time())
        self._end(job_id)

    def result_path(self, job_id: str) -> Path:
        return self.root / job_id / "result.bin"

    # --- expiry ------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> int:
        """Delete ended jobs older than the TTL; → how many went."""
        now = time.time() if now is None else now
        removed = 0
        for status_file in self.root.glob("*/status.json"):
            job_id = status_file.parent.name
            if job_id in self._active:
                continue
            try:
                status = json.loads(status_file.read_text())
                ended = float(status.get("finished", status.get("created", 0.0)))
            except (OSError, ValueError, TypeError):
                ended = 0.0
            if now - ended > self.ttl_s:
                self.discard(job_id)
                removed += 1
        return removed

    def usage(self) -> dict:
        size = sum(p.stat().st_size for p in self.root.glob("*/*") if p.is_file())
        return {"active": len(self._active), "bytes": size}
