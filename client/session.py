"""Encrypted inference of a set of images through a served plan, whatever its packing.

Batch plans take every image in one request (one ciphertext per input value); single
plans take one image per request (one ciphertext per layout chunk). Callers get logits
and timings either way, and never see which ciphertexts went where.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from client.api import Client
from crypto_nn.keys import ClientKeys


@dataclass
class Outcome:
    logits: np.ndarray  # (n, classes)
    timings: dict[str, float] = field(default_factory=dict)  # encrypt_s, server_s, decrypt_s
    upload_bytes: int = 0
    requests: int = 0
    job_id: str | None = None


def run_images(
    client: Client,
    keys: ClientKeys,
    model: str,
    key_id: str,
    images: np.ndarray,
    *,
    job: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Encrypt, send, decrypt. ``on_progress(done, total)`` counts ciphertexts (batch) or
    images (single)."""
    t = {"encrypt_s": 0.0, "server_s": 0.0, "decrypt_s": 0.0}

    def timed(key, fn):
        t0 = time.perf_counter()
        out = fn()
        t[key] += time.perf_counter() - t0
        return out

    if keys.plan.packing == "single":
        logits, upload = [], 0
        for i, image in enumerate(images):
            cts = timed("encrypt_s", lambda image=image: keys.encrypt_single(image))
            upload += sum(map(len, cts))
            outs = timed("server_s", lambda cts=cts: client.infer(model, key_id, cts))
            logits.append(timed("decrypt_s", lambda outs=outs: keys.decrypt_single(outs)))
            if on_progress is not None:
                on_progress(i + 1, len(images))
        return Outcome(np.stack(logits), t, upload, len(images))
    cts = timed("encrypt_s", lambda: keys.encrypt_batch(images, on_progress=on_progress))
    job_id = None
    if job:
        job_id = timed("server_s", lambda: client.submit_job(model, key_id, cts))
        outs = timed("server_s", lambda: client.wait_job(job_id))
    else:
        outs = timed("server_s", lambda: client.infer(model, key_id, cts))
    logits = timed("decrypt_s", lambda: keys.decrypt_batch(outs, len(images)))
    return Outcome(logits, t, sum(map(len, cts)), 1, job_id)
