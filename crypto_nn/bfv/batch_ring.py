"""The BFV batch plan on residue arrays, SEAL only at the edges (issue 23, step 4): seeded
inputs in, result bytes out, and between them our kernels — each affine layer one integer
matrix product (``rns.affine``, the GEMM route's), the bias as SEAL's scaled constant, each
x² our BEHZ square (``crypto_nn.behz``) and BFV relinearisation (``keyswitch``).

The GEMM route it replaces left SEAL's square and relinearisation in place, so every
activation layer saved its ciphertexts out of SEAL and loaded them back (zstd both ways);
here nothing leaves the arrays. Every step is SEAL's bit for bit: with ``lazy`` False the
bytes out are the GEMM route's (tested); by default an x² is relinearised after the next
affine layer — the same decrypted integers, fewer key switches. Plans with polynomial
tables, or whose affine layers read a folded constant, have no :meth:`RingPrime.schedule`:
the caller runs the GEMM route.
"""

from __future__ import annotations

import time

import numpy as np

from crypto_nn import behz, keyswitch, rns
from crypto_nn.bfv.layers import IntAffine, IntSquareLayer
from crypto_nn.wire import residues, seal_bytes, seeded

CHUNK = 32  # ciphertexts per square → relinearise pass: the size-3 products never all exist


def supported(plan) -> bool:
    """Affine layers with int64 weights and exact squares only (the x² networks), an
    affine layer first."""
    return (
        bool(plan.layers)
        and isinstance(plan.layers[0], IntAffine)
        and all(
            isinstance(layer, IntSquareLayer)
            or (isinstance(layer, IntAffine) and layer.weight.dtype == np.int64)
            for layer in plan.layers
        )
    )


