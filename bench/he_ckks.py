"""``bench he``: the same model plain (torch), and encrypted with CKKS, time and accuracy.

Reproduces thesis Table 3.1 (0.1 ms plain vs 300 s encrypted per image) on this machine.
Baseline, measured in the same run: the straightforward TenSEAL way of the same batch
plan — one ``CKKSVector`` per input value, ``Σ x_i·w_ij + b_j`` with TenSEAL's automatic
rescaling after every product, ``square()`` for x². Its cost per output is uniform
within a layer, so with ``--quick`` it runs ``baseline_outputs`` outputs of each layer and
scales by the layer's width (``baseline_extrapolated`` says so in the JSON).
"""

from __future__ import annotations

import time

import numpy as np
import tenseal as ts
import torch

from bench import he_single
from bench.common import peak_rss, plain_timings, timed, trained_model
from crypto_nn import rns
from crypto_nn.ckks import compile as plan_mod
from crypto_nn.ckks.batch import CkksBatchEvaluator
from crypto_nn.ckks.client import make_keys
from crypto_nn.ckks.layers import Affine, Poly, Square
from crypto_nn.ckks.params import choose_ckks, value_bits
from crypto_nn.wire import residues
from nets import data
from nets.runinfo import run_info


def _tenseal_context(plan) -> ts.Context:
    """The baselines' TenSEAL context. TenSEAL rescales after every product, one level per
    layer, so it gets the one-level-per-layer parameters, not a fused plan's chain."""
    params = choose_ckks(plan.depth, value_bits(plan.max_abs_value))
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    ctx.global_scale = params.scale
    return ctx


def _baseline_eval_s(plan, images: np.ndarray, outputs_per_layer: int | None) -> tuple[float, bool]:
    """Seconds for the TenSEAL-vector way of the whole plan (extrapolated when sampling)."""
    ctx = _tenseal_context(plan)
    xs = [ts.ckks_vector(ctx, row.tolist()) for row in images.reshape(len(images), -1).T]
    total, extrapolated = 0.0, False
    for layer in plan.layers:
        t0 = time.perf_counter()
        if isinstance(layer, Affine):
            rows = layer.rows()
            k = len(rows) if outputs_per_layer is None else min(outputs_per_layer, len(rows))
            outs = []
            for (idx, weights), bias in list(zip(rows, layer.bias, strict=True))[:k]:
                acc = None
                for i, w in zip(idx, weights, strict=True):
                    term = xs[i] * float(w)
                    acc = term if acc is None else acc + term
                outs.append(acc + float(bias))
            elapsed = time.perf_counter() - t0
            total += elapsed * len(rows) / k
            extrapolated |= k < len(rows)
            xs = outs + [outs[-1]] * (len(rows) - k)  # stand-ins keep the next layer's shape
        elif isinstance(layer, Square):
            xs = [x.square() for x in xs]
            total += time.perf_counter() - t0
        elif isinstance(layer, Poly):
            xs = [x.polyval(layer.coeffs) for x in xs]
            total += time.perf_counter() - t0
    return total, extrapolated


def _tensor_baseline_eval_s(net, plan, images: np.ndarray) -> dict:
    """TenSEAL's strongest batch way, as its user would write it: ``ckks_tensor(...,
    batch=True)`` (one image per slot, the CryptoNets layout), the first layer as ``mm``
    over the conv windows (im2col at the client, which then uploads one ciphertext per
    window entry), every FC layer one ``mm``, ``square_`` between them — on TenSEAL's own
    thread pool (its default: all cores). Models of the shape conv → x² → fc → x² → fc."""
    from bench.he_single import _tutorial_layers

    layers = _tutorial_layers(net)
    if layers is None:
        return {"tensor_baseline_reason": "model is not conv → x² → fc → x² → fc"}
    conv, fc1, fc2 = layers
    k, stride, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    ctx = _tenseal_context(plan)
    with torch.no_grad():
        x = torch.nn.functional.pad(torch.from_numpy(images).double(), (pad,) * 4)
        windows = torch.nn.functional.unfold(x, k, stride=stride)  # (B, k², L)
        n_windows = windows.shape[2]
        wc = conv.weight.double().reshape(conv.out_channels, k * k).T  # (k², C)
        bc = conv.bias.double().repeat(n_windows, 1)  # (L, C)
        # the client's layout is (L, C): fc1 reads feature c·L + l, so its rows follow
        order = torch.arange(conv.out_channels * n_windows).reshape(conv.out_channels, n_windows)
        w1 = fc1.weight.double()[:, order.T.reshape(-1)].T  # (L·C, 64)
        w2 = fc2.weight.double().T
    t0 = time.perf_counter()
    enc = ts.ckks_tensor(ctx, windows.permute(0, 2, 1).numpy().tolist(), batch=True)
    encrypt_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    y = enc.mm(wc.tolist()) + bc.tolist()
    y.square_()
    y = y.reshape([1, n_windows * conv.out_channels])
    y = y.mm(w1.tolist()) + fc1.bias.double().tolist()
    y.square_()
    y = y.mm(w2.tolist()) + fc2.bias.double().tolist()
    eval_s = time.perf_counter() - t0
    logits = np.asarray(y.decrypt().tolist()).reshape(len(images), -1)  # batch first
    return {
        "tensor_baseline": "TenSEAL CKKSTensor batch=True, mm per conv window and FC layer",
        "tensor_baseline_eval_s": eval_s,
        "tensor_baseline_encrypt_s": encrypt_s,
        "tensor_baseline_upload_ciphertexts": n_windows * k * k,
        "tensor_baseline_logits": logits,
    }


