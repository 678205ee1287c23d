"""BFV parameters: the ring, the coefficient modulus, and the plaintext primes t_i.

Every operation of an integer network is a ring operation, so its result modulo t is
right however much the intermediates wrap; only the *logits* must be recoverable. When
they can exceed one batching prime, the network runs under several coprime primes t_i
and the client recombines with the CRT (CryptoNets, Dowlin et al. 2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from crypto_nn.errors import CompileError
from crypto_nn.wire.key_checks import KeySpec

MIN_NOISE_BUDGET = 10  # bits left after the whole plan; below this decryption may be wrong
PLAIN_BITS = 20  # first size tried for each batching prime t_i ≡ 1 (mod 2N)
MAX_PLAIN_BITS = 50  # largest t tried (SEAL allows up to 60)
NOISE_MARGIN = 5  # bits kept in reserve when widening t from a trial's measured budget


@dataclass(frozen=True)
class BfvParams:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    plain_moduli: tuple[int, ...]  # coprime batching primes; logits recombined by CRT

    def key_specs(self, *, relin: bool, rotations=(), first: int = 0) -> list[KeySpec]:
        """One key set per prime; part suffixes ``.first``, ``.first+1`` … (a client-aided
        plan numbers its segments' primes on from one another)."""
        return [
            KeySpec(
                "bfv",
                self.poly_modulus_degree,
                tuple(self.coeff_mod_bit_sizes),
                plain_modulus=t,
                relin=relin,
                rotations=tuple(rotations),
                suffix=f".{first + i}",
            )
            for i, t in enumerate(self.plain_moduli)
        ]

    def seal_context(self, t: int) -> seal.SEALContext:
        spec = self.key_specs(relin=False)[self.plain_moduli.index(t)]
        ctx = spec.seal_context()
        if not ctx.parameters_set():
            raise CompileError(f"SEAL refuses BFV parameters: {ctx.parameters_error_message()}")
        return ctx

    def describe(self) -> dict[str, object]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "plain_moduli": list(self.plain_moduli),
        }

    @classmethod
    def from_description(cls, d: dict) -> BfvParams:
        return cls(
            int(d["poly_modulus_degree"]),
            tuple(int(b) for b in d["coeff_mod_bit_sizes"]),
            tuple(int(t) for t in d["plain_moduli"]),
        )


def default_coeff(n: int) -> tuple[tuple[int, ...], set[int]]:
    """SEAL's 128-bit BFV coefficient modulus for N: (bit sizes, the primes themselves)."""
    coeff = seal.CoeffModulus.BFVDefault(n, seal.SEC_LEVEL_TYPE.TC128)
    bits = tuple(m.bit_count() for m in coeff)
    # the primes BfvParams will really use (CoeffModulus.Create of these sizes)
    return bits, {m.value() for m in seal.CoeffModulus.Create(n, list(bits))}


def crt_combine(residues: list[np.ndarray], moduli: tuple[int, ...]) -> np.ndarray:
    """Centered integers x with x ≡ r_i (mod t_i), |x| < Π t_i / 2, exact (Python ints)."""
    big = math.prod(moduli)
    total = np.zeros(residues[0].shape, dtype=object)
    for r, t in zip(residues, moduli, strict=True):
        m = big // t
        total = total + r.astype(object) * (m * pow(m, -1, t))
    total = total % big
    return np.where(total > big // 2, total - big, total)


def batching_primes(n: int, bits: int, logit_bound: int, avoid: set[int]) -> tuple[int, ...]:
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
