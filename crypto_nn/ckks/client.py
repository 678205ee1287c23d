"""Client side of a plan: make keys, encrypt a batch, decrypt and decode. Bytes out, bytes in.

The secret key never leaves :class:`CkksClient`; :meth:`CkksClient.public_context` is
what goes to the server. Inputs are encrypted with the secret key (SEAL's symmetric,
*seeded* encryption: the second polynomial is replaced by a 64-byte seed, halving the
upload) and modulus-switched to nothing lower than the plan needs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tenseal.sealapi as seal

from crypto_nn import slots
from crypto_nn.ckks.plan import CkksPlan
from crypto_nn.errors import ContextError
from crypto_nn.roles import Send, check_pixels, timed
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import seal_bytes


class CkksClient:
    """A secret key for one plan's parameters, with its encoder, encryptor and decryptor."""

    def __init__(self, plan: CkksPlan, secret: bytes | None = None) -> None:
        """New keys, or the ones saved with :meth:`save_secret` when ``secret`` is given."""
        self.plan = plan
        self.context = plan.params.seal_context()
        if secret is None:
            self._keygen = seal.KeyGenerator(self.context)
        else:
            key = seal_bytes.loads(seal.SecretKey, secret, self.context, what="secret key")
            self._keygen = seal.KeyGenerator(self.context, key)
        self._secret = self._keygen.secret_key()
        self.encoder = seal.CKKSEncoder(self.context)
        self._encryptor = seal.Encryptor(self.context, self._secret)
        self._decryptor = seal.Decryptor(self.context, self._secret)

    def public_context(self) -> bytes:
        """The evaluation context for the server: parameters, and relinearisation keys when
        the plan multiplies ciphertexts (seeded: half their size). Never the secret key."""
        parts = {"params": seal_bytes.dumps(self.plan.params.seal_parameters())}
        if self.plan.needs_relin_keys:
            parts["relin_keys"] = seal_bytes.dumps(self._keygen.create_relin_keys())
        if self.plan.rotations:  # only the steps the plan uses, not all 2·log2(N) of them
            tool = self.context.key_context_data().galois_tool()
            elts = [tool.get_elt_from_step(step) for step in self.plan.rotations]
            parts["galois_keys"] = seal_bytes.dumps(self._keygen.create_galois_keys(elts))
        client = ctx_format.client_id(self.save_secret())
        return ctx_format.pack(self.plan.scheme, parts, client=client)

    def save_secret(self) -> bytes:
        return seal_bytes.dumps(self._secret)

    def encrypt_batch(
        self, images: np.ndarray, on_progress: Callable[[int, int], None] | None = None
    ) -> list[bytes]:
        """(n, C, H, W) floats in [0, 1], n ≤ slots → one ciphertext per input value.

        ``on_progress(done, total)`` is called after each ciphertext (for a progress bar)."""
        images = np.asarray(images, dtype=np.float64)
        n, n_slots = len(images), self.plan.params.slots
        if images.shape[1:] != tuple(self.plan.in_shape):
            raise ContextError(
                f"images of shape {images.shape[1:]}, the plan takes {tuple(self.plan.in_shape)}"
            )
        if not 1 <= n <= n_slots:
            raise ContextError(f"{n} images: a batch holds 1 to {n_slots} (one per slot)")
        check_pixels(images)
        flat = images.reshape(n, -1).T  # (inputs, n): row i = input value i of every image
        out = []
        for row in flat:
            pt = seal.Plaintext()
            self.encoder.encode(row.tolist(), self.plan.params.scale, pt)
            out.append(seal_bytes.dumps(self._encryptor.encrypt_symmetric(pt)))
            if on_progress is not None:
                on_progress(len(out), len(flat))
        return out

    def encrypt_single(self, image: np.ndarray) -> list[bytes]:
        """One (C, H, W) image in [0, 1] → the single-packing plan's input ciphertexts."""
        image = np.asarray(image, dtype=np.float64)
        if self.plan.packing != "single":
            raise ContextError(f"plan {self.plan.name} packs batches; use encrypt_batch")
        if image.shape != tuple(self.plan.in_shape):
            raise ContextError(
                f"an image of shape {image.shape}; the plan takes {tuple(self.plan.in_shape)}"
            )
        check_pixels(image)
        out = []
        for values in slots.encode_image(self.plan.input_layouts, image):
            pt = seal.Plaintext()
            self.encoder.encode(values.tolist(), self.plan.params.scale, pt)
            out.append(seal_bytes.dumps(self._encryptor.encrypt_symmetric(pt)))
        return out

    def decrypt_single(self, outputs: list[bytes]) -> np.ndarray:
        """The single-packing plan's output ciphertext → (classes,) float logits."""
        if len(outputs) != 1:
            raise ContextError(f"{len(outputs)} output ciphertexts; a single plan returns 1")
        ct = seal_bytes.loads(seal.Ciphertext, outputs[0], self.context, what="output")
        pt = seal.Plaintext()
        self._decryptor.decrypt(ct, pt)
        return np.asarray(self.encoder.decode_double(pt))[: self.plan.n_outputs]

    def decrypt_batch(self, outputs: list[bytes], n: int) -> np.ndarray:
        """Output ciphertexts → (n, classes) float logits."""
        if len(outputs) != self.plan.n_outputs:
            raise ContextError(
                f"{len(outputs)} output ciphertexts, the plan has {self.plan.n_outputs}"
            )
        logits = np.empty((n, len(outputs)))
        for j, data in enumerate(outputs):
            ct = seal_bytes.loads(seal.Ciphertext, data, self.context, what=f"output {j}")
            pt = seal.Plaintext()
            self._decryptor.decrypt(ct, pt)
            logits[:, j] = np.asarray(self.encoder.decode_double(pt))[:n]
        return logits

    def infer(
        self,
        images: np.ndarray,
        send: Send,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """(n, C, H, W) floats in [0, 1] → (n, classes) logits: one request for a batch
        plan, one per image for a single plan. ``on_progress`` counts ciphertexts
        (batch) or images (single)."""
        images = np.asarray(images, dtype=np.float64)
        if self.plan.packing == "single":
            logits = []
            for i, image in enumerate(images):
                cts = timed(timings, "encrypt_s", lambda image=image: self.encrypt_single(image))
                outs = timed(timings, "server_s", lambda cts=cts: send(0, cts))
                logits.append(
                    timed(timings, "decrypt_s", lambda outs=outs: self.decrypt_single(outs))
                )
                if on_progress is not None:
                    on_progress(i + 1, len(images))
            return np.stack(logits)
        cts = timed(timings, "encrypt_s", lambda: self.encrypt_batch(images, on_progress))
        outs = timed(timings, "server_s", lambda: send(0, cts))
        return timed(timings, "decrypt_s", lambda: self.decrypt_batch(outs, len(images)))


def make_keys(plan: CkksPlan) -> tuple[CkksClient, bytes]:
    """→ (secret client keys, public context bytes for the server)."""
    keys = CkksClient(plan)
    return keys, keys.public_context()
