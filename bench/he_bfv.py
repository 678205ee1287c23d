"""``bench he --scheme bfv``: the integer network exact under BFV vs plain, time and accuracy.

The model is quantised with x² kept exact (``integer_nn``, 4 bits by default: what int64
holds in the worst case for two squares), compiled to a BFV batch plan with as many
batching primes as the logits' worst-case range needs, and checked bit for bit against
``IntModel.forward``. Baseline, in the same run: the straightforward TenSEAL way of the same
plan under one plaintext modulus — one ``BFVVector`` per input value, ``Σ x_i·w_ij + b_j``
and ``x * x`` with TenSEAL's own relinearisation — sampled and extrapolated per layer with
``--quick``, then multiplied by the number of moduli the exact plan needs.
"""

from __future__ import annotations

import time

import numpy as np
import tenseal as ts

from bench.he import _model, _timed, plain_timings
from crypto_nn.bfv import BfvClient, BfvEvaluator, IntSquareLayer, compile_bfv
from integer_nn import quantize
from nets import data
from nets.runinfo import run_info


def _baseline_eval_s(plan, x_int: np.ndarray, outputs_per_layer: int | None) -> tuple[float, bool]:
    t = plan.params.plain_moduli[0]
    ctx = ts.context(
        ts.SCHEME_TYPE.BFV, poly_modulus_degree=plan.params.poly_modulus_degree, plain_modulus=t
    )
    xs = [ts.bfv_vector(ctx, col.tolist()) for col in x_int.reshape(len(x_int), -1).T]
    total, extrapolated = 0.0, False
    for layer in plan.layers:
        t0 = time.perf_counter()
        if isinstance(layer, IntSquareLayer):
            xs = [x * x for x in xs]
            total += time.perf_counter() - t0
            continue
        rows = list(zip(layer.weight, layer.bias, strict=True))
        k = len(rows) if outputs_per_layer is None else min(outputs_per_layer, len(rows))
        outs = []
        for row, b in rows[:k]:
            acc = None
            for i in np.flatnonzero(row):
                term = xs[i] * (int(row[i]) % t)
                acc = term if acc is None else acc + term
            outs.append((acc if acc is not None else xs[0] * 0) + int(b) % t)
        total += (time.perf_counter() - t0) * len(rows) / k
        extrapolated |= k < len(rows)
        xs = outs + [outs[-1]] * (len(rows) - k)
    return total * len(plan.params.plain_moduli), extrapolated


def run(
    *,
    model_name: str,
    data_name: str,
    checkpoint: str | None,
    n_images: int,
    quick: bool,
    seed: int,
    epochs: int,
    bits: int = 4,
) -> dict:
    net, model_name, model_info = _model(model_name, data_name, checkpoint, seed, epochs)
    calib = data.load(data_name, "train").subset(2000).images
    test = data.load(data_name, "test").subset(n_images)
    int_model = quantize(net, calib, weight_bits=bits, act_bits=bits, square="exact")
    plan, compile_s = _timed(lambda: compile_bfv(int_model))
    slots = plan.params.poly_modulus_degree
    x = int_model.quantize_input(test.images[:slots])
    client, keygen_s = _timed(lambda: BfvClient(plan))
    public, ctx_s = _timed(client.public_context)
    cts, encrypt_s = _timed(lambda: client.encrypt_batch(x))
    evaluator = BfvEvaluator(plan, public)
    outs, eval_s = _timed(lambda: evaluator.run_bytes(cts))
    logits, decrypt_s = _timed(lambda: client.decrypt_batch(outs, len(x)))
    reference = int_model.forward(x)
    n = len(x)
    exact = (logits == reference.astype(object)).all(axis=1)
    enc_pred = np.array(logits.argmax(1), dtype=np.int64)
    plain = plain_timings(net, test.images[:n])
    plain_pred = plain.pop("plain_pred")
    baseline_s, extrapolated = _baseline_eval_s(plan, x, 8 if quick else None)
    e2e_s = keygen_s + ctx_s + encrypt_s + eval_s + decrypt_s
    batch = {
        "n_images": n,
        "slots": slots,
        "plaintext_moduli": list(plan.params.plain_moduli),
        "round_trips": 0,
        "bit_exact_rate": float(exact.mean()),
        "keygen_s": keygen_s + ctx_s,
        "encrypt_s": encrypt_s,
        "eval_s": eval_s,
        "decrypt_s": decrypt_s,
        "e2e_s": e2e_s,
        "e2e_per_image_s": e2e_s / n,
        "eval_images_per_s": n / eval_s,
        "eval_images_per_s_full_batch": slots / eval_s,
        "baseline_eval_s": baseline_s,
        "baseline_extrapolated": extrapolated,
        "baseline_eval_images_per_s": n / baseline_s,
        "speedup_vs_baseline": baseline_s / eval_s,
        "public_context_bytes": len(public),
        "upload_bytes_per_image": sum(len(c) for per_t in cts for c in per_t) / n,
        **plain,
        "overhead_vs_plain": (e2e_s / n) / plain["plain_torch_batch1000_per_image_s"],
        "plain_accuracy": float((plain_pred == test.labels[:n]).mean()),
        "int_accuracy": float((reference.argmax(1) == test.labels[:n]).mean()),
        "encrypted_accuracy": float((enc_pred == test.labels[:n]).mean()),
        "argmax_agreement": float((enc_pred == plain_pred).mean()),
    }
    return {
        "benchmark": "he",
        "scheme": "bfv",
        "model": model_name,
        "data": data_name,
        "bits": bits,
        "model_info": model_info,
        "plan": plan.describe(),
        "compile_s": compile_s,
        "packings": {"batch": batch},
        "quick": quick,
        "run": run_info(seed=seed, device="cpu"),
    }
