"""The GEMM route both batch evaluators share: a layer's weighted sums over ciphertexts as
one integer matrix product per RNS limb (``rns.affine``), instead of one SEAL
multiply-and-add per weight.

Ciphertexts come in as SEAL objects or as a request's seeded inputs parsed without SEAL
(``wire.seeded``); their residues are cut into pieces, multiplied by the weight matrix and
reduced mod each limb's prime, and go back into SEAL as ciphertexts (``wire.residues``).
This module is the only place the evaluators touch residues.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

from crypto_nn import rns
from crypto_nn.wire import residues, seeded


class GemmRoute:
    """One SEAL context's GEMM route, with the layers it has arranged (per layer and
    modulus chain: once, not per request) and its input buffers (per shape, reused)."""

    def __init__(self, context, buffers: dict | None = None) -> None:
        self.context = context
        self._layers: dict = {}
        self._buffers = {} if buffers is None else buffers

    def multiply(
        self,
        xs,
        key: Hashable,
        weights: Callable[[], np.ndarray],
        *,
        scale_factor: float = 1.0,
    ) -> list | None:
        """``weights() @ xs`` as ciphertexts (outputs × one per row of the matrix), at the
        inputs' scale × ``scale_factor``. ``xs``: SEAL ciphertexts (all alike) or
        :class:`seeded.SeededInputs`; ``key`` names the weight matrix ``weights()`` builds
        (called once per key and modulus chain). None: weights too large to slice — the
        caller runs its term route."""
        if isinstance(xs, seeded.SeededInputs):
            meta, moduli, scale = xs.meta, np.tile(xs.moduli, xs.meta.size), xs.meta.scale
        else:
            meta = None
            moduli = residues.row_moduli(self.context, xs[0].parms_id(), xs[0].size())
            scale = xs[0].scale
        bits = rns.modulus_bits(moduli)
        if (key, bits) not in self._layers:
            self._layers[key, bits] = rns.Layer.from_weights(weights(), bits)
        compiled = self._layers[key, bits]
        if compiled is None:
            return None
        if meta is not None:
            pieces = xs.pieces(compiled.bits, compiled.pieces, self._buffers)
        else:
            meta, pieces = residues.stack(xs, compiled.bits, compiled.pieces, self._buffers)
        y = rns.affine(pieces, moduli, compiled)
        return residues.unstack(self.context, meta, y, scale=scale * scale_factor)
