"""CKKS single packing on residue arrays (issue 23, item 4): the :mod:`crypto_nn.slots`
schedule run with our kernels instead of SEAL's evaluator, one image per request.

Where the time goes in SEAL's way is rotations (59 per image for the tenseal-tutorial
plan, two thirds of the request), each a full key switch on one core. Here:

- the first layer's channels are one stack: each rotate-and-add step switches all of
  them at once, one task per channel;
- a diagonal layer's baby steps are hoisted: each input's key-switching digits are made
  once and permuted for steps 1 … g − 1 (the plan carries Galois keys for those steps);
- every giant step's plaintext products are one parallel multiply-accumulate, not one
  SEAL call per diagonal;
- the rotations that stay sequential (the giant steps' Horner chain, the sums) run
  parallel *inside* the key switch (``keyswitch._keyswitch_wide``);
- activations square, relinearise and rescale all channels in one call.

SEAL still loads and checks the inputs and keys, and encodes the weights (once per plan and
level) and the biases (once per evaluator); the result leaves as SEAL bytes. Without
hoisting (``hoist=False``) the bytes are SEAL's own — every operation here is bit-exact —
which the tests check; hoisted baby steps decrypt to the same slots within CKKS noise (the
digits of σ(c1) differ from σ of c1's digits in sign convention only).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numba
import numpy as np
import tenseal.sealapi as seal

from crypto_nn import keyswitch, ring
from crypto_nn.errors import ContextError
from crypto_nn.ntt import _mul_shoup
from crypto_nn.ring import _add, _ratio
from crypto_nn.roles import Progress
from crypto_nn.wire import residues, seal_bytes

if TYPE_CHECKING:
    from crypto_nn.ckks.single import CkksSingleEvaluator

_U64 = np.uint64
_plains: dict[int, tuple[object, list]] = {}  # id(plan) → (program, weights as residues)
_lock = threading.Lock()


@numba.njit(parallel=True, cache=True)
def _mac(babies, plains, plains_s, baby_of, offsets, moduli, out):
    """out[j] = Σ babies[baby_of[p]] ⊙ plains[p] over the terms p of giant step j
    (``offsets[j]:offsets[j+1]``), every polynomial, mod each prime: SEAL's multiply_plain
    and add_inplace per diagonal, fused (sums mod q are unique: the same residues). The
    weights are fixed per plan, so their Shoup companions ``plains_s`` are made once."""
    giants, _, k, n = out.shape
    for task in numba.prange(giants * 2 * k):
        j, rest = task // (2 * k), task % (2 * k)
        comp, li = rest // k, rest % k
        q = moduli[li]
        row = out[j, comp, li]
        first = offsets[j]
        for p in range(first, offsets[j + 1]):
            x, w, ws = babies[baby_of[p], comp, li], plains[p, li], plains_s[p, li]
            if p == first:
                for i in range(n):
                    row[i] = _mul_shoup(x[i], w[i], ws[i], q)
            else:
                for i in range(n):
                    row[i] = _add(row[i], _mul_shoup(x[i], w[i], ws[i], q), q)


def _plain_residues(pt: seal.Plaintext, k: int) -> np.ndarray:
    return residues.parse_plaintext(seal_bytes.dumps(pt), k)


def _program_residues(evaluator: CkksSingleEvaluator) -> list:
    """Per step, the weight plaintexts SEAL encoded, as residue arrays (once per plan):
    im2col → per chunk (channels, H rotated copies, k, N) and their Shoup companions;
    diagonals → (terms (c, i) and giant offsets, plains (terms, k, N)) grouped by giant
    step."""
    plan = evaluator.plan
    with _lock:
        cached = _plains.get(id(plan))
        if cached and cached[0] is plan.program:
            return cached[1]
    from crypto_nn.ckks.single import encode_program

    out = []
    data = evaluator.context.first_context_data()
    encoded = encode_program(plan, evaluator.context, _plain_residues, rotated=True)
    for step, weights in zip(plan.program.steps, encoded, strict=True):
        moduli = [m.value() for m in data.parms().coeff_modulus()]
        if step.kind == "im2col":  # per chunk: (channels, H, k, N) and Shoup companions
            stacks = [np.stack([np.stack(copies) for copies in chunk]) for chunk in weights]
            out.append([(p, keyswitch.key_shoup(p, moduli)) for p in stacks])
        elif step.kind == "diagonals":
            diag = step.diagonals
            terms = sorted(weights.items(), key=lambda item: (item[0][1], item[0][0], item[0][2]))
            counts = np.bincount([j for (_, j, _), _ in terms], minlength=diag.giants)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            baby_of = np.asarray([c * diag.baby + i for (c, _, i), _ in terms], np.int64)
            plains = np.stack([pt for _, pt in terms]) if terms else None
            companions = None if plains is None else keyswitch.key_shoup(plains, moduli)
            out.append((baby_of, offsets, plains, companions))
        else:
            out.append(None)
            data = data.next_context_data()
    with _lock:
        _plains[id(plan)] = (plan.program, out)
    return out


class RingSingle:
    """The single-packing schedule on (m, 2, k, N) residue stacks for one evaluator (one
    client's keys); ``hoist``: baby steps from one decomposition per input."""

    def __init__(self, evaluator: CkksSingleEvaluator, *, hoist: bool = True) -> None:
        self.ev, self.hoist = evaluator, hoist
        context = evaluator.context
        self.key_moduli = [m.value() for m in context.key_context_data().parms().coeff_modulus()]
        galois, galois_shoup = keyswitch.key_tables(
            seal_bytes.dumps(evaluator.galois_keys), self.key_moduli
        )
        self.galois = keyswitch.KeyStack.of(galois, galois_shoup, self.key_moduli)
        del galois, galois_shoup  # the stack holds the only copy
        relin, relin_shoup = keyswitch.key_tables(
            seal_bytes.dumps(evaluator.relin_keys), self.key_moduli
        )
        self.relin, self.relin_shoup = relin[0], relin_shoup[0]
        self.weights = _program_residues(evaluator)
        self.n = context.first_context_data().parms().poly_modulus_degree()
        self._constants: dict[tuple, np.ndarray] = {}

    # --- helpers -------------------------------------------------------------------------
    def _has_key(self, step: int) -> bool:
        try:
            keyswitch._galois_key(step, self.n, self.galois)
        except ValueError:
            return False
        return True

    def _rotate(self, x: np.ndarray, step: int) -> np.ndarray:
        return keyswitch.rotate(x, step, self.galois, self.key_moduli)

    def _constant(self, values, parms_id, scale: float, k: int, tag) -> np.ndarray:
        """A scalar or slot vector encoded by SEAL at this level and scale (kept: the plan
        fixes every scale, so one encoding per evaluator serves every request)."""
        key = (tag, tuple(parms_id), scale)
        if key not in self._constants:
            pt = seal.Plaintext()
            v = float(values) if np.isscalar(values) else np.asarray(values).tolist()
            self.ev.encoder.encode(v, parms_id, scale, pt)
            self._constants[key] = _plain_residues(pt, k)
        return self._constants[key]

    def _add_plain(self, x: np.ndarray, plain: np.ndarray, moduli) -> np.ndarray:
        """SEAL's add_plain: the plaintext added to c0 of every ciphertext of the stack."""
        c0 = np.ascontiguousarray(x[:, 0])
        x[:, 0] = ring.add(c0, np.broadcast_to(plain, c0.shape).copy(), moduli)
        return x

    # --- steps ---------------------------------------------------------------------------
    def _im2col(self, step, weights, xs: np.ndarray, state) -> tuple[np.ndarray, float]:
        """Per chunk and channel, x ⊙ w and the rotate-and-add over the taps. Hoisted
        (``Im2col.input_copies``): the input's rotations by t·G in one call, each copy times
        the weights rotated alike, summed per channel in one multiply-accumulate — then
        only the last levels' rotations per channel."""
        parms_id, scale, moduli = state
        first = step.im2col
        w_scale = float(2**self.ev.plan.params.weight_scale_bits)
        q = np.asarray(moduli, _U64)
        k = len(moduli)
        hoisted = (
            self.hoist
            and first.input_copies > 1
            and all(self._has_key(s) for s in first.input_steps)
        )
        out = []
        for chunk, x in enumerate(xs):
            plains, companions = weights[chunk]  # (channels, H, k, N)
            channels, copies = plains.shape[:2]
            if hoisted:
                moved = keyswitch.rotate_many(
                    x[None], first.input_steps, self.galois, self.key_moduli
                )  # (1, H − 1, 2, k, N)
                babies = np.ascontiguousarray(np.concatenate([x[None], moved[0]]))
                acc = np.empty((channels, 2, k, self.n), _U64)
                copy_of = np.tile(np.arange(copies, dtype=np.int64), channels)
                offsets = np.arange(0, channels * copies + 1, copies, dtype=np.int64)
                _mac(babies, plains.reshape(-1, k, self.n), companions.reshape(-1, k, self.n),
                     copy_of, offsets, q, acc)  # fmt: skip
                rotations = first.rotations_after_hoisting
            else:  # SEAL's schedule: one product per channel, every level rotated
                rows = np.repeat(plains[:, 0], 2, axis=0)  # both polynomials of every product
                prods = np.empty((channels * 2, k, self.n), _U64)
                ring._dyadic(np.ascontiguousarray(np.broadcast_to(x, (channels, *x.shape)))
                             .reshape(-1, k, self.n), rows, q, _ratio(q), prods)  # fmt: skip
                acc = prods.reshape(channels, 2, k, self.n)
                rotations = first.rotations
            for r in rotations:  # every channel at once: one task per channel
                acc = ring.add(acc, self._rotate(acc, r), moduli)
            out.append(acc)
        acc = np.concatenate(out)
        new_scale = scale * w_scale
        for i in range(len(acc)):
            bias = self._constant(step.biases[i], parms_id, new_scale, k, (id(step), i))
            acc[i : i + 1] = self._add_plain(acc[i : i + 1], bias, moduli)
        return acc, new_scale

    def _diagonals(self, step, weights, xs: np.ndarray, state) -> tuple[np.ndarray, float]:
        parms_id, scale, moduli = state
        diag = step.diagonals
        baby_of, offsets, plains, plains_s = weights
        if plains is None:
            raise ContextError("an all-zero layer cannot run encrypted")
        g, k = diag.baby, len(moduli)
        if g > 1 and self.hoist and all(self._has_key(i) for i in range(1, g)):
            moved = keyswitch.rotate_many(
                xs, range(1, g), self.galois, self.key_moduli
            )  # (c, g − 1, 2, k, N)
            babies = np.concatenate([xs[:, None], moved], axis=1)
        else:  # SEAL's way: successive rotations by one, every input at once
            row = [xs]
            for _ in range(1, g):
                row.append(self._rotate(row[-1], 1))
            babies = np.stack(row, axis=1)
        babies = np.ascontiguousarray(babies.reshape(-1, 2, k, self.n))
        q = np.asarray(moduli, _U64)
        sums = np.empty((diag.giants, 2, k, self.n), _U64)
        _mac(babies, plains, plains_s, baby_of, offsets, q, sums)
        acc = None
        for j in reversed(range(diag.giants)):  # Horner, as slots.run_diagonals
            if acc is not None:
                acc = self._rotate(acc, diag.baby)
            if offsets[j + 1] > offsets[j]:
                acc = sums[j : j + 1] if acc is None else ring.add(acc, sums[j : j + 1], moduli)
        r = diag.out_period
        while r < diag.in_period:
            acc = ring.add(acc, self._rotate(acc, r), moduli)
            r *= 2
        new_scale = scale * float(2**self.ev.plan.params.weight_scale_bits)
        bias = self._constant(diag.bias, parms_id, new_scale, k, (id(step), "bias"))
        return self._add_plain(np.ascontiguousarray(acc), bias, moduli), new_scale

    def _activation(self, step, xs: np.ndarray, state) -> tuple[np.ndarray, float]:
        parms_id, scale, moduli = state
        k = len(moduli)
        y = keyswitch.relinearize(
            ring.square(xs, moduli), self.relin, self.key_moduli, self.relin_shoup
        )
        sq_scale = scale * scale
        if step.kind == "poly":  # z² + a·z + b, all at scale (Δ·Δw)²
            a = self._constant(float(step.a), parms_id, scale, k, (id(step), "a"))
            y = ring.add(y, ring.multiply_plain(xs, a, moduli), moduli)
            b = self._constant(float(step.b), parms_id, sq_scale, k, (id(step), "b"))
            y = self._add_plain(y, b, moduli)
        return ring.rescale(y, moduli), sq_scale / moduli[-1]

    def run(self, cts: list[seal.Ciphertext], on_progress=None) -> bytes:
        """One image's loaded ciphertexts → the logits' ciphertext bytes;
        ``on_progress(fraction)`` as each step of the schedule starts."""
        context = self.ev.context
        meta, _ = residues.parse(seal_bytes.dumps(cts[0]))
        xs = np.stack([residues.parse(seal_bytes.dumps(ct))[1] for ct in cts])
        parms_id = context.first_parms_id()
        data = context.get_context_data(parms_id)
        moduli = [m.value() for m in data.parms().coeff_modulus()]
        scale = meta.scale
        progress = Progress(len(self.ev.plan.program.steps), on_progress)
        for step, weights in zip(self.ev.plan.program.steps, self.weights, strict=True):
            progress.step()
            state = (parms_id, scale, moduli)
            if step.kind == "im2col":
                xs, scale = self._im2col(step, weights, xs, state)
            elif step.kind == "diagonals":
                xs, scale = self._diagonals(step, weights, xs, state)
            else:
                xs, scale = self._activation(step, xs, state)
                data = data.next_context_data()
                parms_id, moduli = data.parms_id(), moduli[:-1]
        out = residues.Meta(meta.version, tuple(parms_id), True, 2, self.n, len(moduli), scale, 1)
        return residues.serialize(out, xs[0])


def warm_up() -> None:
    """Load the ring route's kernels from numba's cache on tiny arrays (N 16, primes 97 and
    193), so that a worker's first single-packing request does not pay for it."""
    n, moduli = 16, [97, 193]
    q = np.asarray(moduli[:1], _U64)
    keys = np.ones((1, 2, 2, n), _U64)
    for rows in (1, 2):  # parallel inside one key switch, and one task per ciphertext
        product = np.ones((rows, 3, 1, n), _U64)
        keyswitch.relinearize(product, keys, moduli)
        keyswitch.relinearize(product, keys, moduli, keyswitch.key_shoup(keys, moduli))
    x = np.ones((1, 2, 2, n), _U64)
    ring.rescale(ring.add(x, x, moduli), moduli)
    ring.multiply_plain(x, np.ones((2, n), _U64), moduli)
    ring.square(x[:, :, :1], moduli[:1])
    babies, plains = np.ones((1, 2, 1, n), _U64), np.ones((1, 1, n), _U64)
    one = np.zeros(1, np.int64)
    _mac(babies, plains, plains, one, np.asarray([0, 1], np.int64), q, np.empty_like(babies))
