"""CKKS parameters chosen from a plan's depth and its calibrated value ranges.

Chain: ``[q0] + [s] * depth + [P]``. Every level's prime is close to the scale Δ = 2^s,
so rescaling keeps values at scale ≈ Δ. The first prime q0 is what remains at
decryption: ``q0 ≥ Δ · 2^value_bits`` so the largest value any layer produces (from
calibration, doubled for margin) still decodes without wrapping around — the failure
of the TenSEAL tutorial's 31-bit q0 with a 26-bit scale. P, the special prime, is as
large as q0. The smallest N (≥ 8192 for batch packing: 4,096 slots) whose 128-bit
bound holds the chain at a scale of at least 2^24 is taken, with the largest such scale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import tenseal.sealapi as seal

from crypto_nn.errors import CompileError
from crypto_nn.security import MAX_LOG_Q_128, MAX_PRIME_BITS

MIN_SCALE_BITS = 24  # below this CKKS noise (~2^10 after a few ops) eats into 8-bit precision
MAX_SCALE_BITS = 40


@dataclass(frozen=True)
class CkksParams:
    poly_modulus_degree: int  # N; slots = N / 2
    coeff_mod_bit_sizes: tuple[int, ...]  # [q0, scale primes..., special prime P]
    scale_bits: int  # Δ = 2^scale_bits
    weight_scale_bits: int = 0  # single packing: weights encoded at 2^w, products not rescaled

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    def describe(self) -> dict[str, object]:
        d = asdict(self)
        d["coeff_mod_bit_sizes"] = list(self.coeff_mod_bit_sizes)
        d.update(
            total_bits=sum(self.coeff_mod_bit_sizes),
            max_bits_128=MAX_LOG_Q_128[self.poly_modulus_degree],
            slots=self.slots,
        )
        return d

    def seal_parameters(self) -> seal.EncryptionParameters:
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(self.poly_modulus_degree)
        parms.set_coeff_modulus(
            seal.CoeffModulus.Create(self.poly_modulus_degree, list(self.coeff_mod_bit_sizes))
        )
        return parms

    def encodes_to_zero(self):
        """A test ``values -> bool``: does CKKS encode this slot vector, at the weight scale
        2^weight_scale_bits, to the zero plaintext (every coefficient rounds to 0)? SEAL
        refuses a product with such a plaintext, so plans leave those weights out."""
        encoder = seal.CKKSEncoder(self.seal_context())
        scale = float(2**self.weight_scale_bits) if self.weight_scale_bits else self.scale

        def test(values) -> bool:
            pt = seal.Plaintext()
            encoder.encode(list(map(float, values)), scale, pt)
            return pt.is_zero()

        return test

    def seal_context(self) -> seal.SEALContext:
        ctx = seal.SEALContext(self.seal_parameters(), True, seal.SEC_LEVEL_TYPE.TC128)
        if not ctx.parameters_set():
            raise CompileError(f"SEAL refuses {self}: {ctx.parameters_error_message()}")
        return ctx


def choose_ckks(
    depth: int,
    value_bits: int,
    *,
    min_n: int = 8192,
    n: int | None = None,
    scale_bits: int | None = None,
) -> CkksParams:
    """Smallest secure N and largest scale for ``depth`` levels and values below 2^value_bits."""
    candidates = [n] if n else [d for d in sorted(MAX_LOG_Q_128) if d >= min_n]
    if n and n not in MAX_LOG_Q_128:
        raise CompileError(
            f"N={n} is not a supported ring degree; use one of {sorted(MAX_LOG_Q_128)}"
        )
    for degree in candidates:
        budget = MAX_LOG_Q_128[degree]
        # total = 2·(s + value_bits) + depth·s  ≤  budget
        s = scale_bits or min(MAX_SCALE_BITS, (budget - 2 * value_bits) // (depth + 2))
        q0 = s + value_bits
        total = 2 * q0 + depth * s
        if s >= MIN_SCALE_BITS and q0 <= MAX_PRIME_BITS and total <= budget:
            return CkksParams(degree, (q0,) + (s,) * depth + (q0,), s)
    largest = candidates[-1]
    need = 2 * (MIN_SCALE_BITS + value_bits) + depth * MIN_SCALE_BITS
    raise CompileError(
        f"depth {depth} with values up to 2^{value_bits} needs ≥ {need} modulus bits at the "
        f"smallest usable scale 2^{MIN_SCALE_BITS}; N={largest} allows {MAX_LOG_Q_128[largest]} "
        "at 128-bit security — use fewer layers or x² activations (depth 1 each)"
    )


def choose_ckks_single(
    activations: int, value_bits: int, *, min_slots: int, n: int | None = None
) -> CkksParams:
    """Parameters for single packing, where an affine layer and the activation after it share
    one level: the product ``x·w`` (scale Δ·Δw) is not rescaled, it is squared (Δ²Δw²) and
    then rescaled once by a prime of s + 2w bits, back to ≈ Δ. Chain:
    ``[q0] + [s + 2w] * activations + [P]`` with q0 = s + w + value_bits (the logits stay at
    Δ·Δw) and P the largest prime. Fewer, larger primes make every Galois key smaller
    (a key holds (L − 1)·L polynomials) and every rotation cheaper.

    Picks the smallest N with enough slots, then balances the errors (σ in slot units at
    N = 8192): a weight is off by its encoding rounding, ≈ 2^4.7/Δw; an activation by a
    rescale's rounding times the ternary secret, ≈ 2^11/Δ, and by each baby-step
    rotation's key-switching noise, ≈ 2^13.4/Δ. Measured on tenseal-tutorial / mnist-5k
    (150 images, mean |logit error|): (s, w) = (25, 15) 0.0146, (24, 16) 0.0062,
    (22, 17) 0.0062, (20, 18) 0.0147 — weights dominate until s drops near 20: s ≈ w + 7.
    """
    candidates = [n] if n else [d for d in sorted(MAX_LOG_Q_128) if d // 2 >= min_slots]
    if n and (n not in MAX_LOG_Q_128 or n // 2 < min_slots):
        raise CompileError(f"N={n}: this plan needs a supported N with at least {min_slots} slots")
    for degree in candidates:
        best = None
        for w in range(12, 31):
            for s in range(18, MAX_SCALE_BITS + 1):
                p, q0 = s + 2 * w, s + w + value_bits
                if p > MAX_PRIME_BITS or q0 > MAX_PRIME_BITS:
                    continue
                chain = (q0,) + (p,) * activations + (max(p, q0),)
                if sum(chain) > MAX_LOG_Q_128[degree]:
                    continue
                key = (min(s, w + 7), s + w)
                if best is None or key > best[0]:
                    best = (key, CkksParams(degree, chain, s, w))
        if best:
            return best[1]
    raise CompileError(
        f"single packing with {activations} activation layers and values up to 2^{value_bits} "
        f"does not fit N ≤ {candidates[-1] if candidates else n} at 128-bit security: use "
        "batch packing, fewer layers, or a model with smaller values"
    )


def value_bits(max_abs: float) -> int:
    """Bits above the scale that the first prime must keep: 2× margin, at least 2."""
    return max(2, math.ceil(math.log2(max(max_abs, 1e-9) * 2.0)) + 1)
