"""``python -m server --host 127.0.0.1 --port 8000 --models DIR --state DIR [--token T]``."""

import sys

from nets.cli_util import run_app
from server.cli import app

sys.exit(run_app(app))
