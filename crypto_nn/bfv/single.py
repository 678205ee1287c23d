"""BFV single packing's evaluator: one image per request, exact — the CKKS single schedule
on integers (the plan and its compiler: ``bfv.plan``, ``bfv.compile``).

The slot schedule is :mod:`crypto_nn.slots` (client-side im2col, hybrid diagonals with
baby-step/giant-step, power-of-two rotations). BFV's batching holds two rows of N/2 slots
that ``rotate_rows`` turns independently, so every vector is written into both rows and
row 0 is read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import tenseal.sealapi as seal

from crypto_nn import slots
from crypto_nn.bfv.client import flatten, slot_ints, split
from crypto_nn.errors import ContextError
from crypto_nn.roles import Progress, check_segment
from crypto_nn.wire import seal_bytes
from crypto_nn.wire.key_checks import load_keys

if TYPE_CHECKING:  # the plan imports this module (lazily): no cycle at run time
    from crypto_nn.bfv.plan import BfvSinglePlan


@dataclass
class SinglePrimeState:
    """The single evaluator's state for one plaintext prime: context, evaluator, keys, and
    the plan's weights encoded for that prime."""

    context: seal.SEALContext
    evaluator: seal.Evaluator
    relin_keys: seal.RelinKeys | None
    galois_keys: seal.GaloisKeys | None
    t: int
    encoded: list


class BfvSingleEvaluator:
    """Server side: the single schedule under each plaintext prime."""

    def __init__(self, plan: BfvSinglePlan, public_context: bytes) -> None:
        self.plan = plan
        self._sets = [
            SinglePrimeState(
                k.context,
                seal.Evaluator(k.context),
                k.relin_keys,
                k.galois_keys,
                k.spec.plain_modulus,
                self._encode(k.context, k.spec.plain_modulus),
            )
            for k in load_keys(public_context, plan.key_specs())
        ]

    def _encode(self, ctx: seal.SEALContext, t: int) -> list:
        encoder, half = (
            seal.BatchEncoder(ctx),
            ctx.first_context_data().parms().poly_modulus_degree() // 2,
        )

        def pt(values) -> seal.Plaintext:
            p = seal.Plaintext()
            encoder.encode(slot_ints(values, t, half), p)
            return p

        encoded = []
        for step in self.plan.program.steps:
            if step.kind == "im2col":
                weights = [[pt(w) for w in chunk] for chunk in step.im2col.weights]
                encoded.append((weights, [pt(b) for b in step.biases]))
            elif step.kind == "diagonals":
                diag = step.diagonals
                encoded.append(({k: pt(v) for k, v in diag.plain.items()}, pt(diag.bias)))
            else:
                encoded.append(None)
        return encoded

    def _run_one(self, prime: SinglePrimeState, payloads: list[bytes], progress=None) -> bytes:
        ctx, ev, relin, galois = prime.context, prime.evaluator, prime.relin_keys, prime.galois_keys
        encoded = prime.encoded

        def rotate(ct, step):
            out = seal.Ciphertext()
            ev.rotate_rows(ct, step, galois, out)
            return out

        def multiply(ct, pt):
            out = seal.Ciphertext()
            ev.multiply_plain(ct, pt, out)
            return out

        def add(a, b):
            ev.add_inplace(a, b)
            return a

        if len(payloads) != len(self.plan.input_layouts):
            raise ContextError(
                f"{len(payloads)} ciphertexts; the plan takes {len(self.plan.input_layouts)}"
            )
        xs = seal_bytes.load_fresh_ciphertexts(ctx, payloads, scale=1.0)
        progress = progress or Progress(0, None)
        for step, enc in zip(self.plan.program.steps, encoded, strict=True):
            progress.step()
            if step.kind == "square":
                for x in xs:
                    ev.square_inplace(x)
                    ev.relinearize_inplace(x, relin)
            elif step.kind == "im2col":
                weights, biases = enc
                out = []
                for chunk, x in enumerate(xs):
                    for w in weights[chunk]:
                        acc = seal.Ciphertext()
                        ev.multiply_plain(x, w, acc)
                        for r in step.im2col.rotations:
                            ev.add_inplace(acc, rotate(acc, r))
                        ev.add_plain_inplace(acc, biases[len(out)])
                        out.append(acc)
                xs = out
            else:
                plains, bias = enc
                acc = slots.run_diagonals(
                    step.diagonals, xs, plains, rotate=rotate, multiply=multiply, add=add
                )
                if acc is None:
                    raise ContextError("an all-zero layer cannot run encrypted")
                ev.add_plain_inplace(acc, bias)
                xs = [acc]
        return seal_bytes.dumps(xs[0])

    def run(self, payloads: list[bytes], on_progress=None, *, segment: int = 0) -> list[bytes]:
        """The Evaluator role: one image's prime-major bytes → the logits' (one per prime)."""
        check_segment(segment, 1)
        return flatten(self.run_primes(split(payloads, len(self._sets)), on_progress))

    def run_primes(self, payloads: list[list[bytes]], on_progress=None) -> list[list[bytes]]:
        if len(payloads) != len(self._sets):
            raise ContextError(
                f"{len(payloads)} ciphertext sets; the plan has {len(self._sets)} primes"
            )
        progress = Progress(len(self._sets) * len(self.plan.program.steps), on_progress)
        return [[self._run_one(s, p, progress)] for s, p in zip(self._sets, payloads, strict=True)]
