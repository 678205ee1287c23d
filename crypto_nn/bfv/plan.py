"""BFV batch plans: the IntModel's polynomial network, exactly, under encryption.

The integer network (integer_nn, ``square="exact"``: affine layers and x², no tables)
runs slot-wise under BFV: one ciphertext per input value, one image per slot (N slots),
under as many plaintext primes as the logits' range needs (``bfv.params``). Decrypted
logits equal ``IntModel.forward`` bit for bit.

A :class:`BfvPlan` is one exact *segment*; served plans are one segment (batch) or
several with client ops between them (``bfv.client_aided``), and both fill the
:class:`crypto_nn.roles.Plan` role through :class:`SegmentedPlan`.

Noise is planned, not trusted: SEAL's default modulus for N = 4096 decrypts depth-2
products wrongly without raising. ``compile_bfv`` runs the plan once on extreme inputs
with a throwaway key and refuses it unless every modulus keeps ≥ ``MIN_NOISE_BUDGET``
bits of invariant noise budget.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crypto_nn.bfv.layers import IntAffine, IntSquareLayer, fold_constants, layers_from_int_model
from crypto_nn.bfv.params import (
    MAX_PLAIN_BITS,
    MIN_NOISE_BUDGET,
    NOISE_MARGIN,
    PLAIN_BITS,
    BfvParams,
    batching_primes,
    default_coeff,
)
from crypto_nn.bfv.tables import IntPolyTable
from crypto_nn.errors import CompileError
from crypto_nn.roles import FORMAT, VERSION, check_segment, key_description
from crypto_nn.wire.key_checks import KeySpec
from integer_nn.model import IntModel


class SegmentedPlan:
    """The Plan role for BFV batch plans of one or more exact segments (client ops between
    them run at the client). Subclasses provide ``segments``, ``client_ops``,
    ``cut_shapes``, ``name``, ``classes``, ``pixel_max``, ``output_scale``."""

    scheme = "bfv"
    packing = "batch"

    def key_specs(self) -> list[KeySpec]:
        specs: list[KeySpec] = []
        for segment in self.segments:
            specs += segment.segment_specs(first=len(specs))
        return specs

    def input_count(self, segment: int = 0) -> int:
        check_segment(segment, len(self.segments))
        seg = self.segments[segment]
        return seg.n_inputs * len(seg.params.plain_moduli)

    @property
    def segment_count(self) -> int:
        return len(self.segments)

    def evaluator(self, public_context: bytes):
        from crypto_nn.bfv.batch import SegmentEvaluators

        return SegmentEvaluators(self, public_context)

    def save(self, path: str | Path, source: dict | None = None) -> Path:
        from crypto_nn import roles

        return roles.save(self, path, source)

    def describe(self) -> dict[str, object]:
        from crypto_nn.bfv.client import op_description

        first = self.segments[0]
        tables = (
            "client-aided"
            if self.client_ops
            else "poly"
            if any(isinstance(layer, IntPolyTable) for layer in first.layers)
            else "none"
        )
        n_in = int(np.prod(first.in_shape))
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "scheme": "bfv",
            "packing": "batch",
            "tables": tables,
            "depth": max(s.products for s in self.segments),
            "params": first.params.describe(),
            "rotations": [],
            "relin_keys": any(s.needs_relin_keys for s in self.segments),
            "galois_keys": False,
            "keys": key_description(self.key_specs()),
            "segments": len(self.segments),
            "round_trips": len(self.client_ops),
            "input": {
                "shape": list(first.in_shape),
                "values": "float in [0, 1]",
                "pixel_max": self.pixel_max,
                "encoding": (
                    f"pixels as integers round(x·{self.pixel_max}); per plaintext prime, one "
                    f"ciphertext per input value ({n_in}, NCHW order), one image per slot, up "
                    f"to {first.params.poly_modulus_degree} images; ciphertexts prime-major"
                ),
            },
            "output": {
                "logits": self.segments[-1].n_outputs,
                "classes": list(self.classes),
                "output_scale": self.output_scale,
                "decoding": "per prime, slot i of output j = logit j of image i mod t; CRT "
                "over the primes gives the exact integer logit (× output_scale: float)",
            },
            "segments_detail": [s.describe_segment() for s in self.segments],
            "client_ops": [[op_description(op) for op in ops] for ops in self.client_ops],
            "cut_shapes": [list(shape) for shape in self.cut_shapes],
        }


@dataclass
class BfvPlan(SegmentedPlan):
    layers: list[IntAffine | IntSquareLayer]
    params: BfvParams
    in_shape: tuple[int, ...]
    input_max: int  # inputs are integers in [input_min, input_min + input_max]
    logit_bound: int  # |logit| ≤ this for every valid input (integer_nn's range analysis)
    constant_outputs: dict[int, int]  # logits no input reaches: known without decryption
    input_min: int = 0  # the client encrypts x − input_min; the first bias absorbs it
    name: str = "model-bfv"
    classes: tuple[str, ...] = ()
    pixel_max: int = 0  # served: the client sends round(pixel · pixel_max)
    output_scale: float = 1.0
    client_ops: list = field(default_factory=list)  # one segment: none
    cut_shapes: list = field(default_factory=list)

    @property
    def segments(self) -> list[BfvPlan]:
        return [self]

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].weight.shape[0]

    @property
    def products(self) -> int:
        """Ciphertext products in a row (the multiplicative depth)."""
        squares = sum(isinstance(layer, IntSquareLayer) for layer in self.layers)
        return squares + sum(
            2 * layer.depth for layer in self.layers if isinstance(layer, IntPolyTable)
        )

    @property
    def needs_relin_keys(self) -> bool:
        return self.products > 0

    def segment_specs(self, first: int = 0) -> list[KeySpec]:
        return self.params.key_specs(relin=self.needs_relin_keys, first=first)

    def describe_segment(self) -> dict[str, object]:
        return {
            "params": self.params.describe(),
            "inputs": self.n_inputs,
            "outputs": self.n_outputs,
            "input_range": [self.input_min, self.input_min + self.input_max],
            "constant_outputs": {str(k): int(v) for k, v in self.constant_outputs.items()},
            "logit_bound": str(self.logit_bound),
            "layers": [layer.describe() for layer in self.layers],
        }


def compile_bfv(
    model: IntModel,
    *,
    n: int | None = None,
    verify: bool = True,
    tables: str = "refuse",
    name: str = "model-bfv",
) -> BfvPlan:
    """A BFV batch plan for an IntModel; refused with the reason if it cannot fit.

    ``tables="poly"``: tables become interpolating polynomials over Z_t (non-interactive;
    see ``crypto_nn.bfv.tables``). Without ``n``, the smallest N ∈ {8192, 16384, 32768}
    whose trial run keeps enough noise budget is taken."""
    logit_bound = max(abs(model.stats[-1].worst.lo), abs(model.stats[-1].worst.hi))
    layers = layers_from_int_model(model, tables=tables)
    candidates = [n] if n else [8192, 16384, 32768]
    for i, degree in enumerate(candidates):
        try:
            plan = compile_layers(
                copy.deepcopy(layers),
                tuple(model.in_shape),
                (0, model.input_max),
                logit_bound,
                n=degree,
                verify=verify,
            )
        except CompileError as exc:
            if i == len(candidates) - 1 or "noise budget" not in str(exc):
                raise
            continue
        return served(plan, model, name)
    raise AssertionError("unreachable")


def served(plan, model: IntModel, name: str):
    """The plan with what its client needs to know of the model (name, classes, pixels)."""
    plan.name, plan.classes = name, tuple(model.classes)
    plan.pixel_max, plan.output_scale = model.input_max, float(model.output_scale)
    return plan


def compile_layers(
    layers: list[IntAffine | IntSquareLayer],
    in_shape: tuple[int, ...],
    in_range: tuple[int, int],
    logit_bound: int,
    *,
    n: int = 8192,
    verify: bool = True,
) -> BfvPlan:
    """A BFV batch plan for polynomial layers with inputs in ``in_range``.

    Plaintext primes start at ``PLAIN_BITS`` (most noise headroom). With ``verify``, the
    noise budget left on a trial run says how much larger t can be — each extra bit of t
    costs about one bit for the fresh ciphertext and one per ciphertext product — and
    larger primes are taken when that needs fewer of them (fewer moduli: proportionally
    faster), after a second trial confirms them.
    """
    in_lo, in_hi = in_range
    if in_lo:  # inputs arrive as x − in_lo ≥ 0: W·x + b = W·(x − in_lo) + (b + W·in_lo)
        if not isinstance(layers[0], IntAffine):
            raise CompileError(
                "a segment with a shifted input range must start with an affine layer"
            )
        first = layers[0]
        layers = [IntAffine(first.weight, first.bias + first.weight.sum(1) * in_lo), *layers[1:]]
    constants = fold_constants(layers)
    coeff_bits, coeff_primes = default_coeff(n)

    def plan_for(bits: int) -> BfvPlan:
        return BfvPlan(
            layers=layers,
            params=BfvParams(n, coeff_bits, batching_primes(n, bits, logit_bound, coeff_primes)),
            in_shape=in_shape,
            input_max=in_hi - in_lo,
            logit_bound=logit_bound,
            constant_outputs=constants,
            input_min=in_lo,
        )

    plan = plan_for(PLAIN_BITS)
    if not verify:
        return plan
    left = _noise_left(plan)
    if left < MIN_NOISE_BUDGET:
        raise CompileError(
            f"BFV at N={n} ends with {left} bits of noise budget (need ≥ {MIN_NOISE_BUDGET}); "
            "use N=16384 or fewer bits / layers"
        )
    spare = (left - MIN_NOISE_BUDGET - NOISE_MARGIN) // (1 + plan.products)
    bits = min(MAX_PLAIN_BITS, PLAIN_BITS + max(0, spare))
    if bits > PLAIN_BITS:
        wider = plan_for(bits)
        if len(wider.params.plain_moduli) < len(plan.params.plain_moduli) and (
            _noise_left(wider) >= MIN_NOISE_BUDGET
        ):
            return wider
    return plan


def _noise_left(plan: BfvPlan) -> int:
    """Noise budget left after the plan on the worst inputs (all maximal), throwaway key."""
    from crypto_nn.bfv.batch import BfvEvaluator
    from crypto_nn.bfv.client import BfvClient

    client = BfvClient(plan)
    x = np.full((2, plan.n_inputs), plan.input_min, np.int64)
    x[0] = plan.input_min + plan.input_max
    outputs = BfvEvaluator(plan, client.public_context()).run_primes(client.encrypt_batch(x))
    return min(client.noise_budgets(outputs))
