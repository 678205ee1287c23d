"""BFV batch plans: the IntModel's polynomial network, exactly, under encryption.

The integer network (integer_nn, ``square="exact"``: affine layers and x², no tables)
runs slot-wise under BFV: one ciphertext per input value, one image per slot (N slots).
Every operation is a ring operation, so the result modulo a plaintext modulus t is
right however much the intermediates wrap; only the *logits* must be recoverable. When
they can exceed one batching prime, the network runs under several coprime primes t_i
and the client recombines with the CRT (CryptoNets, Dowlin et al. 2016). Decrypted
logits equal ``IntModel.forward`` bit for bit.

Noise is planned, not trusted: SEAL's default modulus for N = 4096 decrypts depth-2
products wrongly without raising. ``compile_bfv`` runs the plan once on extreme inputs
with a throwaway key and refuses it unless every modulus keeps ≥ ``MIN_NOISE_BUDGET``
bits of invariant noise budget.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tenseal.sealapi as seal

from crypto_nn import context as ctx_format
from crypto_nn import seal_bytes
from crypto_nn.bfv_layers import (  # noqa: F401  (re-exported: the plan's layer types)
    _LINEAR_KINDS,
    MAX_TABLE_DOMAIN,
    IntAffine,
    IntSquareLayer,
    fold_constants,
    layers_from_int_model,
    layers_from_ops,
)
from crypto_nn.bfv_tables import IntPolyTable, PolyEvaluator
from crypto_nn.errors import CompileError, ContextError
from integer_nn.model import IntModel

MIN_NOISE_BUDGET = 10  # bits left after the whole plan; below this decryption may be wrong
PLAIN_BITS = 20  # first size tried for each batching prime t_i ≡ 1 (mod 2N)
MAX_PLAIN_BITS = 50  # largest t tried (SEAL allows up to 60)
NOISE_MARGIN = 5  # bits kept in reserve when widening t from a trial's measured budget


@dataclass(frozen=True)
class BfvParams:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    plain_moduli: tuple[int, ...]  # coprime batching primes; logits recombined by CRT

    def seal_context(self, t: int) -> seal.SEALContext:
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(self.poly_modulus_degree)
        parms.set_coeff_modulus(
            seal.CoeffModulus.Create(self.poly_modulus_degree, list(self.coeff_mod_bit_sizes))
        )
        parms.set_plain_modulus(t)
        ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if not ctx.parameters_set():
            raise CompileError(f"SEAL refuses BFV parameters: {ctx.parameters_error_message()}")
        return ctx


def crt_combine(residues: list[np.ndarray], moduli: tuple[int, ...]) -> np.ndarray:
    """Centered integers x with x ≡ r_i (mod t_i), |x| < Π t_i / 2, exact (Python ints)."""
    big = math.prod(moduli)
    total = np.zeros(residues[0].shape, dtype=object)
    for r, t in zip(residues, moduli, strict=True):
        m = big // t
        total = total + r.astype(object) * (m * pow(m, -1, t))
    total = total % big
    return np.where(total > big // 2, total - big, total)


@dataclass
class BfvPlan:
    layers: list[IntAffine | IntSquareLayer]
    params: BfvParams
    in_shape: tuple[int, ...]
    input_max: int  # inputs are integers in [input_min, input_min + input_max]
    logit_bound: int  # |logit| ≤ this for every valid input (integer_nn's range analysis)
    constant_outputs: dict[int, int]  # logits no input reaches: known without decryption
    input_min: int = 0  # the client encrypts x − input_min; the first bias absorbs it

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].weight.shape[0]

    def describe(self) -> dict[str, object]:
        return {
            "scheme": "bfv",
            "packing": "batch",
            "params": {
                "poly_modulus_degree": self.params.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(self.params.coeff_mod_bit_sizes),
                "plain_moduli": list(self.params.plain_moduli),
            },
            "logit_bound": str(self.logit_bound),
            "rotations": [],
            "round_trips": 0,
            "layers": [layer.describe() for layer in self.layers],
            "input_range": [self.input_min, self.input_min + self.input_max],
        }


class KeySet(NamedTuple):
    """A client's secret-key machinery for one plaintext prime t."""

    ctx: seal.SEALContext
    keygen: seal.KeyGenerator
    encryptor: seal.Encryptor
    decryptor: seal.Decryptor
    encoder: seal.BatchEncoder
    t: int


