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

import dataclasses
import time

import numba
import numpy as np
import tenseal as ts

import crypto_nn
from bench.common import peak_rss, plain_timings, timed, trained_model
from crypto_nn import rns
from crypto_nn.bfv.batch import SegmentEvaluators
from crypto_nn.bfv.client import BfvSingleClient
from crypto_nn.bfv.compile import compile_bfv, compile_bfv_single, compile_client_aided
from crypto_nn.bfv.layers import IntSquareLayer
from crypto_nn.bfv.single import BfvSingleEvaluator
from integer_nn import qat, quantize
from nets import data
from nets.errors import UserError
from nets.runinfo import run_info
from nets.train import TrainConfig, predict


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


def _run_plan(plan, x):
    """Any BFV batch plan — polynomial, tables as polynomials, or client-aided — through
    its roles: the Client from the plan's JSON alone, one ``send`` per segment."""
    client, keygen_s = timed(lambda: crypto_nn.client_for(plan.describe()))
    public, ctx_s = timed(client.public_context)
    server = plan.evaluator(public)
    times = {"encrypt_s": 0.0, "server_s": 0.0, "decrypt_s": 0.0, "clear_s": 0.0}
    upload = 0

    def send(segment, cts):
        nonlocal upload
        upload += sum(map(len, cts))
        return server.run(cts, segment=segment)

    rns.warm_up()
    logits = client.infer_int(x, send, timings=times)
    # the same protocol through the other routes: the same logits, their server times
    routes: dict[str, dict] = {}
    for route in ("terms", "gemm", "ring-at-once", "ring"):  # at once: relinearised per x²
        name = route.split("-")[0]
        other = SegmentEvaluators(plan, public, route=name, lazy=route == "ring")
        other_times: dict[str, float] = {}
        peaks: list[tuple[float, float]] = []  # (over the RSS before, the absolute peak)

        def measured(k, cts, evaluator=other, peaks=peaks):  # the server's step alone
            out, peak, before = peak_rss(lambda: evaluator.run(cts, segment=k))
            peaks.append(((peak - before) / 2**20, peak / 2**20))
            return out

        got = client.infer_int(x, measured, timings=other_times)
        if route == "ring":  # where the ring route's time goes, per step kind
            profile = other.ring_profile()
        routes[route] = {
            "eval_s": other_times["server_s"],
            # "over before" depends on what the allocator kept from earlier requests (numba's
            # threads keep their arenas); the process's absolute high-water mark does not
            "peak_over_before_mb": max(p[0] for p in peaks),
            "peak_rss_mb": max(p[1] for p in peaks),
            "same_logits": got.tolist() == logits.tolist(),
        }
    numba.set_num_threads(1)  # the ring route's thread scaling, in the same run
    try:
        one = SegmentEvaluators(plan, public, route="ring")
        one_times: dict[str, float] = {}
        client.infer_int(x, one.run_segment, timings=one_times)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    ring_s, gemm_s, terms_s = (routes[r]["eval_s"] for r in ("ring", "gemm", "terms"))
    return logits, {
        "routes": routes,
        "terms_eval_s": terms_s,
        "speedup_vs_terms_route": terms_s / times["server_s"],
        "terms_route_same_logits": routes["terms"]["same_logits"],
        "ring_vs_gemm": gemm_s / ring_s,
        "ring_vs_terms": terms_s / ring_s,
        "ring_one_thread_eval_s": one_times["server_s"],
        "ring_profile_s": profile,
        "ring_thread_scaling": one_times["server_s"] / ring_s,
        "keygen_s": keygen_s + ctx_s,
        "encrypt_s": times["encrypt_s"],
        "eval_s": times["server_s"],
        "decrypt_s": times["decrypt_s"],
        "client_ops_s": times["clear_s"],
        "client_s": times["encrypt_s"] + times["decrypt_s"] + times["clear_s"],
        "public_context_bytes": len(public),
        "upload_bytes_per_image": upload / len(x),
        "plaintext_moduli": [list(s.params.plain_moduli) for s in plan.segments]
        if plan.segment_count > 1
        else list(plan.params.plain_moduli),
        "round_trips": len(plan.client_ops),
        "poly_modulus_degree": [s.params.poly_modulus_degree for s in plan.segments]
        if plan.segment_count > 1
        else plan.params.poly_modulus_degree,
    }


