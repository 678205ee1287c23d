"""``compile(model, calibration, ...) -> CkksPlan``: a torch model to a CKKS plan, refused
here with the reason when it would not fit (scales, depth, slots), never halfway through an
inference."""

from __future__ import annotations

import numpy as np
from torch import nn

from crypto_nn import slots
from crypto_nn.ckks import layers as plan_layers
from crypto_nn.ckks.params import choose_ckks, choose_ckks_single, value_bits
from crypto_nn.ckks.plan import CkksPlan
from crypto_nn.errors import CompileError

SCHEMES = ("ckks",)
PACKINGS = ("batch", "single")


def _fusable(layers: list) -> bool:
    try:
        slots.check_shape(layers)
    except CompileError:
        return False
    return True


def compile(
    model: nn.Module,
    calibration: np.ndarray,
    *,
    scheme: str = "ckks",
    packing: str = "batch",
    poly_degree: int = 2,
    n: int | None = None,
    scale_bits: int | None = None,
    name: str = "model",
    classes: tuple[str, ...] = (),
    fused: bool = True,
    noise_sigma: float = 0.0,
) -> CkksPlan:
    """Compile a torch model to a homomorphic plan; refuse here, with the reason, any model
    that would not fit (never a SEAL error halfway through an inference).

    ``fused`` (batch): when the model is affine layers separated by single x² or degree-2
    activations, each affine layer and the activation after it share one level — weights
    at a small scale Δw, no rescale until after the square (see ``choose_ckks_single``).
    Fewer primes make uploads smaller and every product cheaper. ``fused=False`` or an
    explicit ``scale_bits`` gives one level per layer, the CryptoNets way.

    ``noise_sigma``: the plan will also see the calibration images plus N(0, σ²) noise,
    clipped to [0, 1] — randomized smoothing's samples (``client certify``). Its scales
    are sized on four noisy copies of every calibration image as well as the clean ones."""
    if scheme not in SCHEMES:
        raise CompileError(f"scheme {scheme!r} is not available yet; choose one of {SCHEMES}")
    if packing not in PACKINGS:
        raise CompileError(f"packing {packing!r} is not available yet; choose one of {PACKINGS}")
    if packing == "single" and n is not None and scale_bits is not None:
        raise CompileError("single packing chooses its own scales; pass n only")
    calibration = np.asarray(calibration, dtype=np.float32)
    if noise_sigma < 0:
        raise CompileError(f"noise_sigma={noise_sigma}: a noise level is ≥ 0")
    calibration = with_noise(calibration, noise_sigma).astype(np.float32)
    layers = plan_layers.from_torch(model, calibration, poly_degree=poly_degree)
    x = calibration.reshape(len(calibration), -1).astype(np.float64)
    max_abs = float(np.abs(x).max())
    for layer in layers:
        x = layer.forward(x)
        max_abs = max(max_abs, float(np.abs(x).max()))
    program = None
    if packing == "single":
        slots.check_shape(layers)
        activations = sum(layer.kind != "affine" for layer in layers)
        params = choose_ckks_single(
            activations, value_bits(max_abs), min_slots=slots.min_slots(layers), n=n
        )
        program = slots.program(layers, params.slots, params.encodes_to_zero())
    else:
        params = None
        if fused and scale_bits is None and _fusable(layers):
            activations = sum(layer.kind != "affine" for layer in layers)
            try:
                params = choose_ckks_single(activations, value_bits(max_abs), min_slots=4096, n=n)
            except CompileError:
                params = None  # one level per layer may still fit (smaller primes)
        if params is None:
            depth = sum(layer.depth for layer in layers)
            params = choose_ckks(depth, value_bits(max_abs), n=n, scale_bits=scale_bits)
    return CkksPlan(
        name=name,
        scheme=scheme,
        packing=packing,
        layers=layers,
        params=params,
        in_shape=tuple(calibration.shape[1:]),
        classes=tuple(classes),
        max_abs_value=max_abs,
        rotations=program.ring_rotations if program else [],
        program=program,
        noise_sigma=float(noise_sigma),
    )


def with_noise(calibration: np.ndarray, sigma: float, copies: int = 4) -> np.ndarray:
    """The clean images, then ``copies`` noisy ones each (seeded: a plan compiles the same
    way twice), clipped to [0, 1] as the certifying client clips them."""
    x = calibration.astype(np.float64)
    if sigma == 0:
        return x
    rng = np.random.default_rng(0)
    noisy = [np.clip(x + sigma * rng.standard_normal(x.shape), 0.0, 1.0) for _ in range(copies)]
    return np.concatenate([x, *noisy])
