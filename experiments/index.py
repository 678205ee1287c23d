"""The index of committed results: ``results/README.md`` generated from each
``results/NAME/metrics.json`` (never typed), and the measured full-mode times that
``experiments list`` shows in place of estimates."""

from __future__ import annotations

import json
from pathlib import Path


def _metrics(folder: Path) -> dict | None:
    path = folder / "metrics.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def measured_minutes(folder: Path) -> float | None:
    """Wall minutes of a complete full-mode run kept in ``folder``; None without one."""
    m = _metrics(folder)
    if m is None or m.get("mode") != "full" or m.get("partial"):
        return None
    return m["wall_s"] / 60


def write_index(results: Path) -> Path:
    rows = []
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        m = _metrics(folder)
        if m is None:
            continue
        holds = [r["holds"] for r in m.get("table", [])]
        tally = ", ".join(f"{holds.count(v)} {v}" for v in ("yes", "partly", "no") if v in holds)
        state = "partial" if m.get("partial") else "complete"
        rows.append(
            f"| [{m['experiment']}]({folder.name}/report.md) | {m['mode']} ({state}) | "
            f"{m['data']} | {m['wall_s'] / 60:.1f} | {m.get('date', '—')} | "
            f"{m['run']['device']} ({m.get('machine', '—')}) | {tally or '—'} |"
        )
    text = "\n".join(
        [
            "# Results",
            "",
            "Committed runs of `python -m experiments run NAME --out results/NAME`; this file "
            "is written by `python -m experiments index` from each run's metrics.json.",
            "",
            "| experiment | mode | data | wall min | date | device | published direction holds |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    out = results / "README.md"
    out.write_text(text)
    return out
