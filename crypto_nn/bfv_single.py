"""BFV single packing: one image per request, exact — the CKKS single schedule on integers.

The slot schedule is :mod:`crypto_nn.single` (client-side im2col, hybrid diagonals with
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

from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from crypto_nn import context as ctx_format
from crypto_nn import seal_bytes, single
from crypto_nn.bfv import (
    MIN_NOISE_BUDGET,
    BfvParams,
    _moduli,
    crt_combine,
    key_sets,
    layers_from_int_model,
    load_prime,
    public_parts,
)
from crypto_nn.ckks_single import galois_elements
from crypto_nn.errors import CompileError, ContextError
from integer_nn.model import IntModel

SINGLE_PLAIN_BITS = (50, 40, 30)  # widest first; a vector plaintext costs ≈ log2(N·t) bits


@dataclass
class BfvSinglePlan:
    program: single.Program
    params: BfvParams
    in_shape: tuple[int, ...]
    input_max: int
    logit_bound: int
    n_outputs: int

    @property
    def rotations(self) -> list[int]:
        return self.program.rotations

    @property
    def input_layouts(self) -> list[np.ndarray]:
        return self.program.layouts

    def describe(self) -> dict[str, object]:
        return {
            "scheme": "bfv",
            "packing": "single",
            "params": {
                "poly_modulus_degree": self.params.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(self.params.coeff_mod_bit_sizes),
                "plain_moduli": list(self.params.plain_moduli),
            },
            "logit_bound": str(self.logit_bound),
            "rotations": self.rotations,
            "zero_diagonals_skipped": self.program.skipped_diagonals,
            "round_trips": 0,
            "input": {"layouts": [layout.tolist() for layout in self.input_layouts]},
        }


def _ints(values: np.ndarray, t: int, slots: int) -> list[int]:
    """A slot vector (integers as floats or ints) mod t, written into both batching rows."""
    row = np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64) % t
    row = np.resize(row, slots)
    return np.concatenate([row, row]).astype(np.uint64).tolist()


class BfvSingleClient:
    """Secret keys (one per plaintext prime), encrypt one image, decrypt and CRT-combine."""

    def __init__(self, plan: BfvSinglePlan) -> None:
        self.plan = plan
        self._sets = key_sets(plan.params)

    def public_context(self) -> bytes:
        return public_parts(self._sets, self.plan.rotations)

    def encrypt_single(self, x_int: np.ndarray) -> list[list[bytes]]:
        """One integer image (C, H, W) in [0, input_max] → per prime, one ciphertext per chunk."""
        x = np.asarray(x_int, dtype=np.int64)
        if x.shape != tuple(self.plan.in_shape):
            raise ContextError(f"an image of shape {x.shape}; the plan takes {self.plan.in_shape}")
        if x.min() < 0 or x.max() > self.plan.input_max:
            raise ContextError(f"inputs must be integers in [0, {self.plan.input_max}]")
        vectors = single.encode_image(self.plan.input_layouts, x)
        out = []
        for _, _, enc, _, encoder, t in self._sets:
            cts = []
            for v in vectors:
                pt = seal.Plaintext()
                encoder.encode(_ints(v, t, encoder.slot_count() // 2), pt)
                cts.append(seal_bytes.dumps(enc.encrypt_symmetric(pt)))
            out.append(cts)
        return out

    def decrypt_single(self, outputs: list[list[bytes]]) -> np.ndarray:
        residues = []
        for (ctx, _, _, dec, encoder, _), cts in zip(self._sets, outputs, strict=True):
            pt = seal.Plaintext()
            dec.decrypt(seal_bytes.loads(seal.Ciphertext, cts[0], ctx, what="output"), pt)
            values = encoder.decode_uint64(pt)
            residues.append(np.asarray(values[: self.plan.n_outputs], dtype=np.int64))
        return crt_combine(residues, self.plan.params.plain_moduli)

    def noise_budget(self, outputs: list[list[bytes]]) -> int:
        return min(
            dec.invariant_noise_budget(seal_bytes.loads(seal.Ciphertext, cts[0], ctx))
            for (ctx, _, _, dec, _, _), cts in zip(self._sets, outputs, strict=True)
        )


class BfvSingleEvaluator:
    """Server side: the single schedule under each plaintext prime."""

    def __init__(self, plan: BfvSinglePlan, public_context: bytes) -> None:
        _, parts = ctx_format.unpack(public_context)
        self.plan = plan
        self._sets = []
        for i, t in enumerate(plan.params.plain_moduli):
            ctx, relin = load_prime(parts, i, t)
            name = f"galois_keys.{i}"
            if name not in parts:
                raise ContextError(f"BFV single context lacks {name} (rotation keys)")
            galois = seal_bytes.loads(seal.GaloisKeys, parts[name], ctx, what=name)
            elts = galois_elements(ctx, plan.rotations)
            missing = [
                s for s, e in zip(plan.rotations, elts, strict=True) if not galois.has_key(e)
            ]
            if missing:
                raise ContextError(f"{name} lacks rotation keys for steps {missing}")
            self._sets.append((ctx, seal.Evaluator(ctx), relin, galois, t, self._encode(ctx, t)))

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

        xs = [seal_bytes.loads(seal.Ciphertext, d, ctx, what="input") for d in payloads]
        if len(xs) != len(self.plan.input_layouts):
            raise ContextError(
                f"{len(xs)} ciphertexts; the plan takes {len(self.plan.input_layouts)}"
            )
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
                acc = single.run_diagonals(
                    step.diagonals, xs, plains, rotate=rotate, multiply=multiply, add=add
                )
                if acc is None:
                    raise ContextError("an all-zero layer cannot run encrypted")
                ev.add_plain_inplace(acc, bias)
                xs = [acc]
        return seal_bytes.dumps(xs[0])

    def run_bytes(self, payloads: list[list[bytes]]) -> list[list[bytes]]:
        if len(payloads) != len(self._sets):
            raise ContextError(
                f"{len(payloads)} ciphertext sets; the plan has {len(self._sets)} primes"
            )
        return [[self._run_one(*s, p)] for s, p in zip(self._sets, payloads, strict=True)]


def compile_bfv_single(
    model: IntModel, *, n: int | None = None, verify: bool = True
) -> BfvSinglePlan:
    """A single-packing BFV plan for a polynomial IntModel (affine (x² affine)*).

    Tries the smallest N first and, for each, the widest plaintext primes first (fewer
    primes: proportionally less work and fewer keys), keeping the first plan whose trial
    run on the extreme input ends with ``MIN_NOISE_BUDGET`` bits to spare."""
    layers = layers_from_int_model(model)
    logit_bound = max(abs(model.stats[-1].worst.lo), abs(model.stats[-1].worst.hi))
    left, tried = None, []
    for degree in [n] if n else [8192, 16384, 32768]:
        coeff = seal.CoeffModulus.BFVDefault(degree, seal.SEC_LEVEL_TYPE.TC128)
        bits = tuple(m.bit_count() for m in coeff)
        primes = {m.value() for m in seal.CoeffModulus.Create(degree, list(bits))}
        program = single.program(layers, degree // 2)
        for plain_bits in SINGLE_PLAIN_BITS:
            plan = BfvSinglePlan(
                program=program,
                params=BfvParams(degree, bits, _moduli(degree, plain_bits, logit_bound, primes)),
                in_shape=tuple(model.in_shape),
                input_max=model.input_max,
                logit_bound=logit_bound,
                n_outputs=layers[-1].weight.shape[0],
            )
            if not verify:
                return plan
            client = BfvSingleClient(plan)
            out = BfvSingleEvaluator(plan, client.public_context()).run_bytes(
                client.encrypt_single(np.full(plan.in_shape, plan.input_max, np.int64))
            )
            left = client.noise_budget(out)
            tried.append(f"N={degree}, {plain_bits}-bit t: {left} bits left")
            if left >= MIN_NOISE_BUDGET:
                return plan
    raise CompileError(
        f"BFV single packing runs out of noise budget ({'; '.join(tried)}; need ≥ "
        f"{MIN_NOISE_BUDGET}); use batch packing or a shallower model"
    )
