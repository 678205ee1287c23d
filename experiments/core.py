"""What every experiment shares: its context (mode, device, data, seed, output folder) and
the writing of its results.

The report is rendered from the metrics dict that is written to ``metrics.json``: every
figure in the "ours" column is a :class:`Row` template filled from metric paths, and every
"holds?" verdict is computed from them — no number in a report is typed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console

from nets.runinfo import resolve_device, run_info, seed_everything

Mode = Literal["tiny", "quick", "full"]


@dataclass
class Context:
    name: str
    out: Path
    mode: Mode = "quick"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data: str | None = None  # None: the experiment's default
    data_given: bool = False  # the user named the data set (else the default was taken)
    seed: int = 0
    data_dir: Path | None = None  # where user-supplied data sets (CIFAR-10) live
    ray: bool = False
    ray_address: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the user's --arg overrides
    console: Console = field(default_factory=Console)
    resume: bool = False  # keep the finished units of an earlier, interrupted run
    _units: Any = None

    def units(self):
        """The run's store of finished units (see :mod:`experiments.units`)."""
        if self._units is None:
            from experiments import get
            from experiments.units import Units

            neutral = get(self.name).resume_neutral
            config = {
                "experiment": self.name,
                "mode": self.mode,
                "data": self.data,
                "seed": self.seed,
                "options": {k: v for k, v in self.options.items() if k not in neutral},
            }
            self._units = Units(self.out, resume=self.resume, config=config)
            if self.resume:
                kept = self._units.kept()
                self.log(f"--resume: {len(kept)} finished unit(s) kept" + (
                    f" ({', '.join(kept[:6])}{', …' if len(kept) > 6 else ''})" if kept else ""
                ))  # fmt: skip
        return self._units

    def unit(self, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()``'s JSON-able result, kept on disk as the unit ``key`` (``--resume``)."""
        return self.units().run(key, fn)

    def pick(self, *, tiny: Any, quick: Any, full: Any, option: str | None = None) -> Any:
        """The value for this run's mode (sizes, epochs, steps) — or the user's ``--arg``
        for ``option`` when given."""
        if option is not None and self.options.get(option) is not None:
            return self.options[option]
        return {"tiny": tiny, "quick": quick, "full": full}[self.mode]

    def png(self, stem: str) -> Path:
        return self.out / f"{stem}.png"

    def log(self, message: str) -> None:
        self.console.print(f"[dim]{self.name}[/] {message}", highlight=False)


@dataclass(frozen=True)
class Row:
    """One line of the report's table. ``ours`` is a template over metric paths, e.g.
    ``"{shallow.test_after:.2%}"``; ``holds`` is yes / no / partly, computed by the caller."""

    figure: str
    published: str
    ours: str
    holds: str


@dataclass
class Outcome:
    metrics: dict[str, Any]
    rows: list[Row]
    differs: str  # one paragraph: what differs from the published setup
    figures: list[Path] = field(default_factory=list)
    title: str = ""


def verdict(*checks: bool) -> str:
    """yes when every check holds, no when none does, partly otherwise."""
    if all(checks):
        return "yes"
    return "no" if not any(checks) else "partly"


_FIELD = re.compile(r"\{([A-Za-z0-9_.\-]+)(?::([^}]*))?\}")


def lookup(metrics: dict, path: str) -> Any:
    value: Any = metrics
    for part in path.split("."):
        value = value[part] if isinstance(value, dict) else value[int(part)]
    return value


def fill(template: str, metrics: dict) -> str:
    """``"{a.b:.3f} s"`` → the value at metrics["a"]["b"], formatted."""

    def one(match: re.Match) -> str:
        value = lookup(metrics, match.group(1))
        spec = match.group(2) or ""
        return "—" if value is None else format(value, spec)

    return _FIELD.sub(one, template)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def machine() -> str:
    """What ran it, in words: CPU cores and model (or the GPU), OS."""
    return (
        f"{os.cpu_count()} CPU cores, {platform.machine()}, "
        f"{platform.system()} {platform.release()}"
    )


def _resumed(metrics: dict) -> str:
    units = metrics.get("units") or {}
    if not units.get("units_reused"):
        return ""
    return (
        f" Resumed: {units['units_reused']} of {units['units_reused'] + units['units_computed']}"
        f" units ({units['units_reused_seconds'] / 60:.1f} min of the wall time) were computed"
        " by earlier, interrupted processes of this run."
    )


def _partial(metrics: dict) -> str:
    """A full run under --arg settings is not the full protocol: the report says so."""
    if not metrics.get("partial"):
        return ""
    args = ", ".join(f"{k}={v}" for k, v in metrics["options"].items())
    return f" (**partial**: {args})"


def render(outcome: Outcome, metrics: dict, ctx: Context) -> str:
    v = metrics["run"]["versions"]
    lines = [
        f"# {outcome.title or ctx.name}",
        "",
        f"Mode **{ctx.mode}**{_partial(metrics)}, data `{metrics['data']}`, seed {ctx.seed}, "
        f"device "
        f"`{metrics['run']['device']}` ({metrics['run']['device_name']}), wall time "
        f"{metrics['wall_s']:.0f} s ({metrics['wall_s'] / 60:.1f} min), {metrics['date']}."
        + _resumed(metrics),
        "",
        f"Machine: {metrics['machine']}; Python {v['python']}, torch {v['torch']}, "
        f"numpy {v['numpy']}, cryptorobust {v['cryptorobust']}.",
        "",
        "| figure | published | ours | direction holds? |",
        "|---|---|---|---|",
    ]
    for row in outcome.rows:
        ours = fill(row.ours, metrics).replace("|", "/")
        lines.append(f"| {row.figure} | {row.published} | {ours} | {row.holds} |")
    lines += ["", "## What differs from the published setup", "", outcome.differs.strip(), ""]
    if outcome.figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.name})" for p in outcome.figures]
        lines.append("")
    return "\n".join(lines)


