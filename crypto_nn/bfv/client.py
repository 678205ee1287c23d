"""Every client role of BFV plans: secret keys per plaintext prime, encrypt, decrypt, CRT.

:class:`KeySet` holds one secret key per prime; :class:`BfvSegmentClient` encrypts and
decrypts one segment (a batch plan is one segment); :class:`BfvClient` is the
:class:`crypto_nn.roles.Client` role for served batch and client-aided plans, built from
the plan's JSON alone: float images in, exact integer logits out, every client-aided
round trip (decrypt, the tables in the clear, re-encrypt) inside ``infer``;
:class:`BfvSingleClient` the same role for single-packing plans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tenseal.sealapi as seal

from crypto_nn import slots
from crypto_nn.bfv.params import crt_combine
from crypto_nn.bfv.plan import (
    BfvClientPlan,
    BfvSingleClientPlan,
    BfvSinglePlan,
    key_spec_from_description,
)
from crypto_nn.errors import ContextError
from crypto_nn.roles import Send, check_pixels, parse_description, timed
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import seal_bytes
from crypto_nn.wire.key_checks import KeySpec, galois_elements
from integer_nn.ops import OPS


class KeySet(NamedTuple):
    """A client's secret-key machinery for one plaintext prime t."""

    ctx: seal.SEALContext
    keygen: seal.KeyGenerator
    encryptor: seal.Encryptor
    decryptor: seal.Decryptor
    encoder: seal.BatchEncoder
    t: int
    spec: KeySpec


def key_sets(specs: list[KeySpec]) -> list[KeySet]:
    """Fresh secret keys, one per key spec (plaintext prime)."""
    sets = []
    for spec in specs:
        ctx = spec.seal_context()
        keygen = seal.KeyGenerator(ctx)
        secret = keygen.secret_key()
        sets.append(
            KeySet(
                ctx,
                keygen,
                seal.Encryptor(ctx, secret),
                seal.Decryptor(ctx, secret),
                seal.BatchEncoder(ctx),
                spec.plain_modulus,
                spec,
            )
        )
    return sets


def public_parts(sets: list[KeySet]) -> bytes:
    """The public context: per key set, ``params.i`` and the evaluation keys its spec
    names (``relin_keys.i``, ``galois_keys.i`` for exactly its steps). Never a secret key."""
    parts = {}
    for ks in sets:
        s = ks.spec.suffix
        parts["params" + s] = seal_bytes.dumps(ks.ctx.key_context_data().parms())
        if ks.spec.relin:
            parts["relin_keys" + s] = seal_bytes.dumps(ks.keygen.create_relin_keys())
        if ks.spec.rotations:
            elts = galois_elements(ks.ctx, ks.spec.rotations)
            parts["galois_keys" + s] = seal_bytes.dumps(ks.keygen.create_galois_keys(elts))
    client = ctx_format.client_id(seal_bytes.dumps(sets[0].keygen.secret_key()))
    return ctx_format.pack("bfv", parts, client=client)


