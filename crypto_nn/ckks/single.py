"""Server side of a single-image CKKS plan: the :mod:`crypto_nn.slots` schedule on SEAL.

Levels are spent only where needed: an affine layer's products (scale Δ·Δw) are not
rescaled; the activation squares them (Δ²Δw²) and one rescale by an (s + 2w)-bit prime
brings them back to ≈ Δ. The last affine layer is never rescaled; its output decrypts at
Δ·Δw from the first prime. Weight plaintexts are encoded once per plan and level and
shared by every evaluator (every client key) of that plan.

Rotation keys are checked when the evaluator is built (``wire.key_checks``, as at key
registration), so a context without a step the plan uses is refused there, never halfway
through a request.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
import tenseal.sealapi as seal

from crypto_nn.errors import ContextError
from crypto_nn.roles import Progress, check_segment
from crypto_nn.slots import Program, run_diagonals
from crypto_nn.wire import seal_bytes
from crypto_nn.wire.key_checks import load_keys

if TYPE_CHECKING:  # the plan imports this module (lazily): no cycle at run time
    from crypto_nn.ckks.plan import CkksPlan

_encoded: dict[int, tuple[Program, list]] = {}
_lock = threading.Lock()


def encode_program(
    plan: CkksPlan, context: seal.SEALContext, convert=None, *, rotated: bool = False
) -> list:
    """Per step, its weights encoded as SEAL plaintexts at the level the step runs, each
    passed through ``convert(plaintext, k)`` as soon as it is made (the ring route keeps
    residues only, so no step's plaintexts all exist at once: SEAL's memory pool keeps
    whatever it once held). ``rotated``: each first-layer weight as its H rotated copies
    (``Im2col.rotated_weights``, the unrotated first) instead of one."""
    encoder = seal.CKKSEncoder(context)
    w_scale = float(2**plan.params.weight_scale_bits)
    parms_id = context.first_parms_id()
    encoded = []

    def encode(values: np.ndarray):
        pt = seal.Plaintext()
        encoder.encode(values.tolist(), parms_id, w_scale, pt)
        if convert is None:
            return pt
        return convert(pt, len(context.get_context_data(parms_id).parms().coeff_modulus()))

    for step in plan.program.steps:
        if step.kind == "im2col" and rotated:
            first = step.im2col
            encoded.append(
                [
                    [[encode(w) for w in first.rotated_weights(c, r)] for r in range(len(chunk))]
                    for c, chunk in enumerate(first.weights)
                ]
            )
        elif step.kind == "im2col":
            encoded.append([[encode(w) for w in chunk] for chunk in step.im2col.weights])
        elif step.kind == "diagonals":
            encoded.append({key: encode(v) for key, v in step.diagonals.plain.items()})
        else:  # an activation ends the level
            encoded.append(None)
            parms_id = context.get_context_data(parms_id).next_context_data().parms_id()
    return encoded


def _encode_program(plan: CkksPlan, context: seal.SEALContext) -> list:
    """:func:`encode_program`'s plaintexts, cached per plan (the SEAL route)."""
    with _lock:
        cached = _encoded.get(id(plan))
        if cached and cached[0] is plan.program:
            return cached[1]
    encoded = encode_program(plan, context)
    with _lock:
        _encoded[id(plan)] = (plan.program, encoded)
    return encoded