def _single(int_model, x, reference, plain, labels, plain_pred) -> dict:
    """BFV single packing over a few images: medians per image, keygen once."""
    plan, compile_s = timed(lambda: compile_bfv_single(int_model))
    client, keygen_s = timed(lambda: BfvSingleClient(plan))
    public, ctx_s = timed(client.public_context)
    evaluator = BfvSingleEvaluator(plan, public)
    rows, exact, preds = [], [], []
    for image, expected in zip(x, reference, strict=False):
        cts, enc_s = timed(lambda image=image: client.encrypt_single(image))
        out, eval_s = timed(lambda cts=cts: evaluator.run_primes(cts))
        got, dec_s = timed(lambda out=out: client.decrypt_single(out))
        rows.append((enc_s, eval_s, dec_s))
        exact.append(got.tolist() == expected.tolist())
        preds.append(int(np.argmax(got)))
    med = [float(np.median([r[i] for r in rows])) for i in range(3)]
    return {
        "n_images": len(x),
        "compile_s": compile_s,
        "keygen_s": keygen_s + ctx_s,
        "encrypt_s": med[0],
        "eval_s": med[1],
        "decrypt_s": med[2],
        "e2e_s": sum(med),
        "bit_exact_rate": float(np.mean(exact)),
        "plaintext_moduli": list(plan.params.plain_moduli),
        "poly_modulus_degree": plan.params.poly_modulus_degree,
        "rotation_steps": plan.rotations,
        "round_trips": 0,
        "tables": "none",
        "public_context_bytes": len(public),
        "upload_bytes_per_image": sum(len(c) for per_t in cts for c in per_t),
        "plain_torch_batch1_s": plain["plain_torch_batch1_s"],
        "plain_torch_batch1000_per_image_s": plain["plain_torch_batch1000_per_image_s"],
        "overhead_vs_plain": sum(med) / plain["plain_torch_batch1_s"],
        "argmax_agreement": float(np.mean(np.array(preds) == plain_pred[: len(x)])),
        "plain_accuracy": float(np.mean(plain_pred[: len(x)] == labels[: len(x)])),
        "encrypted_accuracy": float(np.mean(np.array(preds) == labels[: len(x)])),
        "baseline": None,
        "baseline_reason": "TenSEAL has no single-image BFV network path",
    }


def _batch_row(plan, int_model, net, test, tables: str) -> dict:
    """One batch plan over as many test images as it has slots: timings, exactness, accuracy."""
    slots = plan.segments[0].params.poly_modulus_degree
    x = int_model.quantize_input(test.images[:slots])
    logits, timings = _run_plan(plan, x)
    reference = int_model.forward(x)
    n = len(x)
    exact = (logits == reference.astype(object)).all(axis=1)
    enc_pred = np.array(logits.argmax(1), dtype=np.int64)
    plain = plain_timings(net, test.images[:n])
    plain_pred = plain.pop("plain_pred")
    e2e_s = timings["keygen_s"] + timings["encrypt_s"] + timings["eval_s"] + timings["decrypt_s"]
    e2e_s += timings["client_ops_s"]
    return {
        "n_images": n,
        "slots": slots,
        "tables": tables,
        "bit_exact_rate": float(exact.mean()),
        **timings,
        "e2e_s": e2e_s,
        "e2e_per_image_s": e2e_s / n,
        "eval_images_per_s": n / timings["eval_s"],
        "eval_images_per_s_full_batch": slots / timings["eval_s"],
        **plain,
        "overhead_vs_plain": (e2e_s / n) / plain["plain_torch_batch1000_per_image_s"],
        "plain_accuracy": float((plain_pred == test.labels[:n]).mean()),
        "int_accuracy": float((reference.argmax(1) == test.labels[:n]).mean()),
        "encrypted_accuracy": float((enc_pred == test.labels[:n]).mean()),
        "argmax_agreement": float((enc_pred == plain_pred).mean()),
        "argmax_agreement_with_int_model": float((enc_pred == reference.argmax(1)).mean()),
        "max_accumulator_bits": int_model.max_accumulator_bits,
        "max_value_bits": int_model.max_value_bits,
        "_x": x,
        "_reference": reference,
        "_plain": plain,
        "_plain_pred": plain_pred,
    }


