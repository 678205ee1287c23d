"""The page in a real browser: Debian's headless Chromium driven by selenium through the
system chromedriver, against a live server. Pick a test image, press the button, wait:
the predicted class equals the Python client's; the second query skips keygen; the
server's upload log shows no secret key."""

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

import crypto_nn
from bench.browser import CHROMIUM, DRIVER, chromium, run_page, samples
from client.api import Client
from client.session import run_images

ROOT = Path(__file__).resolve().parents[2]
NODE_SEAL = ROOT / "server/web/node_modules/node-seal/dist/seal_throws.wasm"
SHOTS = ROOT / "runs" / "browser"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency")
    if not (CHROMIUM.is_file() and DRIVER.is_file()):
        pytest.skip("no headless browser: apt-get install -y chromium chromium-driver (make setup)")
    if not NODE_SEAL.is_file():
        pytest.skip("node-seal is not installed: make web")
    driver = chromium(tmp_path_factory.mktemp("profile"))
    yield driver
    driver.quit()


def _python(url: str, model: str, images: np.ndarray):
    with Client(url) as c:
        desc = c.model(model)
        keys = crypto_nn.client_for(desc)
        return run_images(c, keys, model, c.register_key(keys.public_context()), images)


def _python_predictions(url: str, model: str, images: np.ndarray) -> list[int]:
    return _python(url, model, images).logits.argmax(1).tolist()


def test_the_page_classifies_like_the_python_client(browser, web_server):
    url, _, log = web_server
    images = samples("digits")
    t0 = time.perf_counter()
    browser.get(url + "/")
    single, first = run_page(browser, model="digits-mlp-single", sample=3)
    first["page_to_first_result_s"] = time.perf_counter() - t0
    assert single == _python_predictions(url, "digits-mlp-single", images[3:4])
    assert not first["keysKept"] and first["keygen_s"] > 0
    again, second = run_page(browser, model="digits-mlp-single", sample=7)
    assert again == _python_predictions(url, "digits-mlp-single", images[7:8])
    assert second["keysKept"] and "keygen_s" not in second  # kept in IndexedDB
    # the Python client's registration evicted the page's key (one key at a time, see
    # conftest): the page registered its kept keys again, once, and went on
    assert second["register_s"] > 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "browser-client.png"))
    batch, _ = run_page(browser, model="digits-mlp", batch=16)
    assert batch == _python_predictions(url, "digits-mlp", images[:16])
    _, exact = run_page(browser, model="digits-relu-bfv", batch=16)  # client-aided
    assert "bit-exact integer logits" in exact["text"]
    python = _python(url, "digits-relu-bfv", images[:16])
    assert [[int(v) for v in row] for row in exact["integers"]] == python.logits.tolist()
    (SHOTS / "timings.json").write_text(json.dumps({"first": first, "second": second}))
    lines = log.read_text().splitlines()
    contexts = [line for line in lines if "server.uploads: context from" in line]
    assert len(contexts) >= 2  # the page's two registrations (single, batch) + Python's
    for line in contexts:  # every part the server ever received, by name and size
        names = re.findall(r"\['(\w+(?:\.\d+)?)', \d+\]", line)
        kinds = {name.partition(".")[0] for name in names}  # BFV: one part per prime (.i)
        assert names and kinds <= {"params", "relin_keys", "galois_keys"}, line
    assert any("seal 4.1" in line for line in contexts)
    uploads = [line for line in lines if "server.uploads: ciphertexts for" in line]
    assert len(uploads) >= 4
