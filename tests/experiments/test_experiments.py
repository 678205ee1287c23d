"""Every experiment in its tiny mode: the files exist, the report's table is the one in
metrics.json, and every figure in the "ours" column is filled from metrics.json's values
(no number typed into a template)."""

import json
import re

import psutil
import pytest
from rich.console import Console

import experiments
from experiments.core import execute, fill, make_context, verdict
from experiments.grid import run_cells
from nets.errors import UserError


def _square(*, x: int) -> int:
    return x * x


# table-3-1's tiny run starts the server and compiles CKKS and BFV plans (455 s on 2 cores):
# its pieces are covered by tests/crypto_nn (bench he, logreg); the whole runs with -m slow.
TINY = [
    pytest.param(n, marks=pytest.mark.slow) if n == "table-3-1" else n for n in experiments.names()
]


@pytest.mark.parametrize("name", TINY)
def test_tiny_run_writes_metrics_report_and_figures_from_metrics(name, tmp_path):
    exp = experiments.get(name)
    ctx = make_context(name, out=tmp_path / name, mode="tiny", device="cpu", data=None, seed=0,
                       console=Console(quiet=True))  # fmt: skip
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    execute(exp.run, ctx, exp.data)
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"{name} left processes running: {left}"

    out = tmp_path / name
    metrics = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    for key in ("seed", "versions", "device"):
        assert key in metrics["run"]
    assert metrics["mode"] == "tiny" and metrics["wall_s"] > 0
    for png in metrics["figures"]:
        assert (out / png).stat().st_size > 1000, png
        assert f"]({png})" in report
    assert metrics["table"], "an experiment reports at least one row"
    lines = [ln for ln in report.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(lines) == len(metrics["table"])
    for row, line in zip(metrics["table"], lines, strict=True):
        assert row["holds"] in ("yes", "no", "partly") or row["holds"].startswith("n/a")
        # the figure comes from metrics.json as written: re-filling the template gives it
        assert fill(row["template"], metrics) == row["ours"]
        assert row["ours"].replace("|", "/") in line
        # no number is typed by hand: outside the {placeholders} digits only end names (L2, N1)
        literal = re.sub(r"\{[^}]*\}", "", row["template"])
        if not row["ours"].startswith(("refused", "skipped")):
            typed = re.search(r"(?<![A-Za-z])\d", literal)
            assert not typed, f"{name}: hand-typed number in {row['template']!r}"


def test_fill_reads_nested_paths_and_lists():
    metrics = {"a": {"b": 0.12345, "c": [1.5, 2.5]}, "n": None}
    assert fill("{a.b:.2f} and {a.c.1:.1f}", metrics) == "0.12 and 2.5"
    assert fill("{n:.2f}", metrics) == "—"
    with pytest.raises(KeyError):
        fill("{a.missing}", metrics)


def test_verdict_says_partly_when_some_checks_hold():
    assert verdict(True, True) == "yes"
    assert verdict(False, False) == "no"
    assert verdict(True, False) == "partly"


def test_grid_cells_give_the_same_results_on_ray_and_in_sequence():
    cells = [{"x": i} for i in range(4)]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert run_cells(_square, cells, ray=True) == run_cells(_square, cells) == [0, 1, 4, 9]
    gone, alive = psutil.wait_procs(
        [psutil.Process(p) for p in {q.pid for q in psutil.Process().children(recursive=True)}
         - before if psutil.pid_exists(p)], timeout=20)  # fmt: skip
    assert not alive, "Ray left worker processes behind"


def test_unknown_experiment_and_option_are_clear_errors():
    from experiments.cli import app
    from nets.cli_util import run_app

    assert run_app(app, ["run", "no-such-experiment"]) == 1
    assert run_app(app, ["run", "free-at", "--arg", "bogus=1"]) == 1
    assert run_app(app, ["list"]) == 0


UNIT_SCRIPT = """
import signal, sys, time
# Ctrl-C raises KeyboardInterrupt even when this was started with SIGINT ignored (a
# background job of a non-interactive shell inherits SIG_IGN, and Python keeps it)
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from experiments.units import Units
units = Units(Path(sys.argv[1]), resume=sys.argv[2] == "resume")
for i in range(40):  # 4 s in all: a loaded machine still interrupts it part-way
    units.run(f"cell-{i}", lambda i=i: (time.sleep(0.1), {"i": i, "square": i * i})[1])
print(units.computed, units.reused)
"""


def test_a_killed_run_loses_at_most_the_unit_in_progress(tmp_path):
    """SIGINT mid-run: every unit on disk is whole, and --resume recomputes only the rest."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "units.py"
    script.write_text(UNIT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "fresh"])
    folder = tmp_path / "units"
    deadline = time.monotonic() + 60
    while len(list(folder.glob("*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) != 0  # interrupted, not finished
    kept = sorted(folder.glob("*.json"))
    assert 3 <= len(kept) < 40 and not list(folder.glob("*.tmp"))
    for path in kept:
        i = json.loads(path.read_text())["i"]
        assert path.name == f"cell-{i}.json"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "resume"], capture_output=True, text=True
    )
    computed, reused = map(int, done.stdout.split())
    assert reused == len(kept) and computed == 40 - len(kept)
    fresh = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "fresh"], capture_output=True, text=True
    )
    assert fresh.stdout.split() == ["40", "0"]  # without --resume nothing is kept


def test_index_and_measured_times_come_from_committed_metrics(tmp_path):
    from experiments.index import measured_minutes, write_index

    base = {"data": "mnist-5k", "date": "2026-12-06", "machine": "2 CPU cores",
            "run": {"device": "cpu"}, "table": [{"holds": "yes"}, {"holds": "no"}]}  # fmt: skip
    runs = {"a": {"mode": "full", "wall_s": 150.0}, "b": {"mode": "full", "wall_s": 90.0,
            "partial": True}, "c": {"mode": "quick", "wall_s": 30.0}}  # fmt: skip
    for name, extra in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({"experiment": name, **base, **extra})
        )
    assert measured_minutes(tmp_path / "a") == 2.5
    assert measured_minutes(tmp_path / "b") is None  # partial: not a full run's time
    assert measured_minutes(tmp_path / "c") is None and measured_minutes(tmp_path / "x") is None
    text = write_index(tmp_path).read_text()
    assert "| [a](a/report.md) | full (complete) | mnist-5k | 2.5 |" in text
    assert "full (partial)" in text and "1 yes, 1 no" in text


def test_an_unfinished_run_publishes_its_kept_units_as_partial(tmp_path):
    from experiments import partial
    from experiments.index import write_index
    from experiments.units import Units

    run = tmp_path / "results" / "slow"
    config = {"experiment": "plasticity", "mode": "full", "data": "mnist-5k", "seed": 0,
              "options": {"steps": 40}}  # fmt: skip
    units = Units(run, resume=False, config=config)
    units.put("protocol-shallow", {"test_after": 97.1, "autoattack": {"robust": 0.955}}, 60.0)
    metrics = partial.publish(run, missing="the deep model's unit")
    assert metrics["partial"] and metrics["wall_s"] == 60.0
    assert metrics["kept_units"]["protocol-shallow"]["autoattack"]["robust"] == 0.955
    report = (run / "report.md").read_text()
    assert "**partial**" in report and "the deep model's unit" in report
    assert "| autoattack.robust | 0.955 |" in report
    assert (
        "plasticity](slow/report.md) | full (partial) | mnist-5k | 1.0 |"
        in write_index(run.parent).read_text()
    )
    with pytest.raises(UserError, match="no units/config.json"):
        partial.publish(tmp_path, missing="x")


def test_resume_keeps_every_finished_unit_and_gives_the_same_figures(tmp_path):
    """generator's parts (trained weights, grid, success before/after) are units: a run
    resumed after it finished recomputes none of them, and its table is the same."""
    exp = experiments.get("generator")

    def once(resume: bool, seed: int = 0) -> dict:
        ctx = make_context("generator", out=tmp_path, mode="tiny", device="cpu", data=None,
                           seed=seed, console=Console(quiet=True), resume=resume)  # fmt: skip
        return execute(exp.run, ctx, exp.data)

    first, again = once(False), once(True)
    assert first["units"]["units_reused"] == 0 and again["units"]["units_computed"] == 0
    assert again["units"]["units_reused"] == first["units"]["units_computed"] >= 4
    assert [r["ours"] for r in again["table"]] == [r["ours"] for r in first["table"]]
    # the wall time counts what the kept units took when they ran
    assert again["wall_s"] >= again["units"]["units_reused_seconds"] > 0
    assert "Resumed: " in (tmp_path / "report.md").read_text()
    # units computed under other settings are never mixed in: the resume is refused
    with pytest.raises(UserError, match="computed with"):
        once(True, seed=1)


def test_a_partial_run_says_so_in_its_report_header():
    from experiments.core import _partial

    assert _partial({"partial": True, "options": {"images": 30}}) == " (**partial**: images=30)"
    assert _partial({"partial": False, "options": {}}) == ""
