"""BFV plan data: :class:`BfvPlan` (one exact batch segment), :class:`ClientAidedPlan`
(segments with client ops between them), :class:`BfvSinglePlan` (one image per request),
:class:`BfvClientPlan` (what a client rebuilds of a segment from the JSON). Compilers
are in ``bfv.compile``, clients in ``bfv.client``, evaluators in ``bfv.batch`` and
``bfv.single``.

The integer network (integer_nn, ``square="exact"``: affine layers and x², no tables)

runs slot-wise under BFV: one ciphertext per input value, one image per slot (N slots),
under as many plaintext primes as the logits' range needs (``bfv.params``). Decrypted
logits equal ``IntModel.forward`` bit for bit.

A :class:`BfvPlan` is one exact *segment*; served plans are one segment (batch) or
several with client ops between them (client-aided: lookup tables at the client), and both fill the
:class:`crypto_nn.roles.Plan` role through :class:`SegmentedPlan`.

Noise is planned, not trusted: SEAL's default modulus for N = 4096 decrypts depth-2
products wrongly without raising. ``bfv.compile`` runs the plan once on extreme inputs
with a throwaway key and refuses it unless every modulus keeps ≥ ``MIN_NOISE_BUDGET``
bits of invariant noise budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crypto_nn import slots
from crypto_nn.bfv.layers import IntAffine, IntSquareLayer
from crypto_nn.bfv.params import (
    BfvParams,
)
from crypto_nn.bfv.tables import IntPolyTable
from crypto_nn.errors import ContextError
from crypto_nn.roles import FORMAT, VERSION, check_segment, key_description
from crypto_nn.wire.key_checks import KeySpec


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


@dataclass
class ClientAidedPlan(SegmentedPlan):
    segments: list[BfvPlan]
    client_ops: list[list]  # after segment k: the ops the client applies (len = segments − 1)
    cut_shapes: list[tuple[int, ...]]  # (C, H, W) of segment k's output, for those ops
    name: str = "model-bfv"
    classes: tuple[str, ...] = field(default_factory=tuple)
    pixel_max: int = 0
    output_scale: float = 1.0

    @property
    def round_trips(self) -> int:
        return len(self.client_ops)


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

    def evaluator(self, public_context: bytes):
        from crypto_nn.bfv.single import BfvSingleEvaluator

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


@dataclass(frozen=True)
class BfvClientPlan:
    """What a client needs of one exact segment (rebuilt from the plan's JSON)."""

    params: BfvParams
    n_inputs: int
    n_outputs: int
    input_min: int
    input_max: int  # inputs are integers in [input_min, input_min + input_max]
    constant_outputs: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_description(cls, d: dict) -> BfvClientPlan:
        lo, hi = (int(v) for v in d["input_range"])
        return cls(
            BfvParams.from_description(d["params"]),
            int(d["inputs"]),
            int(d["outputs"]),
            lo,
            hi - lo,
            {int(k): int(v) for k, v in d.get("constant_outputs", {}).items()},
        )


@dataclass(frozen=True)
class BfvSingleClientPlan:
    """What a client needs of a BFV single plan, rebuilt from its published JSON."""

    params: BfvParams
    in_shape: tuple[int, ...]
    input_max: int
    pixel_max: int
    n_outputs: int
    input_layouts: tuple[np.ndarray, ...]
    keys: tuple[KeySpec, ...]

    def key_specs(self) -> list[KeySpec]:
        return list(self.keys)

    @classmethod
    def from_description(cls, d: dict) -> BfvSingleClientPlan:
        try:
            return cls(
                BfvParams.from_description(d["params"]),
                tuple(int(v) for v in d["input"]["shape"]),
                int(d["input"]["input_max"]),
                int(d["input"]["pixel_max"]),
                int(d["output"]["logits"]),
                tuple(np.asarray(v, dtype=np.int64) for v in d["input"]["layouts"]),
                tuple(key_spec_from_description(k) for k in d["keys"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContextError(f"BFV plan description lacks or mangles a field ({exc})") from None


def key_spec_from_description(d: dict) -> KeySpec:
    """A key spec from a plan description's ``keys`` entry."""
    parts = set(d["parts"])
    suffix = next(p for p in parts if p.startswith("params"))[len("params") :]
    return KeySpec(
        "bfv",
        int(d["poly_modulus_degree"]),
        tuple(int(b) for b in d["coeff_mod_bit_sizes"]),
        plain_modulus=int(d["plain_modulus"]),
        relin="relin_keys" + suffix in parts,
        rotations=tuple(int(r) for r in d.get("rotations", [])),
        suffix=suffix,
    )
