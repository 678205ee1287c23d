"""BFV compilers: an IntModel to a plan — ``compile(int_model, packing=..., tables=...)``.

- batch, ``tables="refuse"`` or ``"poly"``: one exact segment (:class:`BfvPlan`); lookup
  tables refused, or interpolated as polynomials over Z_t;
- batch, ``tables="client"``: client-aided (:class:`ClientAidedPlan`). The IntModel is cut
  at every run of non-polynomial ops (tables, max pools); the server evaluates each
  segment (affine layers and x²) exactly and the client applies the cut's ops in the
  clear between segments — one round trip per cut, every segment from fresh ciphertexts,
  the server stateless (a request names its segment). What the client learns beyond the
  logits: every pre-activation at every cut (docs/threat-model.md);
- single: one image per request (:class:`BfvSinglePlan`), polynomial models only. A
  product with a *vector* plaintext multiplies the noise by about N·t, so the ring degree
  is chosen by trial runs: the smallest N, widest primes first, that keeps the budget.

Noise is planned, not trusted: every compiler runs its plan once on extreme inputs with a
throwaway key and refuses it unless every modulus keeps ≥ ``MIN_NOISE_BUDGET`` bits (SEAL's
default modulus for N = 4096 decrypts depth-2 products wrongly without raising).
"""

from __future__ import annotations

import copy

import numpy as np

from crypto_nn import slots
from crypto_nn.bfv.client import BfvSegmentClient, BfvSingleClient
from crypto_nn.bfv.layers import (
    LINEAR_KINDS,
    IntAffine,
    IntSquareLayer,
    fold_constants,
    layers_from_int_model,
    layers_from_ops,
)
from crypto_nn.bfv.params import (
    MAX_PLAIN_BITS,
    MIN_NOISE_BUDGET,
    NOISE_MARGIN,
    PLAIN_BITS,
    BfvParams,
    batching_primes,
    default_coeff,
)
from crypto_nn.bfv.plan import BfvPlan, BfvSinglePlan, ClientAidedPlan
from crypto_nn.bfv.single import BfvSingleEvaluator
from crypto_nn.errors import CompileError
from integer_nn.model import IntModel

SINGLE_PLAIN_BITS = (50, 40, 30)  # widest first; a vector plaintext costs ≈ log2(N·t) bits
_POLYNOMIAL = (*LINEAR_KINDS, "square")


def compile(
    model: IntModel, *, packing: str = "batch", tables: str = "refuse", **options
) -> BfvPlan | ClientAidedPlan | BfvSinglePlan:
    """The BFV plan for ``model``: ``packing`` batch or single; ``tables`` refuse, poly or
    client (batch only)."""
    if not isinstance(model, IntModel):
        raise CompileError(
            "BFV runs integer networks: quantise first (integer_nn.quantize(model, calibration))"
        )
    if packing == "single":
        if tables != "refuse":
            raise CompileError("BFV single packing takes polynomial models (x²) only")
        return compile_bfv_single(model, **options)
    if packing != "batch":
        raise CompileError(f"packing {packing!r}: choose batch or single")
    if tables == "client":
        return compile_client_aided(model, **options)
    return compile_bfv(model, tables=tables, **options)


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
    from crypto_nn.bfv.batch import BfvBatchEvaluator

    client = BfvSegmentClient(plan)
    x = np.full((2, plan.n_inputs), plan.input_min, np.int64)
    x[0] = plan.input_min + plan.input_max
    outputs = BfvBatchEvaluator(plan, client.public_context()).run_primes(client.encrypt_batch(x))
    return min(client.noise_budgets(outputs))


def _split(model: IntModel) -> list[tuple[list[int], list[int]]]:
    """[(server op indices, client op indices)] in order."""
    parts: list[tuple[list[int], list[int]]] = [([], [])]
    for i, op in enumerate(model.ops):
        server, client = parts[-1]
        if op.kind in _POLYNOMIAL:
            if client:  # a polynomial op after client ops opens the next segment
                parts.append(([i], []))
            else:
                server.append(i)
        else:
            client.append(i)
    return parts


def compile_client_aided(
    model: IntModel, *, n: int = 8192, verify: bool = True, name: str = "model-bfv"
) -> ClientAidedPlan:
    """Segments between the model's non-polynomial ops, each compiled as an exact BFV plan
    for the input range and output bound integer_nn's range analysis gives it."""
    parts = _split(model)
    if not parts[0][0]:
        raise CompileError("the model starts with a non-polynomial op: nothing to encrypt first")
    if parts[-1][1]:
        raise CompileError(
            f"the model ends with non-polynomial op {parts[-1][1][0]}; the logits must come "
            "from a linear layer"
        )
    shapes = [tuple(model.in_shape)]
    probe = np.zeros((1, *model.in_shape), np.int64)
    for op in model.ops:
        probe = op.forward(probe)
        shapes.append(tuple(probe.shape[1:]))  # shapes[i + 1]: the output shape of op i
    segments, client_ops, cut_shapes = [], [], []
    in_range = (0, model.input_max)
    for server, client in parts:
        last = model.stats[server[-1]].worst
        segments.append(
            compile_layers(
                layers_from_ops([model.ops[i] for i in server], shapes[server[0]], server[0]),
                shapes[server[0]],
                in_range,
                max(abs(last.lo), abs(last.hi)),
                n=n,
                verify=verify,
            )
        )
        if client:
            client_ops.append([model.ops[i] for i in client])
            cut_shapes.append(shapes[server[-1] + 1])
            out = model.stats[client[-1]].worst
            in_range = (out.lo, out.hi)
    return served(ClientAidedPlan(segments, client_ops, cut_shapes), model, name)


def compile_bfv_single(
    model: IntModel, *, n: int | None = None, verify: bool = True, name: str = "model-bfv-single"
) -> BfvSinglePlan:
    """A single-packing BFV plan for a polynomial IntModel (affine (x² affine)*).

    Tries the smallest N first and, for each, the widest plaintext primes first (fewer
    primes: proportionally less work and fewer keys), keeping the first plan whose trial
    run on the extreme input ends with ``MIN_NOISE_BUDGET`` bits to spare."""
    layers = layers_from_int_model(model)
    logit_bound = max(abs(model.stats[-1].worst.lo), abs(model.stats[-1].worst.hi))
    left, tried = None, []
    for degree in [n] if n else [8192, 16384, 32768]:
        bits, primes = default_coeff(degree)
        program = slots.program(layers, degree // 2)
        for plain_bits in SINGLE_PLAIN_BITS:
            plan = BfvSinglePlan(
                program=program,
                params=BfvParams(
                    degree, bits, batching_primes(degree, plain_bits, logit_bound, primes)
                ),
                in_shape=tuple(model.in_shape),
                input_max=model.input_max,
                logit_bound=logit_bound,
                n_outputs=layers[-1].weight.shape[0],
            )
            if not verify:
                return served(plan, model, name)
            client = BfvSingleClient(plan)
            out = BfvSingleEvaluator(plan, client.public_context()).run_primes(
                client.encrypt_single(np.full(plan.in_shape, plan.input_max, np.int64))
            )
            left = client.noise_budget(out)
            tried.append(f"N={degree}, {plain_bits}-bit t: {left} bits left")
            if left >= MIN_NOISE_BUDGET:
                return served(plan, model, name)
    raise CompileError(
        f"BFV single packing runs out of noise budget ({'; '.join(tried)}; need ≥ "
        f"{MIN_NOISE_BUDGET}); use batch packing or a shallower model"
    )