def key_sets(params: BfvParams) -> list[KeySet]:
    """Fresh secret keys, one per plaintext prime of ``params``."""
    sets = []
    for t in params.plain_moduli:
        ctx = params.seal_context(t)
        keygen = seal.KeyGenerator(ctx)
        secret = keygen.secret_key()
        sets.append(
            KeySet(
                ctx,
                keygen,
                seal.Encryptor(ctx, secret),
                seal.Decryptor(ctx, secret),
                seal.BatchEncoder(ctx),
                t,
            )
        )
    return sets


def public_parts(sets: list[KeySet], rotations: list[int] | None = None) -> bytes:
    """The public context: per prime i, ``params.i`` and ``relin_keys.i`` (and
    ``galois_keys.i`` for exactly ``rotations`` when given). Never a secret key."""
    parts = {}
    for i, ks in enumerate(sets):
        parts[f"params.{i}"] = seal_bytes.dumps(ks.ctx.key_context_data().parms())
        parts[f"relin_keys.{i}"] = seal_bytes.dumps(ks.keygen.create_relin_keys())
        if rotations:
            elts = [ks.ctx.key_context_data().galois_tool().get_elt_from_step(r) for r in rotations]
            parts[f"galois_keys.{i}"] = seal_bytes.dumps(ks.keygen.create_galois_keys(elts))
    return ctx_format.pack("bfv", parts)


def load_prime(parts: dict[str, bytes], i: int, t: int) -> tuple[seal.SEALContext, seal.RelinKeys]:
    """Server side: prime i's context and relinearisation keys, checked against t."""
    if f"params.{i}" not in parts or f"relin_keys.{i}" not in parts:
        raise ContextError(f"BFV context lacks params.{i} / relin_keys.{i}")
    parms = seal_bytes.loads(seal.EncryptionParameters, parts[f"params.{i}"], what=f"params.{i}")
    if parms.plain_modulus().value() != t:
        raise ContextError(
            f"params.{i} has plain modulus {parms.plain_modulus().value()}, the plan needs {t}"
        )
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    relin = seal_bytes.loads(seal.RelinKeys, parts[f"relin_keys.{i}"], ctx, what=f"relin_keys.{i}")
    return ctx, relin


class BfvClient:
    """One secret key per plaintext modulus; encrypt a batch, decrypt and CRT-combine."""

    def __init__(self, plan: BfvPlan) -> None:
        self.plan = plan
        self._sets = key_sets(plan.params)

    def public_context(self) -> bytes:
        return public_parts(self._sets)

    def encrypt_batch(self, x_int: np.ndarray) -> list[list[bytes]]:
        """int64 (n, C, H, W) → per modulus, one ciphertext per input value."""
        x = np.asarray(x_int, dtype=np.int64).reshape(len(x_int), -1)
        if x.shape[1] != self.plan.n_inputs:
            raise ContextError(
                f"{x.shape[1]} input values per image, plan takes {self.plan.n_inputs}"
            )
        lo, hi = self.plan.input_min, self.plan.input_min + self.plan.input_max
        if x.size and (x.min() < lo or x.max() > hi):
            raise ContextError(
                f"inputs span [{x.min()}, {x.max()}]; this plan takes integers in [{lo}, {hi}]"
            )
        x = x - lo
        out = []
        for ks in self._sets:
            enc, encoder = ks.encryptor, ks.encoder
            slots = encoder.slot_count()
            if len(x) > slots:
                raise ContextError(f"{len(x)} images: a batch holds at most {slots}")
            cts = []
            for column in x.T:
                pt = seal.Plaintext()
                encoder.encode(
                    np.pad(column, (0, slots - len(column))).astype(np.uint64).tolist(), pt
                )
                cts.append(seal_bytes.dumps(enc.encrypt_symmetric(pt)))
            out.append(cts)
        return out

    def decrypt_batch(self, outputs: list[list[bytes]], n: int) -> np.ndarray:
        residues = []
        for (ctx, _, _, dec, encoder, t), cts in zip(self._sets, outputs, strict=True):
            cols = []
            for j, data in enumerate(cts):
                if j in self.plan.constant_outputs:
                    cols.append(np.full(n, self.plan.constant_outputs[j] % t, dtype=np.int64))
                    continue
                ct = seal_bytes.loads(seal.Ciphertext, data, ctx, what="output")
                pt = seal.Plaintext()
                dec.decrypt(ct, pt)
                cols.append(np.asarray(encoder.decode_uint64(pt), dtype=np.int64)[:n])
            residues.append(np.stack(cols, axis=1))
        return crt_combine(residues, self.plan.params.plain_moduli)

    def noise_budgets(self, outputs: list[list[bytes]]) -> list[int]:
        """Smallest invariant noise budget per modulus (compile-time self-check only)."""
        budgets = []
        for (ctx, _, _, dec, _, _), cts in zip(self._sets, outputs, strict=True):
            budgets.append(
                min(
                    (
                        dec.invariant_noise_budget(seal_bytes.loads(seal.Ciphertext, d, ctx))
                        for d in cts
                        if d
                    ),  # b"": a constant output, no ciphertext
                    default=MIN_NOISE_BUDGET,
                )
            )
        return budgets


