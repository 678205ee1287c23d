"""Every command line answers a usage error (unknown option, missing argument) with one line
on stderr and exit code 2 — never a traceback, whichever click typer vendors."""

import importlib
import subprocess
import sys

import pytest

from nets.cli_util import run_app

# (package, a command with an option it does not take, a command missing its argument)
CASES = [
    ("nets", ["train", "--bogus"], ["eval"]),
    ("integer_nn", ["quantize", "--bogus"], ["quantize"]),
    ("adversarial", ["attack", "--bogus"], ["attack"]),
    ("bench", ["he", "--nope"], ["he", "--n"]),
    ("client", ["infer", "boot.png", "--keys", "K", "--server", "U"], ["infer"]),
    ("experiments", ["list", "--bogus"], ["run"]),
    ("server", ["--bogus"], ["--port"]),
]


@pytest.mark.parametrize(("package", "bad_option", "missing"), CASES, ids=[c[0] for c in CASES])
def test_usage_error_is_one_line_and_exit_2(package, bad_option, missing, capsys):
    app = importlib.import_module(f"{package}.cli").app
    for argv, says in ((bad_option, ("No such option",)), (missing, ("Missing", "requires an"))):
        assert run_app(app, argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and any(word in err for word in says), err
        assert len(err.splitlines()) == 1, err


def test_usage_error_through_python_m():
    """The real entry point: the process prints one line and exits 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "nets", "train", "--bogus"], capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: No such option: --bogus (Possible options: --out) (see --help)"
    ]
