"""Derived error bounds for CKKS single packing, shared by the crypto_nn and server tests:
the tolerance a decrypted logit may differ from the plain model's, from the scheme's
noise (not a number picked to pass)."""

import numpy as np

from crypto_nn.ckks.layers import Affine, Square


def single_error_bound(plan, images) -> float:
    """Six standard deviations of a single-packing run's slot error, propagated per layer.

    At N = 8192 a slot is a sum of N coefficients against unit roots of unity, so a
    coefficient error of deviation σc becomes σc·√N in a slot:
    - encoding rounds each coefficient by U(±1/2): σ = √(N/12) ≈ 26 (weights, at Δw);
    - fresh symmetric encryption adds e with σc = 3.2: σ ≈ 290 (inputs, at Δ);
    - a rescale rounds c0 and c1, and c1's rounding meets the ternary secret's 2N/3
      non-zero terms: σ ≈ √(N/12)·√(2N/3) ≈ 1,930 (every activation output, at Δ).
    - a rotation's key switching adds Σ_i d_i·e_i / P over the level's ℓ primes (d_i
      uniform mod q_i, e_i of σc 3.2): σc ≈ √N·3.2/√12·√ℓ·q/P per coefficient, σ ≈
      N·0.92·√ℓ ≈ 2^13.4 in a slot. Harmless after a product (scale Δ·Δw) — the giant
      steps and the im2col's last levels — but a layer's baby steps rotate its inputs at
      Δ (baby step i carries i of them, counted as g − 1), and so do the im2col's first
      levels when the ring route hoists them onto the input (one key switch per copy).
    Errors are independent, so an affine layer gives σ² = Σ w²·(σx² + (g−1)·σks²) +
    σw²·Σ x² per output (Σ x² over every slot of a period n', replicas included); x² gives
    2|x|·σ (z² + a·z + b: (2|z| + |a|)·σ, times c2), plus the rescale's σ.
    """
    n = plan.params.poly_modulus_degree
    sd_w = np.sqrt(n / 12) / 2.0**plan.params.weight_scale_bits
    sd_rescale = np.sqrt(n / 12) * np.sqrt(2 * n / 3) / plan.params.scale
    x = images.reshape(len(images), -1).astype(np.float64)
    sd = np.full_like(x, 3.2 * np.sqrt(n) / plan.params.scale)
    sd_ks = n * 3.2 / np.sqrt(12) * np.sqrt(len(plan.params.coeff_mod_bit_sizes) - 1)
    affine_steps = iter([s for s in plan.program.steps if s.kind in ("im2col", "diagonals")])
    period = 1  # of the blocks a layer reads
    for layer in plan.layers:
        if isinstance(layer, Affine):
            step = next(affine_steps)
            if step.kind == "im2col":
                hoisted = step.im2col.input_copies > 1 and set(step.im2col.input_steps) <= set(
                    plan.rotations
                )
                baby, replicas, period = int(hoisted), 1, step.im2col.positions
            else:
                d = step.diagonals
                baby, replicas, period = d.baby - 1, d.in_period / period, d.out_period
            sd = np.sqrt(
                (sd**2 + baby * (sd_ks / plan.params.scale) ** 2) @ (layer.weight**2).T
                + sd_w**2 * replicas * (x**2).sum(1, keepdims=True)
            )
        else:
            a, c2 = (
                (0.0, 1.0)
                if isinstance(layer, Square)
                else (layer.coeffs[1] / layer.coeffs[2], layer.coeffs[2])
            )
            sd = abs(c2) * ((2 * np.abs(x) + abs(a)) * sd + sd_rescale)
        x = layer.forward(x)
    return float(6 * sd.max())
