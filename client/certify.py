"""Certified prediction of an encrypted input: randomized smoothing through a batch plan.

Cohen et al.'s CERTIFY classifies many noisy copies of one image; a batch plan evaluates
one image per slot at the cost of one request. So the client draws the noise itself (the
server never sees the image or the noise, and cannot bias the sample), sends the noisy
copies as full batches, decrypts one prediction per copy, counts, and bounds p_A locally
with the project's one Clopper–Pearson implementation (``adversarial.defenses.smoothing``).

The noisy copies are drawn by ``smoothing.noisy_copies`` — the clear ``Smoothed.certify``
draws the same ones from the same seed — and clipped to [0, 1]: the base classifier is
f∘clip, for which the certificate is exact (the theorem holds for any base classifier).
BFV plans quantise the clipped copies exactly as the IntModel does, so the certificate is
for the integer network's smoothed classifier.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import torch

from adversarial.defenses import smoothing
from client.api import Client
from client.session import run_images
from crypto_nn.roles import Client as PlanClient
from nets.errors import UserError

CLIP = (0.0, 1.0)
# CKKS values are sized with a 2× margin over the calibration data's largest |value|
# (``ckks.params.value_bits``): a decoded logit past it means the plan's precision no
# longer held for that noise level, and its count would be wrong.
LOGIT_MARGIN = 2.0


@dataclass
class EncryptedCertificate:
    label: int  # the certified class, or smoothing.ABSTAIN
    radius: float  # certified L2 radius (0 when abstaining)
    p_lower: float
    candidate: int  # the class the n0 selection samples picked
    counts: list[int]  # the n estimation samples' class counts
    selection_counts: list[int]  # the n0 selection samples' class counts
    sigma: float
    alpha: float
    n0: int
    n: int  # estimation samples actually used (n asked for, rounded up to fill batches)
    n_requested: int
    batch: int  # images per request (the plan's slots)
    requests: int
    upload_bytes: int
    seed: int
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def batch_size(keys: PlanClient) -> int:
    """Images one request of this batch plan carries (one per slot)."""
    if hasattr(keys, "slots"):  # BFV: one image per slot of N
        return int(keys.slots)
    return int(keys.plan.params.slots)


def sample_sizes(n0: int, n: int, batch: int) -> tuple[int, int]:
    """(n0, n') with n' ≥ n and n0 + n' a whole number of batches: a request costs the same
    however many of its slots are used, so the spare slots become estimation samples."""
    total = math.ceil((n0 + n) / batch) * batch
    return n0, total - n0


def check_plan(desc: dict, sigma: float) -> None:
    """Refuse, with the reason, a plan that cannot give an honest count at this σ."""
    if desc.get("packing") != "batch":
        raise UserError(
            f"model {desc.get('name')!r} packs one image per request (single packing): "
            "certifying needs thousands of noisy copies per image — use its batch-packed model"
        )
    if sigma <= 0:
        raise UserError(f"--sigma {sigma}: the noise level must be > 0")
    if desc.get("scheme") == "ckks":
        calibrated = float(desc.get("noise_sigma", 0.0))
        if sigma > calibrated + 1e-12:
            raise UserError(
                f"--sigma {sigma}: model {desc.get('name')!r}'s CKKS plan was calibrated on "
                + (f"images with noise σ ≤ {calibrated}" if calibrated else "clean images only")
                + "; noisier inputs may pass its precision and miscount. Choose σ ≤ "
                f"{calibrated}, or serve a model trained with `adversarial defend --method "
                f"smoothing --arg sigma={sigma}` (its plans are calibrated for that σ), or "
                "use its BFV plan (exact for any σ)"
            )


def _batches(stream: Iterator[torch.Tensor], size: int) -> Iterator[np.ndarray]:
    """Re-chunk a stream of (k, C, H, W) tensors into arrays of ``size`` rows."""
    buf: list[torch.Tensor] = []
    held = 0
    for chunk in stream:
        buf.append(chunk)
        held += len(chunk)
        while held >= size:
            joined = torch.cat(buf)
            yield joined[:size].numpy()
            buf, held = [joined[size:]], held - size
    if held:
        yield torch.cat(buf).numpy()


def certify(
    client: Client,
    keys: PlanClient,
    desc: dict,
    key_id: str,
    image: np.ndarray,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 10_000,
    alpha: float = 0.001,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> EncryptedCertificate:
    """CERTIFY (Cohen et al. 2019) of one (C, H, W) image through the served batch plan."""
    check_plan(desc, sigma)
    smoothing.check_certify_args(sigma, n0, n, alpha)  # a DefenseError is a UserError
    batch = batch_size(keys)
    n0, n_used = sample_sizes(n0, n, batch)
    classes = int(desc["output"]["logits"])
    x = torch.from_numpy(np.asarray(image, dtype=np.float32))
    gen = torch.Generator().manual_seed(seed)
    stream = chain(
        smoothing.noisy_copies(x, n0, sigma, gen, CLIP),  # drawn first, as Smoothed.certify
        smoothing.noisy_copies(x, n_used, sigma, gen, CLIP),  # lazily: after the n0 above
    )
    limit = LOGIT_MARGIN * float(desc.get("max_abs_value", math.inf))
    timings = {"encrypt_s": 0.0, "server_s": 0.0, "decrypt_s": 0.0}
    preds, requests, upload = [], 0, 0
    total_requests = (n0 + n_used) // batch
    t0 = time.perf_counter()
    for samples in _batches(stream, batch):
        outcome = run_images(client, keys, desc["name"], key_id, samples)
        logits = np.asarray(outcome.logits)
        if desc["scheme"] == "ckks":
            worst = float(np.abs(logits).max())
            if worst > limit:
                bad = int((np.abs(logits) > limit).any(axis=1).sum())
                raise UserError(
                    f"{bad} of {len(samples)} noisy copies decoded logits up to {worst:.3g}, past "
                    f"the plan's calibrated range (±{limit:.3g}): at σ = {sigma} its precision "
                    "does not hold, and counting them would be wrong — lower σ or use BFV"
                )
        preds.append(logits.argmax(1).astype(np.int64))
        for key in timings:
            timings[key] += outcome.timings.get(key, 0.0)
        requests += outcome.requests
        upload += outcome.upload_bytes
        if on_progress is not None:
            on_progress(len(preds), total_requests)
    timings["total_s"] = time.perf_counter() - t0
    pred = np.concatenate(preds)
    selection = np.bincount(pred[:n0], minlength=classes)
    counts = np.bincount(pred[n0:], minlength=classes)
    cert = smoothing.certificate(int(selection.argmax()), counts, alpha, sigma)
    return EncryptedCertificate(
        label=cert.label,
        radius=cert.radius,
        p_lower=cert.p_lower,
        candidate=cert.candidate,
        counts=counts.tolist(),
        selection_counts=selection.tolist(),
        sigma=sigma,
        alpha=alpha,
        n0=n0,
        n=n_used,
        n_requested=n,
        batch=batch,
        requests=requests,
        upload_bytes=upload,
        seed=seed,
        timings=timings,
    )