def execute(run: Callable[[Context], Outcome], ctx: Context, default_data: str) -> dict:
    """Run one experiment: seed, time, write metrics.json and report.md; return metrics."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.data_given = ctx.data is not None
    ctx.data = ctx.data or default_data
    seed_everything(ctx.seed)
    if ctx.resume:
        ctx.units()  # a resume under other settings is refused now, before any work
    t0 = time.perf_counter()
    outcome = run(ctx)
    wall = time.perf_counter() - t0
    reused = ctx._units.reused_seconds if ctx._units is not None else 0.0
    metrics = _jsonable(
        {
            "experiment": ctx.name,
            "mode": ctx.mode,
            "data": ctx.data,
            **outcome.metrics,
            "options": ctx.options,
            # a full run with --arg overrides is not the full protocol: kept, marked partial
            "partial": ctx.mode == "full" and bool(ctx.options),
            # the compute time of the whole run: this process, plus what the units kept from
            # earlier (interrupted) processes of a --resume'd run took when they ran
            "wall_s": wall + reused,
            "wall_s_this_process": wall,
            "figures": [p.name for p in outcome.figures],
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            **({"units": ctx._units.summary()} if ctx._units is not None else {}),
            "run": run_info(seed=ctx.seed, device=ctx.device),
        }
    )
    metrics["table"] = [
        {
            "figure": r.figure,
            "published": r.published,
            "ours": fill(r.ours, metrics),
            "holds": r.holds,
            "template": r.ours,  # what the figure was filled from (tests re-fill it)
        }
        for r in outcome.rows
    ]
    (ctx.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (ctx.out / "report.md").write_text(render(outcome, metrics, ctx))
    return metrics


def make_context(
    name: str,
    *,
    out: Path | None,
    mode: Mode,
    device: str,
    data: str | None,
    seed: int,
    data_dir: Path | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    options: dict[str, Any] | None = None,
    console: Console | None = None,
    resume: bool = False,
) -> Context:
    return Context(
        name=name,
        out=out or Path("runs/experiments") / name,
        mode=mode,
        device=resolve_device(device),
        data=data,
        seed=seed,
        data_dir=data_dir,
        ray=ray or ray_address is not None,
        ray_address=ray_address,
        options=options or {},
        console=console or Console(),
        resume=resume,
    )
