"""BFV single packing: one image per request, exact — the CKKS single schedule on integers.

The slot schedule is :mod:`crypto_nn.slots` (client-side im2col, hybrid diagonals with
baby-step/giant-step, power-of-two rotations). BFV's batching holds two rows of N/2 slots
that ``rotate_rows`` turns independently, so every vector is written into both rows and
row 0 is read back. There are no scales: weights are integers mod t and the logits are
exact, recombined by the CRT when one plaintext prime is too small for their range.

Noise is the constraint, not precision: a product with a *vector* plaintext multiplies
the noise by about N·t (a batch plan's scalar weights cost only |w|), so the ring degree
is chosen by trial runs on the extreme input — the smallest N that ends with
``MIN_NOISE_BUDGET`` bits to spare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tenseal.sealapi as seal

from crypto_nn import slots
from crypto_nn.bfv.client import flatten, key_sets, public_parts, split
from crypto_nn.bfv.layers import layers_from_int_model
from crypto_nn.bfv.params import (
    MIN_NOISE_BUDGET,
    BfvParams,
    batching_primes,
    crt_combine,
    default_coeff,
)
from crypto_nn.bfv.plan import served
from crypto_nn.errors import CompileError, ContextError
from crypto_nn.roles import (
    FORMAT,
    VERSION,
    Send,
    check_pixels,
    check_segment,
    key_description,
    timed,
)
from crypto_nn.wire import seal_bytes
from crypto_nn.wire.key_checks import KeySpec, load_keys
from integer_nn.model import IntModel

SINGLE_PLAIN_BITS = (50, 40, 30)  # widest first; a vector plaintext costs ≈ log2(N·t) bits


@dataclass
class BfvSinglePlan:
    program: slots.Program
    params: BfvParams
    in_shape: tuple[int, ...]
    input_max: int
    logit_bound: int
    n_outputs: int
    name: str = "model-bfv-single"
    classes: tuple[str, ...] = ()
    pixel_max: int = 0
    output_scale: float = 1.0
    scheme = "bfv"
    packing = "single"

    @property
    def rotations(self) -> list[int]:
        return self.program.rotations

    @property
    def input_layouts(self) -> list[np.ndarray]:
        return self.program.layouts

    def key_specs(self) -> list[KeySpec]:
        return self.params.key_specs(relin=True, rotations=self.rotations)

    def input_count(self, segment: int = 0) -> int:
        check_segment(segment, 1)
        return len(self.input_layouts) * len(self.params.plain_moduli)

    def evaluator(self, public_context: bytes) -> BfvSingleEvaluator:
        return BfvSingleEvaluator(self, public_context)

    def save(self, path: str | Path, source: dict | None = None) -> Path:
        from crypto_nn import roles

        return roles.save(self, path, source)

    def describe(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "scheme": "bfv",
            "packing": "single",
            "tables": "none",
            "params": self.params.describe(),
            "logit_bound": str(self.logit_bound),
            "rotations": self.rotations,
            "keys": key_description(self.key_specs()),
            "zero_diagonals_skipped": self.program.skipped_diagonals,
            "segments": 1,
            "round_trips": 0,
            "input": {
                "shape": list(self.in_shape),
                "pixel_max": self.pixel_max,
                "input_max": self.input_max,
                "layouts": [layout.tolist() for layout in self.input_layouts],
            },
            "output": {
                "logits": self.n_outputs,
                "classes": list(self.classes),
                "output_scale": self.output_scale,
            },
        }


def _ints(values: np.ndarray, t: int, n_slots: int) -> list[int]:
    """A slot vector (integers as floats or ints) mod t, written into both batching rows."""
    row = np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64) % t
    row = np.resize(row, n_slots)
    return np.concatenate([row, row]).astype(np.uint64).tolist()


class BfvSingleClient:
    """Secret keys (one per plaintext prime), encrypt one image, decrypt and CRT-combine."""

    def __init__(self, plan: BfvSinglePlan) -> None:
        self.plan = plan
        self._sets = key_sets(plan.key_specs())

    def public_context(self) -> bytes:
        return public_parts(self._sets)

    def encrypt_single(self, x_int: np.ndarray) -> list[list[bytes]]:
        """One integer image (C, H, W) in [0, input_max] → per prime, one ciphertext per chunk."""
        x = np.asarray(x_int, dtype=np.int64)
        if x.shape != tuple(self.plan.in_shape):
            raise ContextError(f"an image of shape {x.shape}; the plan takes {self.plan.in_shape}")
        if x.min() < 0 or x.max() > self.plan.input_max:
            raise ContextError(f"inputs must be integers in [0, {self.plan.input_max}]")
        vectors = slots.encode_image(self.plan.input_layouts, x)
        out = []
        for _, _, enc, _, encoder, t, _ in self._sets:
            cts = []
            for v in vectors:
                pt = seal.Plaintext()
                encoder.encode(_ints(v, t, encoder.slot_count() // 2), pt)
                cts.append(seal_bytes.dumps(enc.encrypt_symmetric(pt)))
            out.append(cts)
        return out

    def decrypt_single(self, outputs: list[list[bytes]]) -> np.ndarray:
        residues = []
        for (ctx, _, _, dec, encoder, _, _), cts in zip(self._sets, outputs, strict=True):
            pt = seal.Plaintext()
            dec.decrypt(seal_bytes.loads(seal.Ciphertext, cts[0], ctx, what="output"), pt)
            values = encoder.decode_uint64(pt)
            residues.append(np.asarray(values[: self.plan.n_outputs], dtype=np.int64))
        return crt_combine(residues, self.plan.params.plain_moduli)

    def noise_budget(self, outputs: list[list[bytes]]) -> int:
        return min(
            dec.invariant_noise_budget(seal_bytes.loads(seal.Ciphertext, cts[0], ctx))
            for (ctx, _, _, dec, _, _, _), cts in zip(self._sets, outputs, strict=True)
        )

    def infer(
        self,
        images: np.ndarray,
        send: Send,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """The Client role: float images in [0, 1], one request per image → exact logits."""
        images = np.asarray(images, dtype=np.float64)
        check_pixels(images)
        primes = len(self.plan.params.plain_moduli)
        logits = []
        for i, image in enumerate(np.rint(images * self.plan.pixel_max).astype(np.int64)):
            cts = timed(timings, "encrypt_s", lambda x=image: flatten(self.encrypt_single(x)))
            outs = timed(timings, "server_s", lambda cts=cts: send(0, cts))
            logits.append(
                timed(timings, "decrypt_s", lambda o=outs: self.decrypt_single(split(o, primes)))
            )
            if on_progress is not None:
                on_progress(i + 1, len(images))
        return np.stack(logits)


class BfvSingleEvaluator:
    """Server side: the single schedule under each plaintext prime."""

    def __init__(self, plan: BfvSinglePlan, public_context: bytes) -> None:
        self.plan = plan
        self._sets = [
            (
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
            encoder.encode(_ints(values, t, half), p)
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

    def _run_one(self, ctx, ev, relin, galois, t, encoded, payloads: list[bytes]) -> bytes:
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
        for step, enc in zip(self.plan.program.steps, encoded, strict=True):
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
        return flatten(self.run_primes(split(payloads, len(self._sets))))

    def run_primes(self, payloads: list[list[bytes]]) -> list[list[bytes]]:
        if len(payloads) != len(self._sets):
            raise ContextError(
                f"{len(payloads)} ciphertext sets; the plan has {len(self._sets)} primes"
            )
        return [[self._run_one(*s, p)] for s, p in zip(self._sets, payloads, strict=True)]


def compile_bfv_single(
    model: IntModel, *, n: int | None = None, verify: bool = True, name: str = "model-bfv-single"
) -> BfvSinglePlan:
    """A single-packing BFV plan for a polynomial IntModel (affine (x² affine)*).

    Tries the smallest N first and, for each, the widest plaintext primes first (fewer
    primes: proportionally less work and fewer keys), keeping the first plan whose trial
    run on the extreme input ends with ``MIN_NOISE_BUDGET`` bits to spare."""
    layers = layers_from_int_model(model)
    logit_bound = max(abs(model.stats[-1].worst.lo), abs(model.stats[-1].worst.hi))
    left, tried = None, []
    for degree in [n] if n else [8192, 16384, 32768]:
        bits, primes = default_coeff(degree)
        program = slots.program(layers, degree // 2)
        for plain_bits in SINGLE_PLAIN_BITS:
            plan = BfvSinglePlan(
                program=program,
                params=BfvParams(
                    degree, bits, batching_primes(degree, plain_bits, logit_bound, primes)
                ),
                in_shape=tuple(model.in_shape),
                input_max=model.input_max,
                logit_bound=logit_bound,
                n_outputs=layers[-1].weight.shape[0],
            )
            if not verify:
                return served(plan, model, name)
            client = BfvSingleClient(plan)
            out = BfvSingleEvaluator(plan, client.public_context()).run_primes(
                client.encrypt_single(np.full(plan.in_shape, plan.input_max, np.int64))
            )
            left = client.noise_budget(out)
            tried.append(f"N={degree}, {plain_bits}-bit t: {left} bits left")
            if left >= MIN_NOISE_BUDGET:
                return served(plan, model, name)
    raise CompileError(
        f"BFV single packing runs out of noise budget ({'; '.join(tried)}; need ≥ "
        f"{MIN_NOISE_BUDGET}); use batch packing or a shallower model"
    )
