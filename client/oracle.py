"""The encrypted service as a model an attacker can query: images in, logits out, every
query an encrypted inference through the real client — gradients never leave the server
because they never exist there.

Batch plans cost about the same per request whatever the number of images (one ciphertext
per input value, every slot busy or not); single plans cost per image. So a call with B
images goes to whichever served plan is cheaper for B, by the round-trip times measured
on the first calls — what an attacker paying for queries would do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from client.api import Client
from client.session import run_images
from crypto_nn.ckks.client import CkksClient
from crypto_nn.ckks.plan import CkksClientPlan


@dataclass
class _Served:
    name: str
    keys: CkksClient
    key_id: str
    seconds: list[float] = field(default_factory=list)  # per request (batch) or per image

    @property
    def cost(self) -> float:
        return float(np.median(self.seconds)) if self.seconds else 0.0


class EncryptedModel:
    """``model(x) -> logits`` over HTTP and CKKS; counts requests, images and seconds."""

    def __init__(self, client: Client, batch_model: str | None, single_model: str | None):
        if batch_model is None and single_model is None:
            raise ValueError("name a batch model, a single model, or both")
        self.client = client
        self.served: dict[str, _Served] = {}
        for packing, name in (("batch", batch_model), ("single", single_model)):
            if name is not None:
                plan = CkksClientPlan.from_description(client.model(name))
                keys = CkksClient(plan)
                self.served[packing] = _Served(
                    name, keys, client.register_key(keys.public_context())
                )
        self.requests = 0
        self.images = 0
        self.seconds = 0.0
        self.by_packing = {p: 0 for p in self.served}

    def _choose(self, b: int) -> str:
        if len(self.served) == 1:
            return next(iter(self.served))
        batch, single = self.served["batch"], self.served["single"]
        if not batch.seconds:  # measure each way once
            return "batch"
        if not single.seconds:
            return "single"
        return "single" if b * single.cost < batch.cost else "batch"

    def _run(self, packing: str, images: np.ndarray) -> np.ndarray:
        s = self.served[packing]
        t0 = time.perf_counter()
        out = run_images(self.client, s.keys, s.name, s.key_id, images)
        elapsed = time.perf_counter() - t0
        s.seconds.append(elapsed / len(images) if packing == "single" else elapsed)
        self.requests += out.requests
        self.by_packing[packing] += len(images)
        return out.logits

    def __call__(self, x: Tensor) -> Tensor:
        images = x.detach().cpu().numpy().astype(np.float32)
        t0 = time.perf_counter()
        packing = self._choose(len(images))
        if packing == "batch":
            slots = self.served["batch"].keys.plan.params.slots
            parts = [
                self._run("batch", images[i : i + slots]) for i in range(0, len(images), slots)
            ]
        else:
            parts = [self._run("single", images)]
        self.seconds += time.perf_counter() - t0
        self.images += len(images)
        return torch.from_numpy(np.concatenate(parts).astype(np.float32)).to(x.device)
