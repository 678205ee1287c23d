import sys

from experiments.cli import app
from nets.cli_util import run_app

sys.exit(run_app(app))
