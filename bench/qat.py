"""``bench qat``: float vs post-training vs quantisation-aware integer accuracy, per model,
data set and bit width, on the full test sets — the issue's accuracy table in one command.

Every model is trained here in float first (seeded; ``--float-epochs``), then quantised
post-training (``integer_nn.quantize``) and fine-tuned with quantisation in the loop
(``integer_nn.qat``) at each bit width; the baseline is post-training quantisation of the
same float network, the float network itself is the target.
"""

from __future__ import annotations

import time

from bench import report
from bench.common import trained_model
from integer_nn import qat, quantize
from nets import data
from nets.runinfo import run_info
from nets.train import TrainConfig, evaluate

MODELS = {  # name → (architecture, options)
    "tenseal-tutorial-x2": ("tenseal-tutorial", {"act": "square"}),
    "tenseal-tutorial-relu": ("tenseal-tutorial", {"act": "relu"}),
    "cryptonets-x2": ("cryptonets", {"act": "square"}),
}


def run(
    *,
    models: list[str],
    datasets: list[str],
    bits: list[int],
    float_epochs: dict[str, int],
    qat_epochs: dict[str, int],
    seed: int = 0,
) -> dict:
    rows = []
    for data_name in datasets:
        train_set = data.load(data_name, "train")
        test = data.load(data_name, "test")
        calib = train_set.subset(2000).images
        for name in models:
            arch, options = MODELS[name]
            net, _, info = trained_model(
                arch, data_name, None, seed, float_epochs[data_name], options
            )
            float_acc = evaluate(net, test)
            for b in bits:
                ptq = quantize(net, calib, weight_bits=b, act_bits=b)
                ptq_acc = float((ptq.predict(test.images) == test.labels).mean())
                t0 = time.perf_counter()
                int_model, fine = qat.fine_tune(
                    net,
                    train_set,
                    calib,
                    qat.QATConfig(weight_bits=b, act_bits=b),
                    TrainConfig(epochs=qat_epochs[data_name], lr=1e-3, seed=seed),
                )
                qat_acc = float((int_model.predict(test.images) == test.labels).mean())
                rows.append(
                    {
                        "model": name,
                        "data": data_name,
                        "bits": b,
                        "n_test": len(test),
                        "float_accuracy": float_acc,
                        "ptq_accuracy": ptq_acc,
                        "qat_accuracy": qat_acc,
                        "qat_minus_float_points": 100 * (qat_acc - float_acc),
                        "ptq_max_accumulator_bits": ptq.max_accumulator_bits,
                        "qat_max_accumulator_bits": int_model.max_accumulator_bits,
                        "ptq_max_value_bits": ptq.max_value_bits,
                        "qat_max_value_bits": int_model.max_value_bits,
                        "float_train_s": info.get("train_s"),
                        "qat_s": time.perf_counter() - t0,
                        "qat_epochs": fine["epochs"],
                    }
                )
    return {
        "benchmark": "qat",
        "float_epochs": float_epochs,
        "qat_epochs": qat_epochs,
        "rows": rows,
        "run": run_info(seed=seed, device="cpu"),
    }


def table(result: dict) -> str:
    header = [
        "model",
        "data",
        "bits",
        "float",
        "post-training",
        "QAT",
        "QAT − float (points)",
        "value bits PTQ / QAT",
        "QAT s",
    ]
    rows = [
        [
            r["model"],
            r["data"],
            r["bits"],
            r["float_accuracy"],
            r["ptq_accuracy"],
            r["qat_accuracy"],
            f"{r['qat_minus_float_points']:+.2f}",
            f"{r.get('ptq_max_value_bits', '-')} / {r.get('qat_max_value_bits', '-')}",
            r["qat_s"],
        ]
        for r in result["rows"]
    ]
    return (
        "Integer accuracy: float vs post-training vs quantisation-aware (weights and "
        "activations at the bits shown, x² exact, one weight scale per tensor, full test "
        f"sets; QAT epochs {result['qat_epochs']})\n\n" + report.markdown_table(header, rows)
    )
