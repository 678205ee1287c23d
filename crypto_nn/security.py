"""The 128-bit security bound on the ciphertext modulus for each ring dimension N.

Numbers from the HomomorphicEncryption.org security standard (Albrecht et al., 2018,
Table 1: classical 128-bit security, ternary secret, error σ ≈ 3.2) — the same table
SEAL enforces as ``CoeffModulus.MaxBitCount(N, tc128)``; a test checks they agree.
"""

from __future__ import annotations

MAX_LOG_Q_128: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
MAX_PRIME_BITS = 60  # SEAL's limit on one RNS prime


def is_secure(n: int, coeff_bits: list[int]) -> bool:
    return n in MAX_LOG_Q_128 and sum(coeff_bits) <= MAX_LOG_Q_128[n]
