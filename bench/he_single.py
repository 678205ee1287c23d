"""``bench he`` single packing: one image per request, ours vs the TenSEAL tutorial's way.

Baseline (measured in the same run, same model and images): TenSEAL's "Encrypted
Convolution on MNIST" tutorial — ``ts.im2col_encoding`` of the image, ``conv2d_im2col``
per output channel, ``pack_vectors``, ``square_``, ``mm`` + bias, ``square_``, ``mm`` + bias —
with the tutorial's parameters (N = 8192, ``[31, 26×6, 31]``, scale 2^26,
``generate_galois_keys()`` for every step). It needs a conv → x² → linear → x² → linear
model; for any other shape the baseline is reported as absent, with the reason.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import tenseal as ts
import torch
from torch import nn

from bench.common import timed
from crypto_nn.ckks.client import make_keys
from crypto_nn.ckks.single import CkksSingleEvaluator
from crypto_nn.wire import seal_bytes
from nets.layers import Square

TUTORIAL_BITS = [31, 26, 26, 26, 26, 26, 26, 31]


def _tutorial_layers(net: nn.Module):
    """(conv, fc1, fc2) when the model has the tutorial's shape, else None."""
    mods = [m for m in net.modules() if not isinstance(m, (nn.Sequential, nn.Flatten))]
    kinds = [type(m) for m in mods]
    if kinds != [nn.Conv2d, Square, nn.Linear, Square, nn.Linear]:
        return None
    conv = mods[0]
    if conv.in_channels != 1 or conv.kernel_size[0] != conv.kernel_size[1]:
        return None
    return conv, mods[2], mods[4]


def tutorial_baseline(net: nn.Module, images: np.ndarray) -> dict:
    """Per-image times of the TenSEAL tutorial's way (keygen once)."""
    layers = _tutorial_layers(net)
    if layers is None:
        return {"baseline": None, "baseline_reason": "model is not conv → x² → fc → x² → fc"}
    conv, fc1, fc2 = layers
    k, stride, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    kernels = conv.weight.data.view(conv.out_channels, k, k).tolist()
    conv_bias = conv.bias.data.tolist()
    w1, b1 = fc1.weight.T.data.tolist(), fc1.bias.data.tolist()
    w2, b2 = fc2.weight.T.data.tolist(), fc2.bias.data.tolist()

    def keygen():
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=TUTORIAL_BITS)
        ctx.global_scale = 2.0**26
        ctx.generate_galois_keys()
        return ctx

    ctx, keygen_s = timed(keygen)
    public = ctx.copy()
    public.make_context_public()
    public_bytes = len(public.serialize())
    try:
        rows = _tutorial_rows(ctx, images, k, stride, pad, kernels, conv_bias, w1, b1, w2, b2)
    except (ValueError, RuntimeError) as exc:  # e.g. the im2col layout outgrows one ciphertext
        return {"baseline": None, "baseline_reason": f"the tutorial's way fails here: {exc}"}
    return {
        "baseline": "TenSEAL tutorial (im2col_encoding + conv2d_im2col + mm)",
        "baseline_keygen_s": keygen_s,
        "baseline_encrypt_s": statistics.median(r[0] for r in rows),
        "baseline_eval_s": statistics.median(r[1] for r in rows),
        "baseline_decrypt_s": statistics.median(r[2] for r in rows),
        "baseline_e2e_s": statistics.median(r[0] + r[1] + r[2] for r in rows),
        "baseline_public_context_bytes": public_bytes,
        "baseline_logits": np.stack([r[3] for r in rows]),
    }


def _tutorial_rows(ctx, images, k, stride, pad, kernels, conv_bias, w1, b1, w2, b2) -> list:
    rows = []
    for image in images:
        img = torch.from_numpy(image[0]).double()
        img = nn.functional.pad(img, (pad, pad, pad, pad)) if pad else img
        t0 = time.perf_counter()
        enc, windows = ts.im2col_encoding(ctx, img.tolist(), k, k, stride)
        t1 = time.perf_counter()
        channels = [
            enc.conv2d_im2col(kern, windows) + b for kern, b in zip(kernels, conv_bias, strict=True)
        ]
        x = ts.CKKSVector.pack_vectors(channels)
        x.square_()
        x = x.mm(w1) + b1
        x.square_()
        x = x.mm(w2) + b2
        t2 = time.perf_counter()
        logits = np.asarray(x.decrypt())
        t3 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2, logits))
    return rows


def run_single(plan, images: np.ndarray) -> dict:
    """Our single packing over ``images``: medians per image; keygen once."""
    (keys, public), keygen_s = timed(lambda: make_keys(plan))
    evaluator, setup_s = timed(lambda: CkksSingleEvaluator(plan, public))
    rows, logits = [], []
    for image in images:
        cts, enc_s = timed(lambda image=image: keys.encrypt_single(image))
        out, eval_s = timed(lambda cts=cts: evaluator.run(cts))
        lg, dec_s = timed(lambda out=out: keys.decrypt_single(out))
        rows.append((enc_s, eval_s, dec_s))
        logits.append(lg)
    return {
        "keygen_s": keygen_s,
        "server_setup_s": setup_s,
        "encrypt_s": statistics.median(r[0] for r in rows),
        "eval_s": statistics.median(r[1] for r in rows),
        "decrypt_s": statistics.median(r[2] for r in rows),
        "e2e_s": statistics.median(sum(r) for r in rows),
        "e2e_note": "per image: encrypt + serialise + server eval (load, run, save) + decrypt; "
        "keygen once per client (keygen_s)",
        "public_context_bytes": len(public),
        "rotation_steps": list(plan.rotations),
        "upload_bytes_per_image": sum(map(len, keys.encrypt_single(images[0]))),
        "download_bytes_per_image": len(
            seal_bytes.dumps(
                evaluator.evaluate(evaluator.load_inputs(keys.encrypt_single(images[0])))
            )
        ),
        "logits": np.stack(logits),
        **route_comparison(plan, public, [keys.encrypt_single(i) for i in images[:10]]),
    }


def route_comparison(plan, public: bytes, requests: list[list[bytes]]) -> dict:
    """Server evaluation per image on our kernels (the default, "ring": hoisted baby steps,
    parallel key switching) against SEAL's evaluator ("seal", today's before issue 23) on the
    same requests, medians; the ring route also on one numba thread (SEAL's is one)."""
    import numba

    ring = CkksSingleEvaluator(plan, public, route="ring")
    seal_route = CkksSingleEvaluator(plan, public, route="seal")
    ring.run(requests[0])  # key tables and weight residues: once per server

    def median_s(evaluator) -> float:
        return statistics.median(timed(lambda r=r: evaluator.run(r))[1] for r in requests)

    ring_s, seal_s = median_s(ring), median_s(seal_route)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        ring_1_s = median_s(ring)
    finally:
        numba.set_num_threads(threads)
    return {
        "route_images": len(requests),
        "ring_eval_s": ring_s,
        "seal_route_eval_s": seal_s,
        "ring_eval_one_thread_s": ring_1_s,
        "threads": threads,
        "ring_speedup_vs_seal_route": seal_s / ring_s,
        "ring_thread_scaling": ring_1_s / ring_s,
    }
