"""Server side of a BFV batch plan: one ciphertext per input value, one image per slot,
the integer network op by op under each plaintext prime (exact: ring operations only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from crypto_nn.bfv import batch_ring
from crypto_nn.bfv.client import flatten, split
from crypto_nn.bfv.layers import IntAffine, IntSquareLayer
from crypto_nn.bfv.tables import IntPolyTable, PolyEvaluator
from crypto_nn.errors import ContextError
from crypto_nn.gemm import GemmRoute
from crypto_nn.roles import Progress, check_segment
from crypto_nn.wire import seal_bytes, seeded
from crypto_nn.wire.key_checks import LoadedKeys, load_keys


@dataclass
class PrimeState:
    """An evaluator's state for one plaintext prime: its SEAL context, evaluator, keys."""

    context: seal.SEALContext
    evaluator: seal.Evaluator
    relin_keys: seal.RelinKeys | None
    t: int  # the plaintext prime
    gemm: GemmRoute  # its GEMM route (arranged weights per layer)
    ring: batch_ring.RingPrime | None  # its ring route, where the plan has one


class BfvBatchEvaluator:
    """One exact segment under each of its primes, for one client's keys."""

    def __init__(
        self,
        plan,
        public_context: bytes | list[LoadedKeys],
        *,
        route: str = "ring",
        lazy: bool = True,
    ) -> None:
        """``public_context``: the client's context bytes, or its key sets already loaded
        (a client-aided plan loads the context once for all its segments). ``route``:
        "gemm" runs each affine layer as one integer matrix product over the residues
        (``crypto_nn.rns``), "terms" term by term in SEAL, "ring" the whole x² plan on
        residue arrays (``bfv.batch_ring``; others fall back to "gemm") — the same
        ciphertexts, byte for byte (with ``lazy`` False: the ring route relinearises each x²
        at once, as SEAL's route does; by default after the next affine layer — the same
        decrypted integers, fewer key switches)."""
        if route not in ("gemm", "terms", "ring"):
            raise ValueError(f"route {route!r}: gemm, terms or ring")
        self.route = route
        keys = (
            load_keys(public_context, plan.key_specs())
            if isinstance(public_context, bytes)
            else public_context
        )
        self.plan = plan
        buffers: dict = {}  # input pieces per shape, shared by the primes (they run in turn)
        self._sets = [
            PrimeState(
                k.context,
                seal.Evaluator(k.context),
                k.relin_keys,
                k.spec.plain_modulus,
                GemmRoute(k.context, buffers),
                batch_ring.RingPrime(
                    k.context, k.relin_keys, k.spec.plain_modulus, buffers, lazy=lazy
                )
                if route == "ring" and batch_ring.supported(plan)
                else None,
            )
            for k in keys
        ]

    def _run_one(self, prime: PrimeState, payloads: list[bytes], progress=None) -> list[bytes]:
        ctx, ev, relin, t = prime.context, prime.evaluator, prime.relin_keys, prime.t
        if len(payloads) != self.plan.n_inputs:
            raise ContextError(
                f"{len(payloads)} input ciphertexts; the plan takes {self.plan.n_inputs}"
            )
        fast = self.route in ("gemm", "ring")
        xs = seeded.SeededInputs.parse(ctx, payloads, scale=1.0) if fast else None
        progress = progress or Progress(0, None)
        if prime.ring is not None and xs is not None and prime.ring.schedule(self.plan, len(xs)):
            return prime.ring.run(self.plan, xs, progress)
        xs = xs or seal_bytes.load_fresh_ciphertexts(ctx, payloads, scale=1.0)
        scratch = seal.Ciphertext()
        for layer in self.plan.layers:
            progress.step()  # the layer about to run: reports are never late
            gemm = None
            if fast and isinstance(layer, IntAffine):
                gemm = self._affine_gemm(prime, xs, layer)
            if isinstance(xs, seeded.SeededInputs) and gemm is None:
                xs = xs.load()  # anything but the first matrix product runs in SEAL
            if gemm is not None:
                xs = gemm
                continue
            if isinstance(layer, IntSquareLayer):
                for x in (x for x in xs if x is not None):  # None: a folded constant
                    ev.square_inplace(x)
                    ev.relinearize_inplace(x, relin)
                continue
            if isinstance(layer, IntPolyTable):
                poly = PolyEvaluator(ev, relin, t)
                xs = [None if x is None else poly.run(x, layer) for x in xs]
                continue
            out = []
            for row, b in zip(layer.weight, layer.bias, strict=True):
                acc = None
                for i in np.flatnonzero(row):
                    w = int(row[i])
                    # multiply by |w| and subtract for w < 0: noise grows by |w|, not by t - |w|
                    pw = seal.Plaintext(format(abs(w) % t, "x"))
                    if acc is None:
                        acc = seal.Ciphertext()
                        ev.multiply_plain(xs[i], pw, acc)
                        if w < 0:
                            ev.negate_inplace(acc)
                    else:
                        ev.multiply_plain(xs[i], pw, scratch)
                        (ev.sub_inplace if w < 0 else ev.add_inplace)(acc, scratch)
                if acc is None:  # a constant, folded into what reads it (fold_constants)
                    out.append(None)
                    continue
                if int(b) % t:
                    ev.add_plain_inplace(acc, seal.Plaintext(format(int(b) % t, "x")))
                out.append(acc)
            xs = out
        return [b"" if x is None else seal_bytes.dumps(x) for x in xs]

    def _affine_gemm(self, prime: PrimeState, xs: list, layer) -> list | None:
        """The term route's products and sums in one matrix product: weights as it
        multiplies them (|w| mod t, sign kept), bias added in SEAL. None (term route):
        weights past int64, or a folded-constant input that a weight still reads."""
        t, ev, weight = prime.t, prime.evaluator, layer.weight
        if weight.dtype != np.int64:
            return None
        seeded_in = isinstance(xs, seeded.SeededInputs)
        live = list(range(len(xs))) if seeded_in else [i for i, x in enumerate(xs) if x is not None]
        dead = np.setdiff1d(np.arange(len(xs)), live)
        if dead.size and weight[:, dead].any():
            return None
        w = np.sign(weight[:, live]) * (np.abs(weight[:, live]) % t)
        rows = np.flatnonzero(w.any(axis=1))
        out: list = [None] * len(w)  # an output no input reaches: a folded constant
        if rows.size:
            live_xs = xs if seeded_in else [xs[i] for i in live]
            cts = prime.gemm.multiply(live_xs, id(layer), lambda: w[rows])
            if cts is None:
                return None
            for j, ct in zip(rows, cts, strict=True):
                if int(layer.bias[j]) % t:
                    ev.add_plain_inplace(ct, seal.Plaintext(format(int(layer.bias[j]) % t, "x")))
                out[j] = ct
        return out

    def run_primes(self, payloads: list[list[bytes]], on_progress=None) -> list[list[bytes]]:
        """Per prime, its ciphertexts → per prime, the outputs (b"": a constant logit);
        ``on_progress(fraction)`` as each layer of each prime starts."""
        if len(payloads) != len(self._sets):
            raise ContextError(
                f"{len(payloads)} ciphertext sets; the plan has {len(self._sets)} plaintext primes"
            )
        progress = Progress(len(self._sets) * len(self.plan.layers), on_progress)
        return [self._run_one(s, p, progress) for s, p in zip(self._sets, payloads, strict=True)]

    def run(self, payloads: list[bytes], on_progress=None, *, segment: int = 0) -> list[bytes]:
        """The :class:`crypto_nn.roles.Evaluator` role: prime-major bytes in and out."""
        check_segment(segment, 1)
        return flatten(self.run_primes(split(payloads, len(self._sets)), on_progress))


