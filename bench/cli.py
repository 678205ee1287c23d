"""``python -m bench``: options only. Each benchmark module has ``run(...)`` → a dict and
``table(dict)`` → markdown; this module wires the options to ``run`` and shows the table."""

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


def _show(result: dict, markdown: str, json_path: Path | None) -> None:
    """Every benchmark: its ``table()`` printed, its ``run()`` dict written as JSON + .md."""
    console.print(markdown, markup=False, highlight=False, soft_wrap=True)
    report.write(result, json_path, markdown)


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
    _show(result, kernels.table(result), json_out)


@app.command("he")
def he_cmd(
    scheme: Annotated[
        str, typer.Option(help="ckks (approximate) or bfv (exact, integer).")
    ] = "ckks",
    model: Annotated[
        str, typer.Option(help="Architecture trained here when no checkpoint.")
    ] = "tenseal-tutorial",
    data_name: Annotated[
        str | None,
        typer.Option("--data", help="Default: the checkpoint's own data set, else fashion-mnist."),
    ] = None,
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
    qat_epochs: Annotated[
        int,
        typer.Option(
            help="bfv: also fine-tune with quantisation in the loop and run that plan too."
        ),
    ] = 0,
    acc_bits: Annotated[
        int | None, typer.Option(help="bfv + QAT: worst-case accumulator budget in bits.")
    ] = None,
    input_bits: Annotated[
        int | None, typer.Option(help="bfv + QAT: pixel bits (default --bits).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """Encrypted vs plain inference: time, size and accuracy (thesis Table 3.1)."""
    from bench import he
    from nets.errors import UserError

    if scheme not in ("ckks", "bfv"):
        raise UserError(f"--scheme {scheme}: choose ckks or bfv")
    for p in packing or []:
        if p not in ("single", "batch"):
            raise UserError(f"--packing {p}: choose single or batch")
    if tables not in ("none", "poly", "client"):
        raise UserError(f"--tables {tables}: choose none, poly or client")
    extra = (
        {
            "bits": bits,
            "tables": tables,
            "qat_epochs": qat_epochs,
            "acc_bits": acc_bits,
            "input_bits": input_bits,
        }
        if scheme == "bfv"
        else {"packings": tuple(packing or ("single", "batch"))}
    )
    from nets import models as model_registry
    from nets.cli_util import parse_options

    options = parse_options(arg or [], model_registry.options(model)) if not checkpoint else {}
    if data_name is None:  # a checkpoint is evaluated on what it was trained on
        from nets import checkpoint as checkpoint_io

        data_name = checkpoint_io.load(checkpoint)[1].data if checkpoint else "fashion-mnist"
    result = he.run(
        scheme=scheme,
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
    _show(result, he.table(result), json_out)


@app.command("attacks")
def attacks_cmd(
    model: Annotated[
        str, typer.Option(help="Architecture trained here when no checkpoint.")
    ] = "lenet-shallow",
    data_name: Annotated[str, typer.Option("--data")] = "mnist-5k",
    checkpoint: Annotated[str | None, typer.Option(help="Use this trained model instead.")] = None,
    n: Annotated[int, typer.Option(help="Test images in the batch.")] = 1000,
    epochs: Annotated[int, typer.Option(help="Training epochs when no checkpoint.")] = 2,
    quick: Annotated[
        bool, typer.Option(help="Fewer repeats; 64 images for C&W and AutoAttack (else 256).")
    ] = False,
    aa_eps: Annotated[float, typer.Option(help="AutoAttack's L∞ radius.")] = 0.1,
    seed: int = 0,
    device: str = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """PGD-40, FGSM, C&W and AutoAttack vs torchattacks 3.5.1 (time ratio, robust accuracy)."""
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
        aa_eps=aa_eps,
    )
    _show(r, bench_attacks.table(r), json_out)


@app.command("defenses")
def defenses_cmd(
    data_name: Annotated[str, typer.Option("--data")] = "mnist-5k",
    model: Annotated[str, typer.Option(help="Architecture trained by every method.")] = "cnn",
    eps: Annotated[float, typer.Option(help="L∞ budget (MNIST 0.3, Fashion 0.1).")] = 0.3,
    epochs: Annotated[int, typer.Option(help="A multiple of 8: free m = 8 keeps the passes.")] = 16,
    n_train: Annotated[int | None, typer.Option(help="First N training images.")] = None,
    eval_n: Annotated[
        int, typer.Option(help="Test images attacked (AutoAttack, PGD-20×5, APGD-CE).")
    ] = 1000,
    certify_n: Annotated[int, typer.Option(help="Smoothing samples per image.")] = 10_000,
    quick: Annotated[bool, typer.Option(help="2,000 images, 8 epochs, 200 attacked.")] = False,
    seed: int = 0,
    device: str = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """Training defenses vs standard training (time, clean, AutoAttack, PGD-20×5, APGD-CE);
    certification images/s."""
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
    _show(r, bench_defenses.table(r), json_out)


@app.command("fast-at")
def fast_at_cmd(
    data_names: Annotated[
        list[str] | None, typer.Option("--data", help="Data sets (repeatable).")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Default: the paper's 6,000 steps (10 on 60k images, 150 on 4k)."),
    ] = None,
    n_train: Annotated[int | None, typer.Option(help="First N training images.")] = None,
    eval_n: Annotated[int, typer.Option(help="Test images attacked (AutoAttack).")] = 1000,
    pgd_steps: Annotated[int, typer.Option(help="PGD-AT's steps (step 2.5·ε/steps).")] = 10,
    square_queries: Annotated[int, typer.Option(help="AutoAttack's Square budget.")] = 5000,
    quick: Annotated[
        bool,
        typer.Option(
            help="Fashion-MNIST 10,000 images, 10 epochs, 5-step PGD-AT, 200 images attacked."
        ),
    ] = False,
    ramp: Annotated[
        float | None,
        typer.Option(help="ε warm-up, fraction of the epochs (default: 0.3 on MNIST-5k, else 0)."),
    ] = None,
    fast_epochs: Annotated[
        int | None,
        typer.Option(
            help="FGSM-RS and N-FGSM's epochs (default --epochs): the target compares them "
            "with PGD-AT at ≤ ⅓ of its time, not at equal epochs."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="Run only these rows, by name prefix (repeatable; standard always runs).",
        ),
    ] = None,
    seed: int = 0,
    device: str = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """Wong et al. 2020 reproduced: standard / PGD-AT / free / FGSM-RS / N-FGSM, AutoAttack."""
    from bench import fast_at

    r = fast_at.run(
        data_names=["fashion-mnist"] if quick else (data_names or ["fashion-mnist", "mnist-5k"]),
        epochs=10 if quick else epochs,
        n_train=10_000 if quick else n_train,
        eval_n=200 if quick else eval_n,
        pgd_steps=5 if quick else pgd_steps,
        square_queries=1000 if quick else square_queries,
        seed=seed,
        device=device,
        ramp_fraction=ramp,
        fast_epochs=fast_epochs,
        only=tuple(only or ()),
    )
    _show(r, fast_at.table(r), json_out)


@app.command("backdoor")
def backdoor_cmd(
    data_names: Annotated[
        list[str] | None, typer.Option("--data", help="Data sets (repeatable).")
    ] = None,
    clean_models: Annotated[int, typer.Option(help="Clean models per data set.")] = 5,
    backdoored_models: Annotated[int, typer.Option(help="Backdoored models per data set.")] = 5,
    epochs: int = 3,
    n_train: Annotated[int | None, typer.Option(help="First N training images.")] = 20_000,
    probe_images: Annotated[int, typer.Option(help="Clean images Neural Cleanse uses.")] = 500,
    steps: Annotated[int, typer.Option(help="Neural Cleanse steps per class.")] = 300,
    width: Annotated[int, typer.Option(help="cnn width (conv maps).")] = 32,
    quick: Annotated[
        bool, typer.Option(help="MNIST-5k, 2 + 2 models, 100 steps per class.")
    ] = False,
    seed: int = 0,
    device: str = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """Neural Cleanse on clean and backdoored models: TPR and FPR of each verdict rule."""
    from bench import backdoor

    r = backdoor.run(
        data_names=["mnist-5k"] if quick else (data_names or ["mnist-5k", "fashion-mnist"]),
        clean_models=2 if quick else clean_models,
        backdoored_models=2 if quick else backdoored_models,
        epochs=epochs,
        n_train=n_train,
        probe_images=200 if quick else probe_images,
        steps=100 if quick else steps,
        seed=seed,
        device=device,
        width=width,
    )
    _show(r, backdoor.table(r), json_out)


@app.command("qat")
def qat_cmd(
    model: Annotated[
        list[str] | None,
        typer.Option(help="tenseal-tutorial-x2, tenseal-tutorial-relu, cryptonets-x2."),
    ] = None,
    data_name: Annotated[list[str] | None, typer.Option("--data")] = None,
    bits: Annotated[list[int] | None, typer.Option(help="Bit widths (repeatable).")] = None,
    epochs: Annotated[
        int, typer.Option(help="QAT epochs on Fashion-MNIST (×3 on the 4,000-image MNIST-5k).")
    ] = 5,
    seed: int = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """Float vs post-training vs quantisation-aware integer accuracy (README's QAT table)."""
    from bench import qat
    from nets.errors import UserError

    models = model or list(qat.MODELS)
    unknown = [m for m in models if m not in qat.MODELS]
    if unknown:
        raise UserError(f"--model {unknown[0]}: choose from {', '.join(qat.MODELS)}")
    datasets = data_name or ["fashion-mnist", "mnist-5k"]
    per_data = {"fashion-mnist": 1, "mnist": 1}
    result = qat.run(
        models=models,
        datasets=datasets,
        bits=bits or [4, 3],
        float_epochs={d: 10 * per_data.get(d, 3) for d in datasets},
        qat_epochs={d: epochs * per_data.get(d, 3) for d in datasets},
        seed=seed,
    )
    _show(result, qat.table(result), json_out)


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
    _show(r, demo.table(r), workdir / "demo.json")


@app.command("certify-encrypted")
def certify_encrypted_cmd(
    model: Annotated[str, typer.Option(help="HE-friendly architecture to noise-train.")] = (
        "tenseal-tutorial"
    ),
    data_name: Annotated[str, typer.Option("--data")] = "fashion-mnist",
    sigma: Annotated[float, typer.Option(help="Noise level of training and certification.")] = 0.25,
    images: Annotated[int, typer.Option(help="Test images certified through CKKS.")] = 100,
    bfv_images: Annotated[int, typer.Option(help="Test images certified through BFV.")] = 5,
    n0: int = 100,
    n: Annotated[int, typer.Option(help="Estimation samples (rounded up to fill batches).")] = (
        3996
    ),
    alpha: float = 0.001,
    epochs: int = 10,
    quick: Annotated[bool, typer.Option(help="10 CKKS images, 2 BFV.")] = False,
    seed: int = 0,
    workdir: Annotated[Path, typer.Option(help="Model, server state and plot.")] = Path(
        "runs/bench/certify-encrypted"
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """Certified encrypted prediction (randomized smoothing through the batch plan) vs the
    clear certifier: certificates per minute, requests and upload, equal certificates."""
    from bench import certify_encrypted

    r = certify_encrypted.run(
        workdir=workdir,
        model=model,
        data_name=data_name,
        sigma=sigma,
        images=10 if quick else images,
        bfv_images=2 if quick else bfv_images,
        n0=n0,
        n=n,
        alpha=alpha,
        epochs=epochs,
        seed=seed,
    )
    _show(r, certify_encrypted.table(r), json_out)


@app.command("browser")
def browser_cmd(
    checkpoint: Annotated[Path, typer.Option(help="A trained checkpoint to serve.")] = Path(
        "runs/demo/tenseal-tutorial.pt"
    ),
    batch: Annotated[int, typer.Option(help="Images in the batch request.")] = 4096,
    workdir: Annotated[Path, typer.Option(help="Server state, log and screenshot.")] = Path(
        "runs/bench/browser"
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write JSON (+ .md beside it).")
    ] = None,
) -> None:
    """The page in headless Chromium (SEAL 4.1 wasm) vs the Python client, same plans:
    keygen, encrypt, server, decrypt, round trip; page load to first result."""
    from bench import browser

    if not checkpoint.is_file():
        from nets.errors import UserError

        raise UserError(f"--checkpoint {checkpoint} not found: `make demo` trains it")
    r = browser.run(checkpoint=checkpoint, workdir=workdir, batch=batch)
    _show(r, browser.table(r), json_out)
