"""One live server for the web tests (Node and Chromium): the x² digits MLP and a ReLU one
(its BFV plan is client-aided), compiled once."""

import shutil

import pytest

from server.local import local_server


@pytest.fixture(scope="session")
def web_server(tmp_path_factory, square_mlp_checkpoint, digits_mlp_trainer):
    """→ (base URL, its folder, its log file)."""
    folder = tmp_path_factory.mktemp("web")
    (folder / "models").mkdir()
    shutil.copy(square_mlp_checkpoint, folder / "models" / "digits-mlp.pt")
    digits_mlp_trainer(folder / "models" / "digits-relu.pt", act="relu", seed=0, epochs=8)
    log = folder / "server.log"
    # one key at a time: each registration evicts the one before, so a page whose kept key
    # was evicted must register again by itself (the browser test checks it does)
    env = {"CRYPTOROBUST_MAX_KEYS": "1"}
    with local_server(folder / "models", folder / "state", log=log, env=env) as url:
        yield url, folder, log
