import sys

from adversarial import defense_cli  # noqa: F401  (registers defend, certify, cleanse)
from adversarial.cli import app
from nets.cli_util import run_app

sys.exit(run_app(app))