def run(
    *,
    model_name: str,
    data_name: str,
    checkpoint: str | None,
    n_images: int,
    quick: bool,
    seed: int,
    epochs: int,
    packings: tuple[str, ...] = ("single", "batch"),
    options: dict | None = None,
) -> dict:
    net, model_name, model_info = trained_model(
        model_name, data_name, checkpoint, seed, epochs, options
    )
    calib = data.load(data_name, "train").subset(2000).images
    test = data.load(data_name, "test").subset(n_images)
    result = {
        "benchmark": "he",
        "scheme": "ckks",
        "model": model_name,
        "data": data_name,
        "model_info": {**model_info, "options": options or {}},
        "plans": {},
        "compile_s": {},
        "packings": {},
        "quick": quick,
        "run": run_info(seed=seed, device="cpu"),
    }
    for packing in packings:
        plan, compile_s = timed(
            lambda packing=packing: plan_mod.compile(
                net, calib, packing=packing, name=model_name, classes=test.classes
            )
        )
        result["plans"][packing] = plan.describe()
        result["compile_s"][packing] = compile_s
        bench = _single if packing == "single" else _batch
        result["packings"][packing] = bench(net, plan, test, quick)
    return result


def _accuracy(logits: np.ndarray, plain_pred: np.ndarray, labels: np.ndarray, plan, images):
    enc_pred = logits.argmax(1)
    return {
        "plain_accuracy": float((plain_pred == labels).mean()),
        "encrypted_accuracy": float((enc_pred == labels).mean()),
        "argmax_agreement": float((enc_pred == plain_pred).mean()),
        "max_abs_logit_error": float(np.abs(logits - plan.forward_plain(images)).max()),
    }


def _single(net, plan, test, quick: bool) -> dict:
    """Every test image through our single packing; the tutorial's way on a sample."""
    n = min(len(test.images), 50 if quick else len(test.images))
    images, labels = test.images[:n], test.labels[:n]
    ours = he_single.run_single(plan, images)
    logits = ours.pop("logits")
    base = he_single.tutorial_baseline(net, images[: 3 if quick else 20])
    base_logits = base.pop("baseline_logits", None)
    plain = plain_timings(net, images)
    plain_pred = plain.pop("plain_pred")
    out = {"n_images": n, **ours, **base, **plain}
    out.update(_accuracy(logits, plain_pred, labels, plan, images))
    out["overhead_vs_plain"] = ours["e2e_s"] / plain["plain_torch_batch1_s"]
    if base_logits is not None:
        out["baseline_n_images"] = len(base_logits)
        out["baseline_argmax_agreement"] = float(
            (base_logits.argmax(1) == plain_pred[: len(base_logits)]).mean()
        )
        out["speedup_vs_baseline"] = base["baseline_e2e_s"] / ours["e2e_s"]
        out["eval_speedup_vs_baseline"] = base["baseline_eval_s"] / ours["eval_s"]
    return out


def _ring_route(plan, public: bytes, cts: list[bytes], gemm_bytes: list[bytes], gemm_s: float):
    """Our own RNS evaluator (issue 23) beside the GEMM route on the same ciphertexts: its
    time on every core and on one (numba's threads), the GEMM route's on one, and whether
    its result bytes are the GEMM route's (they must be: both are SEAL's arithmetic)."""
    import numba

    ring = CkksBatchEvaluator(plan, public, route="ring")
    if not ring._ring_supported():
        return {"ring_route": "not supported for this plan"}
    gemm = CkksBatchEvaluator(plan, public, route="gemm")
    ring.run(cts)  # buffers and key tables, once per server
    ring_bytes, ring_s = timed(lambda: ring.run(cts))
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        _, ring_1_s = timed(lambda: ring.run(cts))
        _, gemm_1_s = timed(lambda: gemm.run(cts))
    finally:
        numba.set_num_threads(threads)
    # each route's peak memory in a request, both warm (what a worker holds on top of idle)
    _, gemm_peak, gemm_before = peak_rss(lambda: gemm.run(cts))
    _, ring_peak, ring_before = peak_rss(lambda: ring.run(cts))
    return {
        "ring_eval_s": ring_s,
        "ring_eval_one_thread_s": ring_1_s,
        "gemm_eval_one_thread_s": gemm_1_s,
        "threads": threads,
        "ring_thread_scaling": ring_1_s / ring_s,
        "gemm_thread_scaling": gemm_1_s / gemm_s,
        "ring_speedup_vs_gemm": gemm_s / ring_s,
        "gemm_peak_rss_mb": gemm_peak / 2**20,
        "gemm_peak_over_before_mb": (gemm_peak - gemm_before) / 2**20,
        "ring_peak_rss_mb": ring_peak / 2**20,
        "ring_peak_over_before_mb": (ring_peak - ring_before) / 2**20,
        "ring_route_same_ciphertexts": all(  # residues, level and scale (not compression)
            residues.parse(a)[0] == residues.parse(b)[0]
            and np.array_equal(residues.parse(a)[1], residues.parse(b)[1])
            for a, b in zip(ring_bytes, gemm_bytes, strict=True)
        ),
    }


