import sys

from adversarial import (  # noqa: F401  (register defend, certify, backdoor, cleanse, evaluate)
    backdoor_cli,
    defense_cli,
    evaluate_cli,
)
from adversarial.cli import app
from nets.cli_util import run_app

sys.exit(run_app(app))
