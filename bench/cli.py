"""``python -m bench``: each benchmark prints its table and writes JSON + markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench import report
from nets.cli_util import make_app

app = make_app("Benchmarks: ratios measured in one run against a named baseline.")
console = Console()


@app.callback()
def main() -> None:
    """Benchmarks."""


@app.command("kernels")
def kernels_cmd(
    model: Annotated[
        str, typer.Option(help="Architecture (random init, relu) when no checkpoint.")
    ] = "lenet-shallow",
    data_name: Annotated[str, typer.Option("--data")] = "fashion-mnist",
    checkpoint: Annotated[str | None, typer.Option(help="Use this trained model instead.")] = None,
    batch: Annotated[list[int] | None, typer.Option(help="Batch sizes (repeatable).")] = None,
    quick: Annotated[bool, typer.Option(help="Fewer repeats of the slow reference.")] = False,
    seed: int = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """IntModel images/s: numba vs the numpy int64 reference vs torch float32 on CPU."""
    from bench import kernels

    result = kernels.run(
        model_name=model,
        data_name=data_name,
        checkpoint=checkpoint,
        batch_sizes=batch or [1, 1024],
        quick=quick,
        seed=seed,
    )
    header = [
        "batch",
        "numba img/s",
        "numpy img/s",
        "torch img/s",
        "numba/numpy",
        "numba/torch",
        "exact",
    ]
    rows = [
        [
            bs,
            r["numba_images_per_s"],
            r["numpy_images_per_s"],
            r["torch_images_per_s"],
            r["numba_over_numpy"],
            r["numba_over_torch"],
            r["identical_to_reference"],
        ]
        for bs, r in result["batches"].items()
    ]
    md = (
        f"IntModel kernels: {result['model']} on {result['data']} "
        f"(baseline: numpy int64 reference, torch float32 CPU)\n\n"
        + report.markdown_table(header, rows)
    )
    console.print(md, markup=False, highlight=False, soft_wrap=True)
    report.write(result, json_out, md)


def _baseline_cell(b: dict, per_image: bool) -> str:
    if per_image and b.get("baseline"):
        return f"{b['baseline_e2e_s']:.3g} s e2e"
    if "baseline_eval_images_per_s" in b:
        return f"{b['baseline_eval_images_per_s']:.3g} img/s"
    return b.get("baseline_reason", "-")


@app.command("he")
def he_cmd(
    scheme: Annotated[
        str, typer.Option(help="ckks (approximate) or bfv (exact, integer).")
    ] = "ckks",
    model: Annotated[
        str, typer.Option(help="Architecture trained here when no checkpoint.")
    ] = "tenseal-tutorial",
    data_name: Annotated[str, typer.Option("--data")] = "fashion-mnist",
    checkpoint: Annotated[str | None, typer.Option(help="Use this trained model instead.")] = None,
    n: Annotated[int, typer.Option(help="Test images (one batch: at most the slot count).")] = 1000,
    epochs: Annotated[int, typer.Option(help="Training epochs when no checkpoint.")] = 2,
    quick: Annotated[
        bool, typer.Option(help="Sample the slow baseline (under 3 minutes).")
    ] = False,
    seed: int = 0,
    bits: Annotated[int, typer.Option(help="bfv: weight/activation bits of the exact model.")] = 4,
    arg: Annotated[
        list[str] | None, typer.Option(help="Model option KEY=VALUE when training (repeatable).")
    ] = None,
    tables: Annotated[
        str,
        typer.Option(
            help="bfv: none (x² models), poly (tables as polynomials over Z_t) or client "
            "(client-aided tables, one round trip per cut)."
        ),
    ] = "none",
    packing: Annotated[
        list[str] | None, typer.Option(help="ckks: single and/or batch (repeatable; default both).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """Encrypted vs plain inference: time, size and accuracy (thesis Table 3.1)."""
    from bench import he, he_bfv
    from nets.errors import UserError

    if scheme not in ("ckks", "bfv"):
        raise UserError(f"--scheme {scheme}: choose ckks or bfv")
    for p in packing or []:
        if p not in ("single", "batch"):
            raise UserError(f"--packing {p}: choose single or batch")
    if tables not in ("none", "poly", "client"):
        raise UserError(f"--tables {tables}: choose none, poly or client")
    extra = (
        {"bits": bits, "tables": tables}
        if scheme == "bfv"
        else {"packings": tuple(packing or ("single", "batch"))}
    )
    from nets import models as model_registry
    from nets.cli_util import parse_options

    options = parse_options(arg or [], model_registry.options(model)) if not checkpoint else {}
    result = (he.run if scheme == "ckks" else he_bfv.run)(
        **extra,
        options=options,
        model_name=model,
        data_name=data_name,
        checkpoint=checkpoint,
        n_images=n,
        quick=quick,
        seed=seed,
        epochs=epochs,
    )
    header = [
        "packing",
        "images",
        "e2e s",
        "eval s",
        "eval img/s",
        "baseline",
        "speedup",
        "upload KB/img",
        "context MB",
        "plain ms/img",
        "overhead",
        "agreement",
    ]
    rows = []
    for name, b in result["packings"].items():
        per_image = name == "single"
        rows.append(
            [
                name,
                b["n_images"],
                b["e2e_s"],
                b["eval_s"],
                1 / b["eval_s"] if per_image else b["eval_images_per_s"],
                _baseline_cell(b, per_image),
                b.get("speedup_vs_baseline", "-"),
                b["upload_bytes_per_image"] / 1000,
                b["public_context_bytes"] / 1e6,
                (b["plain_torch_batch1_s"] if per_image else b["plain_torch_batch1000_per_image_s"])
                * 1000,
                b["overhead_vs_plain"],
                b["argmax_agreement"],
            ]
        )
    first = next(iter(result["packings"].values()))
    md = (
        f"Encrypted vs plain ({result['scheme']}): {result['model']} on {result['data']}; "
        "baselines: single — the TenSEAL tutorial's im2col + mm way (e2e per image); batch — "
        f"TenSEAL {'CKKS' if scheme == 'ckks' else 'BFV'}Vector per input value"
        f"{' (sampled, extrapolated)' if first.get('baseline_extrapolated') else ''}\n\n"
        + report.markdown_table(header, rows)
        + (
            f"\nbit-exact rate {first['bit_exact_rate']:.4f} over {first['n_images']} images, "
            f"tables: {first['tables']}, round trips {first['round_trips']}, "
            f"plaintext moduli {first['plaintext_moduli']}"
            if scheme == "bfv"
            else ""
        )
        + "".join(
            f"\n{name}: plain accuracy {b['plain_accuracy']:.4f}, encrypted "
            f"{b['encrypted_accuracy']:.4f}"
            for name, b in result["packings"].items()
        )
        + "\nthesis Table 3.1: 0.1 ms plain vs 300 s encrypted per image\n"
    )
    console.print(md, markup=False, highlight=False, soft_wrap=True)
    report.write(result, json_out, md)


@app.command("attacks")
def attacks_cmd(
    model: Annotated[
        str, typer.Option(help="Architecture trained here when no checkpoint.")
    ] = "lenet-shallow",
    data_name: Annotated[str, typer.Option("--data")] = "mnist-5k",
    checkpoint: Annotated[str | None, typer.Option(help="Use this trained model instead.")] = None,
    n: Annotated[int, typer.Option(help="Test images in the batch.")] = 1000,
    epochs: Annotated[int, typer.Option(help="Training epochs when no checkpoint.")] = 2,
    quick: Annotated[bool, typer.Option(help="Fewer repeats and C&W images.")] = False,
    seed: int = 0,
    device: str = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """PGD-40 and FGSM vs torchattacks 3.5.1 (time, identical images); C&W success and L2."""
    from bench import attacks as bench_attacks

    r = bench_attacks.run(
        model_name=model,
        data_name=data_name,
        checkpoint=checkpoint,
        n=n if not quick else min(n, 256),
        quick=quick,
        seed=seed,
        epochs=epochs,
        device=device,
    )
    a = r["attacks"]
    header = [
        "attack",
        "ours s",
        "torchattacks s",
        "ratio",
        "identical",
        "ours success",
        "theirs success",
        "ours mean L2",
        "theirs mean L2",
    ]
    rows = [
        [
            name,
            c["ours_s"],
            c["torchattacks_s"],
            c.get("ratio", "-"),
            c.get("identical", "-"),
            c["ours"]["success_rate"],
            c["torchattacks"]["success_rate"],
            c["ours"]["mean_l2"],
            c["torchattacks"]["mean_l2"],
        ]
        for name, c in a.items()
    ]
    md = (
        f"Attacks on {r['model']} ({r['data']}, {r['n_images']} images, {r['device']}); baseline: "
        "torchattacks 3.5.1, same model, batch and seed\n\n"
        + report.markdown_table(header, rows)
        + f"\nC&W: {a['cw']['note']} ({a['cw']['n_images']} images)\n"
    )
    console.print(md, markup=False, highlight=False, soft_wrap=True)
    report.write(r, json_out, md)


@app.command("defenses")
def defenses_cmd(
    data_name: Annotated[str, typer.Option("--data")] = "mnist-5k",
    model: Annotated[str, typer.Option(help="Architecture trained by every method.")] = "cnn",
    eps: Annotated[float, typer.Option(help="L∞ budget (MNIST 0.3, Fashion 0.1).")] = 0.3,
    epochs: Annotated[int, typer.Option(help="A multiple of 8: free m = 8 keeps the passes.")] = 16,
    n_train: Annotated[int | None, typer.Option(help="First N training images.")] = None,
    eval_n: Annotated[int, typer.Option(help="Test images attacked (PGD-20×5).")] = 1000,
    certify_n: Annotated[int, typer.Option(help="Smoothing samples per image.")] = 10_000,
    quick: Annotated[bool, typer.Option(help="2,000 images, 8 epochs, 200 attacked.")] = False,
    seed: int = 0,
    device: str = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """Training defenses vs standard training (time, clean, PGD-20×5); certify images/s."""
    from bench import defenses as bench_defenses

    r = bench_defenses.run(
        data_name=data_name,
        model_name=model,
        eps=eps,
        epochs=8 if quick else epochs,
        n_train=2000 if quick else n_train,
        eval_n=200 if quick else eval_n,
        certify_images=5 if quick else 20,
        certify_n=certify_n,
        seed=seed,
        device=device,
    )
    header = ["method", "train s", "× standard", "× PGD-AT", "clean", "PGD-20×5 robust"]
    rows = [
        [name, c["train_seconds"], c["time_vs_standard"], c["time_vs_pgd_at"],
         c["clean_accuracy"], c["pgd20x5_robust_accuracy"]]
        for name, c in r["training"].items()
    ]  # fmt: skip
    c = r["certify"]
    md = (
        f"Defenses: {r['model']} on {r['data']} ({r['n_train']} training images, "
        f"{r['epochs']} epochs, ε = {r['eps']}, {r['eval_images']} test images attacked; "
        f"{r['run']['device']}); baseline: standard training of the same model\n\n"
        + report.markdown_table(header, rows)
        + f"\nCertification (σ 0.25, n {c['n']}): ours {c['ours_images_per_s']:.2f} images/s, "
        f"Cohen et al.'s reference sampling loop {c['cohen_reference_images_per_s']:.2f} "
        f"images/s: {c['ratio']:.2f}×\n\nPublished (other data sizes and schedules):\n"
        + "".join(f"- {v}\n" for v in r["published"].values())
    )
    console.print(md, markup=False, highlight=False, soft_wrap=True)
    report.write(r, json_out, md)


@app.command("demo")
def demo_cmd(
    checkpoint: Annotated[Path, typer.Option(help="A trained checkpoint to serve.")],
    n: Annotated[int, typer.Option(help="Test images sent encrypted (batch packing).")] = 1000,
    n_single: Annotated[
        int, typer.Option(help="Of those, sent one per request (single packing).")
    ] = 100,
    workdir: Annotated[Path, typer.Option(help="Server models and state.")] = Path("runs/demo"),
) -> None:
    """Serve a model on a loopback port, query it encrypted, print encrypted vs plain."""
    from bench import demo

    r = demo.run(model_path=checkpoint, n=n, n_single=n_single, workdir=workdir)
    header = ["", "images", "accuracy", "agreement", "time", "per image", "upload"]
    rows = [
        [
            "plain (torch, CPU, one batch)",
            r["n_images"],
            r["plain_accuracy"],
            "-",
            f"{r['plain_s']:.4f} s",
            f"{r['plain_s'] / r['n_images'] * 1000:.4f} ms",
            "-",
        ]
    ]
    for packing, p in r["packings"].items():
        total = p["keygen_register_s"] + p["encrypt_s"] + p["server_s"] + p["decrypt_s"]
        label = f"encrypted CKKS {packing} via HTTP ({p['requests']} requests)"
        if p.get("scheme") == "bfv":
            label = (
                f"encrypted BFV exact via HTTP ({p['requests']} requests, "
                f"{p['round_trips']} round trips), bit-exact vs integer model "
                f"{p['bit_exact_rate']:.3f}"
            )
        rows.append(
            [
                label,
                p["n_images"],
                p["encrypted_accuracy"],
                p["argmax_agreement"],
                f"{total:.1f} s",
                f"{total / p['n_images'] * 1000:.1f} ms",
                f"{p['upload_bytes'] / 1e6:.1f} MB",
            ]
        )
    md = (
        f"{r['model']} on {r['data']}: server {r['server']}\n\n"
        + report.markdown_table(header, rows)
        + "\ntime = keygen + key registration + encrypt + server round trips + decrypt; BFV "
        "runs the checkpoint quantised to 4 bits (integer_nn): its accuracy is the integer "
        "model's; "
        "thesis Table 3.1: 0.1 ms plain vs 300 s encrypted per image\n"
    )
    console.print(md, markup=False, highlight=False, soft_wrap=True)
    report.write(r, workdir / "demo.json", md)