def _batch(net, plan, test, quick: bool) -> dict:
    images = test.images[: plan.params.slots]
    (keys, public), keygen_s = timed(lambda: make_keys(plan))
    cts, encrypt_s = timed(lambda: keys.encrypt_batch(images))
    # the server's whole step, bytes in → bytes out (parse or load, layers, serialise);
    # the first call also allocates its buffers and key tables: a server pays that once
    evaluator = CkksBatchEvaluator(plan, public)  # the default route (ring where it applies)
    rns.warm_up()
    _, first_eval_s = timed(lambda: evaluator.run(cts))
    out_bytes, eval_s = timed(lambda: evaluator.run(cts))
    gemm = CkksBatchEvaluator(plan, public, route="gemm")
    gemm.run(cts)
    gemm_bytes, gemm_s = timed(lambda: gemm.run(cts))
    ring_row = _ring_route(plan, public, cts, gemm_bytes, gemm_s)
    terms = CkksBatchEvaluator(plan, public, route="terms")  # the evaluator before the GEMM route
    terms_bytes, terms_eval_s = timed(lambda: terms.run(cts))
    inputs, load_s = timed(lambda: terms.load_inputs(cts))  # SEAL's own parse, for reference
    del inputs
    logits, decrypt_s = timed(lambda: keys.decrypt_batch(out_bytes, len(images)))
    same = all(
        residues.parse(a)[1].tobytes() == residues.parse(b)[1].tobytes()
        for a, b in zip(out_bytes, terms_bytes, strict=True)
    )
    e2e_s = keygen_s + encrypt_s + eval_s + decrypt_s

    plain = plain_timings(net, images)
    plain_pred = plain.pop("plain_pred")
    baseline_s, extrapolated = _baseline_eval_s(plan, images, 8 if quick else None)
    tensor = _tensor_baseline_eval_s(net, plan, images)
    n = len(images)
    if "tensor_baseline_eval_s" in tensor:
        tensor_logits = tensor.pop("tensor_baseline_logits")
        tensor["tensor_baseline_eval_images_per_s"] = n / tensor["tensor_baseline_eval_s"]
        tensor["tensor_baseline_argmax_agreement"] = float(
            (tensor_logits.argmax(1) == plain_pred).mean()
        )
        tensor["speedup_vs_tensor_baseline"] = tensor["tensor_baseline_eval_s"] / eval_s
    return {
        "n_images": n,
        "slots": plan.params.slots,
        "keygen_s": keygen_s,
        "encrypt_s": encrypt_s,
        "eval_s": eval_s,
        "first_eval_s": first_eval_s,
        "seal_load_s": load_s,
        "gemm_eval_s": gemm_s,
        **ring_row,
        "terms_eval_s": terms_eval_s,
        "terms_route_same_ciphertexts": same,
        "speedup_vs_terms_route": terms_eval_s / eval_s,
        "decrypt_s": decrypt_s,
        "e2e_s": e2e_s,
        "e2e_per_image_s": e2e_s / n,
        "eval_images_per_s": n / eval_s,
        "eval_images_per_s_full_batch": plan.params.slots / eval_s,  # eval time is per batch
        "baseline_eval_s": baseline_s,
        "baseline_extrapolated": extrapolated,
        "baseline_eval_images_per_s": n / baseline_s,
        "speedup_vs_baseline": baseline_s / eval_s,
        **tensor,
        "public_context_bytes": len(public),
        "upload_bytes_per_image": sum(map(len, cts)) / n,
        "upload_bytes_per_image_full_batch": sum(map(len, cts)) / plan.params.slots,
        **plain,
        "overhead_vs_plain": (e2e_s / n) / plain["plain_torch_batch1000_per_image_s"],
        **_accuracy(logits, plain_pred, test.labels[:n], plan, images),
    }