class CkksSingleEvaluator:
    """Runs one single-packing plan on one image's ciphertexts for one public context."""

    def __init__(self, plan: CkksPlan, public_context: bytes, *, route: str = "ring") -> None:
        """``route``: "ring" runs the schedule in our kernels (``single_ring``: hoisted baby
        steps, parallel key switching); "seal" in SEAL's evaluator, one call per operation
        (the reference)."""
        if route not in ("ring", "seal"):
            raise ValueError(f"route {route!r}: ring or seal")
        if plan.program is None:
            raise ContextError(f"plan {plan.name} is not a single-packing plan")
        (keys,) = load_keys(public_context, plan.key_specs())
        self.plan = plan
        self.context = keys.context
        self.galois_keys, self.relin_keys = keys.galois_keys, keys.relin_keys
        self.encoder = seal.CKKSEncoder(self.context)
        self.evaluator = seal.Evaluator(self.context)
        self.route = route
        self._ring = None

    @property
    def weights(self) -> list:
        """Per step, the weight plaintexts at the step's level (the SEAL route; made on
        first use and cached per plan — the ring route never asks for them)."""
        return _encode_program(self.plan, self.context)

    def ring(self):
        """The residue-array evaluator (keys parsed once, on first use)."""
        if self._ring is None:
            from crypto_nn.ckks.single_ring import RingSingle

            self._ring = RingSingle(self)
        return self._ring

    # --- helpers -------------------------------------------------------------------------
    def _rotate(self, ct: seal.Ciphertext, step: int) -> seal.Ciphertext:
        out = seal.Ciphertext()
        self.evaluator.rotate_vector(ct, step, self.galois_keys, out)
        return out

    def _rotate_and_add(self, acc: seal.Ciphertext, steps: list[int]) -> None:
        for step in steps:
            self.evaluator.add_inplace(acc, self._rotate(acc, step))

    def _add_values(self, ct: seal.Ciphertext, values) -> None:
        """Add a constant (float) or a slot vector at the ciphertext's own scale and level."""
        pt = seal.Plaintext()
        v = float(values) if np.isscalar(values) else np.asarray(values).tolist()
        self.encoder.encode(v, ct.parms_id(), ct.scale, pt)
        self.evaluator.add_plain_inplace(ct, pt)

    # --- steps ---------------------------------------------------------------------------
    def _im2col(self, step, weights, xs: list[seal.Ciphertext]) -> list[seal.Ciphertext]:
        out = []
        for chunk, x in enumerate(xs):
            for pt in weights[chunk]:
                acc = seal.Ciphertext()
                self.evaluator.multiply_plain(x, pt, acc)
                self._rotate_and_add(acc, step.im2col.rotations)
                self._add_values(acc, step.biases[len(out)])
                out.append(acc)
        return out

    def _diagonals(self, step, weights, xs: list[seal.Ciphertext]) -> list[seal.Ciphertext]:
        acc = run_diagonals(
            step.diagonals, xs, weights, rotate=self._rotate, multiply=self._mul, add=self._add
        )
        if acc is None:  # SEAL refuses 0·x ("transparent"); there is no ciphertext to return
            raise ContextError("an all-zero layer cannot run encrypted")
        self._add_values(acc, step.diagonals.bias)
        return [acc]

    def _mul(self, ct: seal.Ciphertext, pt: seal.Plaintext) -> seal.Ciphertext:
        out = seal.Ciphertext()
        self.evaluator.multiply_plain(ct, pt, out)
        return out

    def _add(self, a: seal.Ciphertext, b: seal.Ciphertext) -> seal.Ciphertext:
        self.evaluator.add_inplace(a, b)
        return a

    def _square(self, x: seal.Ciphertext) -> seal.Ciphertext:
        sq = seal.Ciphertext()
        self.evaluator.square(x, sq)
        self.evaluator.relinearize_inplace(sq, self.relin_keys)
        return sq

    def _activation(self, step, xs: list[seal.Ciphertext]) -> list[seal.Ciphertext]:
        out = []
        for x in xs:
            y = self._square(x)
            if step.kind == "poly":  # z² + a·z + b, all at scale (Δ·Δw)²
                lin = seal.Ciphertext()
                a = seal.Plaintext()
                self.encoder.encode(float(step.a), x.parms_id(), x.scale, a)
                self.evaluator.multiply_plain(x, a, lin)
                self.evaluator.add_inplace(y, lin)
                self._add_values(y, step.b)
            self.evaluator.rescale_to_next_inplace(y)
            out.append(y)
        return out

    def evaluate(self, xs: list[seal.Ciphertext], on_progress=None) -> seal.Ciphertext:
        """``on_progress(fraction)`` as each step of the schedule starts."""
        progress = Progress(len(self.plan.program.steps), on_progress)
        for step, weights in zip(self.plan.program.steps, self.weights, strict=True):
            progress.step()
            if step.kind == "im2col":
                xs = self._im2col(step, weights, xs)
            elif step.kind == "diagonals":
                xs = self._diagonals(step, weights, xs)
            else:
                xs = self._activation(step, xs)
        return xs[0]

    def load_inputs(self, payloads: list[bytes]) -> list[seal.Ciphertext]:
        want = len(self.plan.input_layouts)
        if len(payloads) != want:
            raise ContextError(f"{len(payloads)} input ciphertexts; this plan takes {want}")
        return seal_bytes.load_fresh_ciphertexts(
            self.context, payloads, scale=self.plan.params.scale
        )

    def run(self, payloads: list[bytes], on_progress=None, *, segment: int = 0) -> list[bytes]:
        """The :class:`crypto_nn.roles.Evaluator` role: one image's bytes → the logits'."""
        check_segment(segment, 1)
        cts = self.load_inputs(payloads)
        if self.route == "ring":
            return [self.ring().run(cts, on_progress)]
        return [seal_bytes.dumps(self.evaluate(cts, on_progress))]