class BfvSegmentClient:
    """One segment's primes: encrypt a batch, decrypt and CRT-combine."""

    def __init__(self, plan, sets: list[KeySet] | None = None) -> None:
        """``plan``: a BfvPlan or a :class:`BfvClientPlan`; ``sets``: its primes' keys (new
        ones when not given)."""
        self.plan = plan
        self._sets = sets if sets is not None else key_sets(plan.key_specs())

    def public_context(self) -> bytes:
        return public_parts(self._sets)

    def encrypt_batch(self, x_int: np.ndarray) -> list[list[bytes]]:
        """Integers (n, C, H, W) → per prime, one ciphertext per input value."""
        x = np.asarray(x_int).reshape(len(x_int), -1)
        if x.shape[1] != self.plan.n_inputs:
            raise ContextError(
                f"{x.shape[1]} input values per image, plan takes {self.plan.n_inputs}"
            )
        lo, hi = self.plan.input_min, self.plan.input_min + self.plan.input_max
        if x.size and (x.min() < lo or x.max() > hi):
            raise ContextError(
                f"inputs span [{x.min()}, {x.max()}]; this plan takes integers in [{lo}, {hi}]"
            )
        x = x.astype(np.int64) - lo
        out = []
        for ks in self._sets:
            slots = ks.encoder.slot_count()
            if len(x) > slots:
                raise ContextError(f"{len(x)} images: a batch holds at most {slots}")
            cts = []
            for column in x.T:
                pt = seal.Plaintext()
                ks.encoder.encode(
                    np.pad(column, (0, slots - len(column))).astype(np.uint64).tolist(), pt
                )
                cts.append(seal_bytes.dumps(ks.encryptor.encrypt_symmetric(pt)))
            out.append(cts)
        return out

    def decrypt_batch(self, outputs: list[list[bytes]], n: int) -> np.ndarray:
        if len(outputs) != len(self._sets):
            raise ContextError(f"{len(outputs)} ciphertext sets; the plan has {len(self._sets)}")
        residues = []
        for ks, cts in zip(self._sets, outputs, strict=True):
            cols = []
            for j, data in enumerate(cts):
                if j in self.plan.constant_outputs:
                    cols.append(np.full(n, self.plan.constant_outputs[j] % ks.t, dtype=np.int64))
                    continue
                ct = seal_bytes.loads(seal.Ciphertext, data, ks.ctx, what="output")
                pt = seal.Plaintext()
                ks.decryptor.decrypt(ct, pt)
                cols.append(np.asarray(ks.encoder.decode_uint64(pt), dtype=np.int64)[:n])
            residues.append(np.stack(cols, axis=1))
        return crt_combine(residues, self.plan.params.plain_moduli)

    def noise_budgets(self, outputs: list[list[bytes]]) -> list[int]:
        """Smallest invariant noise budget per prime (compile-time self-check only)."""
        from crypto_nn.bfv.params import MIN_NOISE_BUDGET

        return [
            min(
                (
                    ks.decryptor.invariant_noise_budget(
                        seal_bytes.loads(seal.Ciphertext, d, ks.ctx)
                    )
                    for d in cts
                    if d
                ),  # b"": a constant output, no ciphertext
                default=MIN_NOISE_BUDGET,
            )
            for ks, cts in zip(self._sets, outputs, strict=True)
        ]


def flatten(nested: list[list[bytes]]) -> list[bytes]:
    """Per-prime lists → one prime-major list (what crosses the wire)."""
    return [blob for per_prime in nested for blob in per_prime]


def split(flat: list[bytes], primes: int, what: str = "ciphertexts") -> list[list[bytes]]:
    if primes < 1 or len(flat) % primes:
        raise ContextError(f"{len(flat)} {what} do not divide into {primes} plaintext primes")
    per = len(flat) // primes
    return [flat[i * per : (i + 1) * per] for i in range(primes)]


def op_from_description(d: dict):
    """An IntModel op the client runs in the clear, from the plan's JSON."""
    if d.get("kind") not in OPS:
        raise ContextError(f"client op {str(d.get('kind'))[:40]!r} is not an integer_nn op")
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in d.get("arrays", {}).items()}
    return OPS[d["kind"]].from_parts(d.get("params", {}), arrays)


def op_description(op) -> dict[str, object]:
    return {
        "kind": op.kind,
        "params": op.params(),
        "arrays": {k: np.asarray(v).tolist() for k, v in op.arrays().items()},
        "summary": op.describe(),
    }


