"""A run that could not finish, published as what it finished: its kept units.

Long full runs (plasticity: hours per protocol model) are made of units kept on disk as
they finish (``experiments.units``). When a session ends before the last unit, the
experiment's own report cannot be written — its table compares units that do not exist
yet — but the finished units are measurements. ``python -m experiments partial DIR``
writes DIR's ``metrics.json`` (``partial`` true, the kept units' results, the seconds they
took) and a ``report.md`` that lists them and says what is missing; ``experiments index``
then shows the run as partial. ``--resume`` still finishes the run later in the same
folder and replaces both files with the full report.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from experiments.core import machine
from nets.errors import UserError
from nets.runinfo import run_info


def _flat(value, prefix: str = "") -> list[tuple[str, object]]:
    """Scalar leaves of a unit's JSON as (dotted key, value), in order."""
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list):
        more = ", …" if len(value) > 8 else ""
        return [(prefix, "[" + ", ".join(map(str, value[:8])) + more + "]")]
    return [(prefix, value)]


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def publish(folder: Path, *, missing: str) -> dict:
    """Write ``folder``'s metrics.json and report.md from its kept units → the metrics.
    ``missing``: what the run did not finish, in words (the report says it)."""
    units_dir = folder / "units"
    config_path = units_dir / "config.json"
    if not config_path.is_file():
        raise UserError(f"{folder}: no units/config.json — not the folder of a unit-kept run")
    config = json.loads(config_path.read_text())
    keys = sorted(p.stem for p in units_dir.glob("*.json") if p.name != "config.json")
    if not keys:
        raise UserError(f"{units_dir}: no finished unit to publish")
    units = {k: json.loads((units_dir / f"{k}.json").read_text()) for k in keys}
    seconds = {
        k: float((units_dir / f"{k}.seconds").read_text())
        for k in keys
        if (units_dir / f"{k}.seconds").is_file()
    }
    metrics = {
        "experiment": config["experiment"],
        "mode": config["mode"],
        "data": config["data"],
        "seed": config["seed"],
        "options": config["options"],
        "partial": True,
        "missing": missing,
        "kept_units": units,
        "unit_seconds": seconds,
        "wall_s": sum(seconds.values()),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "run": run_info(seed=config["seed"], device="cpu"),
        "table": [],
    }
    args = ", ".join(f"{k}={v}" for k, v in config["options"].items()) or "none"
    lines = [
        f"# {config['experiment']} — partial",
        "",
        f"Mode **{config['mode']}** (**partial**: the run did not finish; --arg {args}), data "
        f"`{config['data']}`, seed {config['seed']}. Kept units: {len(keys)}, "
        f"{metrics['wall_s'] / 60:.1f} min of compute when they ran. Published "
        f"{metrics['date']} by `python -m experiments partial`.",
        "",
        f"Not finished: {missing}. The published comparison needs it, so this report lists "
        "what was measured and makes no claim about the published direction.",
        "",
        f"Machine: {metrics['machine']}.",
        "",
    ]
    for key in keys:
        minutes = f", {seconds[key] / 60:.1f} min" if key in seconds else ""
        lines += [f"## {key}{minutes}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in _flat(units[key])]
        lines.append("")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "report.md").write_text("\n".join(lines))
    return metrics
