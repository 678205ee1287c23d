"""Batch jobs on disk: ``state/jobs/<id>/`` holds ``status.json``, ``input.bin``, ``result.bin``.

A job's status is rewritten atomically at each step (queued → running → done | failed), so
a restart finds finished results where they were; jobs that were queued or running when
the server stopped are marked failed with that reason rather than silently lost.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from pathlib import Path

STATES = ("queued", "running", "done", "failed")


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        for status_file in self.root.glob("*/status.json"):
            status = json.loads(status_file.read_text())
            if status["state"] in ("queued", "running"):
                self._write(
                    status_file.parent.name,
                    {**status, "state": "failed", "error": "the server restarted during the job"},
                )

    def _write(self, job_id: str, status: dict) -> None:
        tmp = self.root / job_id / "status.json.tmp"
        tmp.write_text(json.dumps(status))
        tmp.replace(self.root / job_id / "status.json")

    def create(self, model: str, key_id: str, body: bytes, n_inputs: int) -> str:
        job_id = secrets.token_hex(16)
        (self.root / job_id).mkdir()
        (self.root / job_id / "input.bin").write_bytes(body)
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
        return job_id

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

    def update(self, job_id: str, **changes) -> None:
        self._write(job_id, {**self.status(job_id), **changes})

    def input(self, job_id: str) -> bytes:
        return (self.root / job_id / "input.bin").read_bytes()

    def finish(self, job_id: str, result: bytes) -> None:
        tmp = self.root / job_id / "result.bin.tmp"
        tmp.write_bytes(result)
        tmp.replace(self.root / job_id / "result.bin")
        (self.root / job_id / "input.bin").unlink(missing_ok=True)
        self.progress_path(job_id).unlink(missing_ok=True)
        self.update(job_id, state="done", progress=1.0, finished=time.time())

    def result_path(self, job_id: str) -> Path:
        return self.root / job_id / "result.bin"