def scaled_constant(value: int, moduli, t: int) -> np.ndarray:
    """What SEAL's BFV ``add_plain`` adds to c0's constant coefficient for the constant
    plaintext ``value`` (< t): ⌊Q·m/t⌉ rounded half up, as ``multiply_add_plain_with_
    scaling_variant`` writes it — ⌊Q/t⌋·m + ⌊((Q mod t)·m + ⌊(t+1)/2⌋)/t⌋ mod each prime."""
    big_q = 1
    for q in moduli:
        big_q *= int(q)
    whole = (big_q // t) * value + ((big_q % t) * value + (t + 1) // 2) // t
    return np.array([whole % int(q) for q in moduli], dtype=np.uint64)


class RingPrime:
    """One plaintext prime's ring route: its relinearisation keys as residues with their
    Shoup companions (parsed once per client key), its layers arranged once per plan."""

    def __init__(
        self, context, relin_keys, t: int, buffers: dict | None = None, *, lazy: bool = True
    ) -> None:
        """``buffers``: pieces buffers per shape, kept between requests — shared by the
        primes of one evaluator (they run one after another), so a request holds one."""
        self.context, self.t = context, t
        first = context.first_context_data().parms()
        self.moduli = np.array([m.value() for m in first.coeff_modulus()], np.uint64)
        self._relin = relin_keys
        self._keys = None
        self._layers: dict = {}
        self._buffers: dict = {} if buffers is None else buffers
        self.profile: dict[str, float] = {}  # seconds per step kind, summed over requests
        self.lazy = lazy  # relinearise after the next affine layer (see :meth:`run`)

    def _key_tables(self):
        if self._keys is None:
            parms = self.context.key_context_data().parms()
            key_moduli = [m.value() for m in parms.coeff_modulus()]
            keys, shoup = keyswitch.key_tables(seal_bytes.dumps(self._relin), key_moduli)
            self._keys = keys[0], key_moduli, shoup[0]
        return self._keys

    def schedule(self, plan, n_inputs: int) -> list | None:
        """Per layer, (compiled matrix, output rows) for an affine layer — the weights as
        the term route multiplies them (|w| mod t, sign kept) over the inputs that are not
        folded constants — or None for a square; None for the whole plan when it needs
        the GEMM route (a weight reads a folded constant, weights too large to slice).
        A layer whose outputs are all constants has no matrix. Made once per plan and
        input count."""
        key = (id(plan), n_inputs)
        if key not in self._layers:
            bits = rns.modulus_bits(np.tile(self.moduli, 2))
            live, steps = np.arange(n_inputs), []
            for layer in plan.layers:
                if isinstance(layer, IntSquareLayer):
                    steps.append(None)
                    continue
                dead = np.setdiff1d(np.arange(layer.weight.shape[1]), live)
                w = layer.weight[:, live]
                w = np.sign(w) * (np.abs(w) % self.t)
                rows = np.flatnonzero(w.any(axis=1))
                compiled = rns.Layer.from_weights(w[rows], bits) if rows.size else "constants"
                if compiled is None or (dead.size and layer.weight[:, dead].any()):
                    steps = None
                    break
                steps.append((None if rows.size == 0 else compiled, rows, len(layer.weight)))
                live = rows
            self._layers[key] = steps
        return self._layers[key]

    def _relinearize(self, x: np.ndarray, clock) -> np.ndarray:
        """Size-3 ciphertexts → size 2, a chunk at a time."""
        keys, key_moduli, companions = self._key_tables()
        clock("relinearisation keys")
        out = keyswitch.relinearize_stack(
            x, keys, key_moduli, companions, chunk=CHUNK, ntt_form=False
        )
        clock("relinearise")
        return out

    def run(self, plan, inputs: seeded.SeededInputs, progress) -> list[bytes]:
        """Bytes per output (b"": a folded constant); the plan has a :meth:`schedule`.

        With ``lazy`` (the default) an x² followed by an affine layer is not relinearised:
        the layer's weighted sums run on the size-3 products (a linear map is one on every
        component) and only its outputs are relinearised — 64 key switches instead of 256
        after tenseal-tutorial's first layer. The decryption is the same exact integers (one
        key-switching error per output instead of a weighted sum of them); the bytes are
        not SEAL's route's, which ``lazy = False`` gives bit for bit."""
        k, n, t = len(self.moduli), inputs.meta.n, self.t
        live = np.arange(len(inputs))
        width = len(inputs)  # outputs of the layer just run; ``live`` those that are not constant
        x = None  # the first product reads the seeded inputs' pieces directly
        clock = _Clock(self.profile)
        layers = list(zip(plan.layers, self.schedule(plan, len(inputs)), strict=True))
        for index, (layer, step) in enumerate(layers):
            progress.step()
            if step is None:  # x², a chunk at a time; relinearised now or after the next layer
                later = self.lazy and index + 1 < len(layers) and layers[index + 1][1] is not None
                out = np.empty((len(x), 3, k, n), np.uint64)
                for i in range(0, len(x), CHUNK):
                    out[i : i + CHUNK] = behz.square(x[i : i + CHUNK], self.moduli, t)
                    clock("square (BEHZ)")
                x = out if later else self._relinearize(out, clock)
                continue
            compiled, rows, width = step
            if compiled is None:  # every output a folded constant
                x, live = np.empty((0, 2, k, n), np.uint64), rows
                continue
            size = 2 if x is None else x.shape[1]
            if x is None:  # c0 as sent, c1 expanded from its seed: no residue copy
                pieces = inputs.pieces(compiled.bits, compiled.pieces, self._buffers)
                clock("seed expansion")
            elif compiled.pieces == 1:  # the residues themselves are the piece: no copy
                pieces = x.reshape(1, len(x), size * k, n).view(np.int64)
            else:
                shape = (compiled.pieces, len(x), size * k, n)
                pieces = rns.piece_buffer(self._buffers, shape, compiled.bits)
                rns.split_many(x.reshape(len(x), size * k, n), compiled.bits, pieces)
            x = rns.affine(pieces, np.tile(self.moduli, size), compiled)
            x = x.reshape(len(rows), size, k, n)
            for i, j in enumerate(rows):
                b = int(layer.bias[j]) % t
                if b:
                    c0 = x[i, 0, :, 0] + scaled_constant(b, self.moduli, t)
                    x[i, 0, :, 0] = np.where(c0 >= self.moduli, c0 - self.moduli, c0)
            clock("matrix products")
            if size == 3:
                x = self._relinearize(x, clock)
            live = rows
        meta = residues.Meta(inputs.meta.version, tuple(self.context.first_parms_id()), False,
                             2, n, k, 1.0, 1)  # fmt: skip
        out = [b""] * width
        for i, j in enumerate(live):
            out[j] = residues.serialize(meta, x[i])
        clock("serialise")
        return out


class _Clock:
    """Adds the time since its last call to ``profile[name]`` (where a request's time goes)."""

    def __init__(self, profile: dict[str, float]) -> None:
        self.profile, self.last = profile, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.profile[name] = self.profile.get(name, 0.0) + now - self.last
        self.last = now
