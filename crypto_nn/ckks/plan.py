"""CKKS plan data: :class:`CkksPlan` (what the server runs) and :class:`CkksClientPlan` (what a
client rebuilds from the published description). Compilers are in ``ckks.compile``.

A plan is a plain, JSON-serialisable description (layers, encodings, scheme parameters,
rotation steps, output decoding, format version) plus the arrays that run it. The
description travels to clients (``GET /v1/models``); the arrays stay with the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crypto_nn import slots
from crypto_nn.ckks import layers as plan_layers
from crypto_nn.ckks.params import CkksParams
from crypto_nn.errors import CompileError
from crypto_nn.roles import FORMAT, VERSION, key_description, parse_description
from crypto_nn.wire.key_checks import KeySpec

__all__ = ["FORMAT", "VERSION", "CkksClientPlan", "CkksPlan", "parse_description"]


@dataclass
class CkksPlan:
    name: str  # model name the server serves it under
    scheme: str  # "ckks"
    packing: str  # "batch": one image per slot; "single": one image in one ciphertext
    layers: list[plan_layers.Layer]
    params: CkksParams
    in_shape: tuple[int, ...]  # (C, H, W) of one image
    classes: tuple[str, ...]
    max_abs_value: float  # largest |value| of any layer on calibration data
    rotations: list[int] = field(default_factory=list)  # Galois steps the plan needs (batch: none)
    program: slots.Program | None = None  # single packing: slot layouts and diagonals
    noise_sigma: float = 0.0  # calibrated on images + N(0, σ²) noise, clipped to [0, 1]

    @property
    def input_layouts(self) -> list[np.ndarray]:
        """Single packing: per input ciphertext, the input index each slot holds (−1: 0)."""
        return self.program.layouts if self.program else []

    @property
    def depth(self) -> int:
        return sum(layer.depth for layer in self.layers)

    @property
    def needs_relin_keys(self) -> bool:
        """Ciphertext products are relinearised: left at size 3 or 5, their rescaling error
        is multiplied by the secret key's powers (‖s⁴‖ ≈ 2^26 at N = 8192) and swamps Δ."""
        return any(layer.kind in ("square", "poly") for layer in self.layers)

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_input_ciphertexts(self) -> int:
        """Ciphertexts one request carries: one per input value (batch) or per layout."""
        return self.n_inputs if self.packing == "batch" else len(self.input_layouts)

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].weight.shape[0]

    def input_count(self, segment: int = 0) -> int:
        return self.n_input_ciphertexts

    def key_specs(self) -> list[KeySpec]:
        return key_specs(self.params, self.needs_relin_keys, self.rotations)

    def evaluator(self, public_context: bytes):
        """The server side for one client's public context (batch or single packing)."""
        if self.packing == "single":
            from crypto_nn.ckks.single import CkksSingleEvaluator

            return CkksSingleEvaluator(self, public_context)
        from crypto_nn.ckks.batch import CkksBatchEvaluator

        return CkksBatchEvaluator(self, public_context)

    def save(self, path: str | Path, source: dict | None = None) -> Path:
        from crypto_nn import roles

        return roles.save(self, path, source)

    def forward_plain(self, images: np.ndarray) -> np.ndarray:
        """The plan in float64, unencrypted: (N, C, H, W) → (N, classes)."""
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def describe(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "scheme": self.scheme,
            "packing": self.packing,
            "depth": self.depth,
            "params": self.params.describe(),
            "rotations": list(self.rotations),
            "galois_keys": bool(self.rotations),
            "relin_keys": self.needs_relin_keys,
            "layers": [layer.describe() for layer in self.layers],
            "input": self._input_description(),
            "output": {
                "ciphertexts": self.n_outputs if self.packing == "batch" else 1,
                "logits": self.n_outputs,
                "classes": list(self.classes),
                "decoding": "slot i of output ciphertext j = logit j of image i"
                if self.packing == "batch"
                else "slot j of the output ciphertext = logit j",
            },
            "keys": key_description(self.key_specs()),
            "segments": 1,
            "max_abs_value": self.max_abs_value,
            "noise_sigma": self.noise_sigma,
            **(
                {"zero_diagonals_skipped": self.program.skipped_diagonals}
                if self.program is not None
                else {}
            ),
        }

    def _input_description(self) -> dict[str, object]:
        desc: dict[str, object] = {"shape": list(self.in_shape), "values": "float in [0, 1]"}
        if self.packing == "batch":
            desc["encoding"] = (
                "one ciphertext per input value (NCHW order), one image per slot, up to "
                f"{self.params.slots} images, scale 2^{self.params.scale_bits}"
            )
        else:
            desc["encoding"] = (
                "one image per request, len(layouts) ciphertexts: slot s of ciphertext c "
                "holds input value layouts[c][s] of the flattened NCHW image (−1: 0), "
                f"scale 2^{self.params.scale_bits}"
            )
            desc["layouts"] = [layout.tolist() for layout in self.input_layouts]
        return desc

    def to_json(self) -> str:
        return json.dumps(self.describe())


def key_specs(params: CkksParams, relin: bool, rotations) -> list[KeySpec]:
    """One CKKS key set: rotations (single packing) come with relinearisation keys."""
    return [
        KeySpec(
            "ckks",
            params.poly_modulus_degree,
            tuple(params.coeff_mod_bit_sizes),
            relin=relin or bool(rotations),
            rotations=tuple(rotations),
        )
    ]


@dataclass(frozen=True)
class CkksClientPlan:
    """What a client needs of a plan, rebuilt from its published description."""

    name: str
    scheme: str
    params: CkksParams
    in_shape: tuple[int, ...]
    n_outputs: int
    classes: tuple[str, ...]
    needs_relin_keys: bool
    packing: str = "batch"
    rotations: tuple[int, ...] = ()
    input_layouts: tuple[np.ndarray, ...] = ()
    max_abs_value: float = float("inf")  # largest |value| on calibration data (unknown: inf)
    noise_sigma: float = 0.0  # the Gaussian noise the calibration data carried

    def key_specs(self) -> list[KeySpec]:
        return key_specs(self.params, self.needs_relin_keys, self.rotations)

    @classmethod
    def from_description(cls, desc: dict) -> CkksClientPlan:
        desc = parse_description(desc) if "format" in desc else desc
        try:
            p = desc["params"]
            params = CkksParams(
                int(p["poly_modulus_degree"]),
                tuple(int(b) for b in p["coeff_mod_bit_sizes"]),
                int(p["scale_bits"]),
                int(p.get("weight_scale_bits", 0)),
            )
            layouts = tuple(
                np.asarray(layout, dtype=np.int64) for layout in desc["input"].get("layouts", [])
            )
            return cls(
                name=str(desc["name"]),
                scheme=str(desc["scheme"]),
                params=params,
                in_shape=tuple(int(v) for v in desc["input"]["shape"]),
                n_outputs=int(desc["output"].get("logits", desc["output"]["ciphertexts"])),
                classes=tuple(desc["output"]["classes"]),
                needs_relin_keys=bool(desc["relin_keys"]),
                packing=str(desc.get("packing", "batch")),
                rotations=tuple(int(r) for r in desc.get("rotations", [])),
                input_layouts=layouts,
                max_abs_value=float(desc.get("max_abs_value", float("inf"))),
                noise_sigma=float(desc.get("noise_sigma", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CompileError(f"plan description lacks or mangles a field ({exc})") from None