class BfvEvaluator:
    """Server side: the plan under each plaintext modulus, from the public context."""

    def __init__(self, plan: BfvPlan, public_context: bytes) -> None:
        _, parts = ctx_format.unpack(public_context)
        self.plan = plan
        self._sets = []
        for i, t in enumerate(plan.params.plain_moduli):
            ctx, relin = load_prime(parts, i, t)
            self._sets.append((ctx, seal.Evaluator(ctx), relin, t))

    def _run_one(self, ctx, ev, relin, t, payloads: list[bytes]) -> list[bytes]:
        xs = [seal_bytes.loads(seal.Ciphertext, d, ctx, what="input") for d in payloads]
        if len(xs) != self.plan.n_inputs:
            raise ContextError(f"{len(xs)} input ciphertexts; the plan takes {self.plan.n_inputs}")
        scratch = seal.Ciphertext()
        for layer in self.plan.layers:
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

    def run_bytes(self, payloads: list[list[bytes]]) -> list[list[bytes]]:
        if len(payloads) != len(self._sets):
            raise ContextError(
                f"{len(payloads)} ciphertext sets; the plan has {len(self._sets)} plaintext moduli"
            )
        return [self._run_one(*s, p) for s, p in zip(self._sets, payloads, strict=True)]


def _moduli(n: int, bits: int, logit_bound: int, avoid: set[int]) -> tuple[int, ...]:
    """As few distinct ``bits``-bit batching primes as make Π t_i > 2·|logit| bound, none
    of them a prime of the coefficient modulus (``avoid``: SEAL needs t coprime to q)."""
    count = 1
    while True:
        clash = sum(1 for q in avoid if q.bit_length() == bits)  # same-size primes could repeat
        found = [m.value() for m in seal.PlainModulus.Batching(n, [bits] * (count + clash))]
        moduli = tuple(t for t in found if t not in avoid)[:count]
        if math.prod(moduli) > 2 * logit_bound:
            return moduli
        count += 1


def compile_bfv(
    model: IntModel, *, n: int | None = None, verify: bool = True, tables: str = "refuse"
) -> BfvPlan:
    """A BFV batch plan for an IntModel; refused with the reason if it cannot fit.

    ``tables="poly"``: tables become interpolating polynomials over Z_t (non-interactive;
    see ``crypto_nn.bfv_tables``). Without ``n``, the smallest N ∈ {8192, 16384, 32768}
    whose trial run keeps enough noise budget is taken."""
    logit_bound = max(abs(model.stats[-1].worst.lo), abs(model.stats[-1].worst.hi))
    layers = layers_from_int_model(model, tables=tables)
    candidates = [n] if n else [8192, 16384, 32768]
    for i, degree in enumerate(candidates):
        try:
            return compile_layers(
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
    raise AssertionError("unreachable")


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
    coeff = seal.CoeffModulus.BFVDefault(n, seal.SEC_LEVEL_TYPE.TC128)
    coeff_bits = tuple(m.bit_count() for m in coeff)
    # the primes BfvParams.seal_context will really use (CoeffModulus.Create of these sizes)
    coeff_primes = {m.value() for m in seal.CoeffModulus.Create(n, list(coeff_bits))}

    def plan_for(bits: int) -> BfvPlan:
        return BfvPlan(
            layers=layers,
            params=BfvParams(n, coeff_bits, _moduli(n, bits, logit_bound, coeff_primes)),
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
    products = sum(isinstance(layer, IntSquareLayer) for layer in layers)
    products += sum(2 * layer.depth for layer in layers if isinstance(layer, IntPolyTable))
    spare = (left - MIN_NOISE_BUDGET - NOISE_MARGIN) // (1 + products)
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
    client = BfvClient(plan)
    x = np.full((2, plan.n_inputs), plan.input_min, np.int64)
    x[0] = plan.input_min + plan.input_max
    outputs = BfvEvaluator(plan, client.public_context()).run_bytes(client.encrypt_batch(x))
    return min(client.noise_budgets(outputs))
