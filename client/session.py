"""Encrypted inference of a set of images through a served plan, whatever its scheme,
packing or round trips.

The plan's Client (``crypto_nn.client_for``) drives the protocol — one request for a
batch, one per image for single packing, one per segment for client-aided BFV — against
``send(segment, ciphertexts)``, which is HTTP here. Callers get logits and timings either
way, and never see which ciphertexts went where.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from client.api import Client
from crypto_nn.roles import Client as PlanClient


@dataclass
class Outcome:
    logits: np.ndarray  # (n, classes)
    timings: dict[str, float] = field(default_factory=dict)  # encrypt_s, server_s, decrypt_s
    upload_bytes: int = 0
    requests: int = 0
    job_id: str | None = None


def run_images(
    client: Client,
    keys: PlanClient,
    model: str,
    key_id: str,
    images: np.ndarray,
    *,
    job: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Encrypt, send, decrypt. ``job``: each request as a job, polled to its end."""
    timings = {"encrypt_s": 0.0, "server_s": 0.0, "decrypt_s": 0.0}
    sent = {"bytes": 0, "requests": 0, "job_id": None}

    def send(segment: int, ciphertexts: list[bytes]) -> list[bytes]:
        sent["bytes"] += sum(map(len, ciphertexts))
        sent["requests"] += 1
        if not job:
            return client.infer(model, key_id, ciphertexts, segment)
        sent["job_id"] = client.submit_job(model, key_id, ciphertexts, segment)
        return client.wait_job(sent["job_id"])

    logits = keys.infer(images, send, on_progress=on_progress, timings=timings)
    return Outcome(np.asarray(logits), timings, sent["bytes"], sent["requests"], sent["job_id"])
