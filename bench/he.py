"""``bench he``: encrypted vs plain inference, one result shape for CKKS and BFV.

``run(scheme=...)`` returns ``{"scheme", "model", "data", "packings": {name: row}}`` where
every row has the same core fields (``n_images``, ``e2e_s``, ``eval_s``, upload and
context sizes, plain times, accuracy, agreement, baseline and speedup) and BFV rows add
their exactness fields; ``table(result)`` renders any of them. The runners are
``bench.he_ckks`` (with ``bench.he_single``) and ``bench.he_bfv``.
"""

from __future__ import annotations

from bench import report

SCHEMES = ("ckks", "bfv")


def run(*, scheme: str = "ckks", **options) -> dict:
    from nets.errors import UserError

    if scheme == "ckks":
        from bench import he_ckks

        return he_ckks.run(**options)
    if scheme == "bfv":
        from bench import he_bfv

        return he_bfv.run(**options)
    raise UserError(f"--scheme {scheme}: choose ckks or bfv")


def _baseline_cell(b: dict, per_image: bool) -> str:
    if per_image and b.get("baseline"):
        return f"{b['baseline_e2e_s']:.3g} s e2e"
    if "baseline_eval_images_per_s" in b:
        return f"{b['baseline_eval_images_per_s']:.3g} img/s"
    return b.get("baseline_reason", "-")


HEADER = [
    "packing",
    "images",
    "e2e s",
    "eval s",
    "eval img/s",
    "TenSEAL vector",
    "× vector",
    "TenSEAL tensor",
    "× tensor",
    "× term route",
    "upload KB/img",
    "context MB",
    "plain ms/img",
    "overhead",
    "agreement",
]


def _row(name: str, b: dict) -> list:
    per_image = name == "single"
    plain = b["plain_torch_batch1_s"] if per_image else b["plain_torch_batch1000_per_image_s"]
    return [
        name,
        b["n_images"],
        b["e2e_s"],
        b["eval_s"],
        1 / b["eval_s"] if per_image else b["eval_images_per_s"],
        _baseline_cell(b, per_image),
        b.get("speedup_vs_baseline", "-"),
        f"{b['tensor_baseline_eval_images_per_s']:.3g} img/s"
        if "tensor_baseline_eval_images_per_s" in b
        else "-",
        b.get("speedup_vs_tensor_baseline", "-"),
        b.get("speedup_vs_terms_route", "-"),
        b["upload_bytes_per_image"] / 1000,
        b["public_context_bytes"] / 1e6,
        plain * 1000,
        b["overhead_vs_plain"],
        b["argmax_agreement"],
    ]


def _accuracy_line(result: dict) -> str:
    """BFV: float, post-training and (when fine-tuned) QAT integer accuracy, full test set."""
    acc = result.get("test_accuracy")
    if not acc:
        return ""
    line = (
        f"\ntest accuracy ({acc['n_test']} images): float {acc['float']:.4f}, post-training "
        f"integer {acc['post_training']:.4f}"
    )
    qat_row = result["packings"].get("batch-qat")
    if "qat" in acc and qat_row:
        line += (
            f", quantisation-aware integer {acc['qat']:.4f}; QAT plan: plaintext moduli "
            f"{qat_row['plaintext_moduli']}, worst-case value bits {qat_row['max_value_bits']}"
            f" (post-training {result['packings']['batch']['max_value_bits']}), bit-exact "
            f"{qat_row['bit_exact_rate']:.4f}, eval {qat_row['speedup_vs_post_training_plan']:.2f}"
            "× the post-training plan's speed"
        )
    return line


def _ring_line(name: str, b: dict) -> str:
    """Our own RNS evaluator (issue 23) against the route it replaces, same requests."""
    if "ring_speedup_vs_seal_route" in b:
        return (
            f"\n{name}, server evaluation per image ({b['route_images']} images, medians): "
            f"our kernels {b['ring_eval_s'] * 1000:.1f} ms vs SEAL's evaluator "
            f"{b['seal_route_eval_s'] * 1000:.1f} ms ({b['ring_speedup_vs_seal_route']:.2f}×); "
            f"ours on one thread {b['ring_eval_one_thread_s'] * 1000:.1f} ms (scaling "
            f"{b['ring_thread_scaling']:.2f}× on {b['threads']} threads)"
        )
    if "ring_speedup_vs_gemm" in b:
        return (
            f"\n{name}, ring route {b['ring_eval_s']:.2f} s vs GEMM "
            f"{b.get('gemm_eval_s', b['eval_s']):.2f} s "
            f"({b['ring_speedup_vs_gemm']:.2f}×); one thread {b['ring_eval_one_thread_s']:.2f} "
            f"s (scaling {b['ring_thread_scaling']:.2f}× on {b['threads']} threads); peak "
            f"memory per request {b['ring_peak_over_before_mb']:.0f} MB vs "
            f"{b['gemm_peak_over_before_mb']:.0f} MB"
        )
    if "ring_vs_terms" in b:  # BFV: every route, the same logits
        same = all(r["same_logits"] for r in b["routes"].values())
        times = ", ".join(
            f"{r} {v['eval_s']:.2f} s (peak {v.get('peak_rss_mb', 0):.0f} MB, "
            f"{v.get('peak_over_before_mb', 0):.0f} over the RSS before)"
            for r, v in b["routes"].items()
        )
        return (
            f"\n{name}, server evaluation by route: {times}; ring {b['ring_vs_terms']:.2f}× the "
            f"term route, {b['ring_vs_gemm']:.2f}× GEMM; ring on one thread "
            f"{b['ring_one_thread_eval_s']:.2f} s (scaling {b['ring_thread_scaling']:.2f}×); "
            f"same logits on every route: {same}; ring profile: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in b.get("ring_profile_s", {}).items())
        )
    return ""


def table(result: dict) -> str:
    scheme = result["scheme"]
    first = next(iter(result["packings"].values()))
    exact = (
        f"\nbit-exact rate {first['bit_exact_rate']:.4f} over {first['n_images']} images, "
        f"tables: {first['tables']}, round trips {first['round_trips']}, "
        f"plaintext moduli {first['plaintext_moduli']}"
        if scheme == "bfv"
        else ""
    )
    return (
        f"Encrypted vs plain ({scheme}): {result['model']} on {result['data']}; "
        "baselines: single — the TenSEAL tutorial's im2col + mm way (e2e per image); batch — "
        f"TenSEAL {scheme.upper()}Vector per input value, and "
        f"{'CKKSTensor batch=True, mm per conv window and FC layer' if scheme == 'ckks' else '-'}"
        "; × term route: our evaluator without the GEMM route"
        f"{' (sampled, extrapolated)' if first.get('baseline_extrapolated') else ''}\n\n"
        + report.markdown_table(HEADER, [_row(n, b) for n, b in result["packings"].items()])
        + exact
        + "".join(
            f"\n{name}: plain accuracy {b['plain_accuracy']:.4f}, encrypted "
            f"{b['encrypted_accuracy']:.4f}"
            for name, b in result["packings"].items()
        )
        + _accuracy_line(result)
        + "".join(_ring_line(name, b) for name, b in result["packings"].items())
        + "\nthesis Table 3.1: 0.1 ms plain vs 300 s encrypted per image\n"
    )