class BfvClient:
    """The Client role for served BFV batch plans (one segment) and client-aided ones."""

    def __init__(self, description: dict) -> None:
        desc = parse_description(description)
        try:
            self.name = str(desc["name"])
            self.classes = tuple(desc["output"]["classes"])
            self.in_shape = tuple(int(v) for v in desc["input"]["shape"])
            self.pixel_max = int(desc["input"]["pixel_max"])
            self.segments = [BfvClientPlan.from_description(s) for s in desc["segments_detail"]]
            self.client_ops = [
                [op_from_description(op) for op in ops] for ops in desc["client_ops"]
            ]
            self.cut_shapes = [tuple(int(v) for v in s) for s in desc["cut_shapes"]]
            specs = [key_spec_from_description(k) for k in desc["keys"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ContextError(f"BFV plan description lacks or mangles a field ({exc})") from None
        self.packing = "batch"
        self._sets = key_sets(specs)
        self.clients, first = [], 0
        for segment in self.segments:
            k = len(segment.params.plain_moduli)
            self.clients.append(BfvSegmentClient(segment, self._sets[first : first + k]))
            first += k

    def public_context(self) -> bytes:
        return public_parts(self._sets)

    @property
    def slots(self) -> int:
        return self.segments[0].params.poly_modulus_degree

    def quantize(self, images: np.ndarray) -> np.ndarray:
        """Float pixels in [0, 1] → the integers the plan was compiled for (IntModel's way)."""
        images = np.asarray(images, dtype=np.float64)
        if images.shape[1:] != self.in_shape:
            raise ContextError(
                f"images of shape {images.shape[1:]}, the plan takes {self.in_shape}"
            )
        check_pixels(images)
        return np.rint(images * self.pixel_max).astype(np.int64)

    def infer(
        self,
        images: np.ndarray,
        send: Send,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """Exact integer logits (n, classes), one ``send(segment, ciphertexts)`` per
        segment; ``on_progress`` counts segments done."""
        return self.infer_int(self.quantize(images), send, on_progress=on_progress, timings=timings)

    def infer_int(
        self,
        x_int: np.ndarray,
        send: Send,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """:meth:`infer` on images already quantised (the IntModel's own inputs)."""
        x = np.asarray(x_int)
        if not 1 <= len(x) <= self.slots:
            raise ContextError(f"{len(x)} images: a batch holds 1 to {self.slots}")
        n = len(x)
        for k, client in enumerate(self.clients):
            primes = len(client.plan.params.plain_moduli)
            cts = timed(timings, "encrypt_s", lambda x=x, c=client: flatten(c.encrypt_batch(x)))
            outs = timed(timings, "server_s", lambda k=k, cts=cts: send(k, cts))
            values = timed(
                timings,
                "decrypt_s",
                lambda outs=outs, c=client, p=primes: c.decrypt_batch(split(outs, p, "outputs"), n),
            )
            if on_progress is not None:
                on_progress(k + 1, len(self.clients))
            if k == len(self.clients) - 1:
                return values
            # |v| ≤ the segment's bound < 2^63 (range analysis) before the client's ops
            x = values.astype(np.int64).reshape(n, *self.cut_shapes[k])
            for op in self.client_ops[k]:  # in the clear: the client's share of the work
                x = timed(timings, "clear_s", lambda op=op, x=x: op.forward(x))
        raise ContextError("the plan has no segments")


def slot_ints(values: np.ndarray, t: int, n_slots: int) -> list[int]:
    """A slot vector (integers as floats or ints) mod t, written into both batching rows."""
    row = np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64) % t
    row = np.resize(row, n_slots)
    return np.concatenate([row, row]).astype(np.uint64).tolist()


class BfvSingleClient:
    """Secret keys (one per plaintext prime), encrypt one image, decrypt and CRT-combine."""

    def __init__(self, plan: BfvSinglePlan | BfvSingleClientPlan) -> None:
        """``plan``: the compiled plan, or what a client rebuilds of it from its JSON."""
        self.plan = plan
        self.packing = "single"
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
        for ks in self._sets:
            cts = []
            for v in vectors:
                pt = seal.Plaintext()
                ks.encoder.encode(slot_ints(v, ks.t, ks.encoder.slot_count() // 2), pt)
                cts.append(seal_bytes.dumps(ks.encryptor.encrypt_symmetric(pt)))
            out.append(cts)
        return out

    def decrypt_single(self, outputs: list[list[bytes]]) -> np.ndarray:
        residues = []
        for ks, cts in zip(self._sets, outputs, strict=True):
            pt = seal.Plaintext()
            output = seal_bytes.loads(seal.Ciphertext, cts[0], ks.ctx, what="output")
            ks.decryptor.decrypt(output, pt)
            values = ks.encoder.decode_uint64(pt)
            residues.append(np.asarray(values[: self.plan.n_outputs], dtype=np.int64))
        return crt_combine(residues, self.plan.params.plain_moduli)

    def noise_budget(self, outputs: list[list[bytes]]) -> int:
        return min(
            ks.decryptor.invariant_noise_budget(seal_bytes.loads(seal.Ciphertext, cts[0], ks.ctx))
            for ks, cts in zip(self._sets, outputs, strict=True)
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