class SegmentEvaluators:
    """The Evaluator role for a served BFV plan: the client's context loaded once, one
    :class:`BfvEvaluator` per segment on its share of the key sets; a request names its
    segment, so the server keeps no state between a client-aided plan's round trips."""

    def __init__(
        self, plan, public_context: bytes, *, route: str = "ring", lazy: bool = True
    ) -> None:
        keys = load_keys(public_context, plan.key_specs())
        self.evaluators, first = [], 0
        for segment in plan.segments:
            k = len(segment.params.plain_moduli)
            self.evaluators.append(
                BfvBatchEvaluator(segment, keys[first : first + k], route=route, lazy=lazy)
            )
            first += k

    def run(self, payloads: list[bytes], on_progress=None, *, segment: int = 0) -> list[bytes]:
        check_segment(segment, len(self.evaluators))
        return self.evaluators[segment].run(payloads, on_progress)

    def ring_profile(self) -> dict[str, float]:
        """Seconds per step kind the ring route has spent, over every segment and prime."""
        total: dict[str, float] = {}
        for evaluator in self.evaluators:
            for prime in evaluator._sets:
                for key, seconds in (prime.ring.profile if prime.ring else {}).items():
                    total[key] = total.get(key, 0.0) + seconds
        return total

    def run_segment(self, segment: int, payloads: list[bytes]) -> list[bytes]:
        """:meth:`run` as a client's ``send(segment, payloads)`` takes it."""
        return self.run(payloads, segment=segment)

    def __call__(self, segment: int, payloads: list[list[bytes]]) -> list[list[bytes]]:
        """Per-prime lists in and out (in-process callers, benchmarks)."""
        check_segment(segment, len(self.evaluators))
        return self.evaluators[segment].run_primes(payloads)
