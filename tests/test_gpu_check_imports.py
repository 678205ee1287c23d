"""scripts/gpu-check.sh runs on the lent GPU machine, whose image has torch, numpy, scipy,
numba, rich and typer but not TenSEAL, zstandard, mlxtend, FastAPI or uvicorn (device
KINDS.md): what the check imports must load without them (a dry run found TenSEAL pulled
in by the experiment registry)."""

import subprocess
import sys

ABSENT = ("tenseal", "zstandard", "mlxtend", "fastapi", "uvicorn", "selenium", "ray")
IMPORTS = ("experiments", "bench.attacks", "bench.cli", "adversarial.defense_cli")


def test_the_gpu_checks_commands_import_without_the_he_stack():
    code = (
        "import sys\n"
        f"for name in {ABSENT!r}: sys.modules[name] = None\n"
        "import importlib\n"
        f"for mod in {IMPORTS!r}: importlib.import_module(mod)\n"
        "import experiments; experiments._load_all()\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