def _compile(int_model, tables: str):
    if tables == "client":
        return timed(lambda: compile_client_aided(int_model))
    mode = "poly" if tables == "poly" else "refuse"
    return timed(lambda: compile_bfv(int_model, tables=mode))


def _test_accuracy(int_model, test) -> float:
    return float((int_model.predict(test.images) == test.labels).mean())


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
    tables: str = "none",
    options: dict | None = None,
    qat_epochs: int = 0,
    acc_bits: int | None = None,
    input_bits: int | None = None,
) -> dict:
    """``tables``: none (x² models, exact polynomials), poly (tables as polynomials over
    Z_t) or client (client-aided tables: one round trip per cut). With ``qat_epochs``, the
    model is also fine-tuned with quantisation in the loop (``acc_bits``: its accumulator
    budget) and that IntModel's plan runs on the same images: float, post-training and QAT
    accuracy side by side, and the two plans' speeds in one run."""
    net, model_name, model_info = trained_model(
        model_name, data_name, checkpoint, seed, epochs, options
    )
    model_info = {**model_info, "options": options or {}}
    train_set = data.load(data_name, "train")
    calib = train_set.subset(2000).images
    test = data.load(data_name, "test").subset(n_images)
    square = "exact" if tables == "none" else "table"
    int_model = quantize(net, calib, weight_bits=bits, act_bits=bits, square=square)
    plan, compile_s = _compile(int_model, tables)
    batch = _batch_row(plan, int_model, net, test, tables)
    x, reference = batch.pop("_x"), batch.pop("_reference")
    plain, plain_pred = batch.pop("_plain"), batch.pop("_plain_pred")
    n = len(x)
    if tables == "none":  # the TenSEAL-vector way exists only for polynomial networks
        baseline_s, extrapolated = _baseline_eval_s(plan, x, 8 if quick else None)
        batch.update(
            baseline_eval_s=baseline_s,
            baseline_extrapolated=extrapolated,
            baseline_eval_images_per_s=n / baseline_s,
            speedup_vs_baseline=baseline_s / batch["eval_s"],
        )
    else:
        batch.update(baseline=None, baseline_reason="TenSEAL's BFV vectors have no lookup tables")
    packings = {"batch": batch}
    accuracy = {
        "float": float((predict(net, test.images) == test.labels).mean()),
        "post_training": _test_accuracy(int_model, test),
    }
    qat_info = None
    if qat_epochs < 0:
        raise UserError(f"--qat-epochs {qat_epochs}: give 0 (none) or more epochs")
    if qat_epochs:
        if tables != "none" and tables != "client":
            raise UserError(
                "--qat-epochs trains x² exact or tables run client-aided: --tables none or client"
            )
        config = qat.QATConfig(
            weight_bits=bits, act_bits=bits, input_bits=input_bits, acc_bits=acc_bits
        )
        qat_model, qat_info = qat.fine_tune(
            net, train_set, calib, config, TrainConfig(epochs=qat_epochs, lr=1e-3, seed=seed)
        )
        qat_plan, qat_compile_s = _compile(qat_model, tables)
        row = _batch_row(qat_plan, qat_model, net, test, tables)
        for key in ("_x", "_reference", "_plain", "_plain_pred"):
            row.pop(key)
        row.update(
            compile_s=qat_compile_s,
            speedup_vs_post_training_plan=batch["eval_s"] / row["eval_s"],
            plan=qat_plan.describe(),
        )
        packings["batch-qat"] = row
        accuracy["qat"] = _test_accuracy(qat_model, test)
        qat_info = {**qat_info, "config": dataclasses.asdict(config)}
    if tables == "none":  # single packing: one image per request, exact too
        k = 3 if quick else 20
        packings["single"] = _single(
            int_model, x[:k], reference, plain, test.labels[:k], plain_pred
        )
    return {
        "benchmark": "he",
        "scheme": "bfv",
        "model": model_name,
        "data": data_name,
        "bits": bits,
        "tables": tables,
        "model_info": model_info,
        "plan": plan.describe(),
        "compile_s": compile_s,
        "test_accuracy": {**accuracy, "n_test": len(test)},
        "qat": qat_info,
        "packings": packings,
        "quick": quick,
        "run": run_info(seed=seed, device="cpu"),
    }
