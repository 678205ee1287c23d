"""``python -m bench browser``: the browser client (the page at ``/``, SEAL 4.1 in
WebAssembly) against the Python client (TenSEAL's SEAL, native), the same served plans, one
run: keygen, encrypt, server, decrypt, the whole round trip, and how long a fresh browser
profile takes from loading the page to its first result.

The browser is Debian's headless Chromium driven through the system chromedriver
(selenium); the tests use the same helpers (:func:`chromium`, :func:`run_page`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import report

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WAIT_S = 900


def chromium(profile: Path):
    """A headless Chromium on a fresh profile (the caller quits it)."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(DRIVER)))
    driver.set_window_size(1100, 1500)
    return driver


def run_page(driver, *, model: str, sample: int | None = None, batch: int | None = None):
    """Choose ``model``, then a shipped test image (``sample``) or a batch of ``batch``
    test images, press the button, wait → (predicted classes, the page's timings)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(driver, WAIT_S)
    wait.until(lambda d: d.find_element(By.ID, "model").is_enabled())
    Select(driver.find_element(By.ID, "model")).select_by_value(model)
    if batch is None:
        driver.find_element(By.ID, "tab-one").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#samples canvas")) == 12)
        driver.find_elements(By.CSS_SELECTOR, "#samples canvas")[sample].click()
    else:
        driver.find_element(By.ID, "tab-batch").click()
        field = driver.find_element(By.ID, "batch-n")
        field.clear()
        field.send_keys(str(batch))
    wait.until(ec.element_to_be_clickable((By.ID, "run"))).click()
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed()
               or d.find_element(By.ID, "error").is_displayed())  # fmt: skip
    error = driver.find_element(By.ID, "error")
    if error.is_displayed():
        raise RuntimeError(f"the page says: {error.text}")
    prediction = driver.find_element(By.ID, "prediction")
    timings = json.loads(driver.find_element(By.ID, "result").get_attribute("data-timings"))
    integers = prediction.get_attribute("data-integers")
    timings["integers"] = json.loads(integers) if integers else None
    timings["text"] = prediction.text
    return json.loads(prediction.get_attribute("data-classes")), timings


def samples(name: str) -> np.ndarray:
    """The page's shipped test images, as the page decodes them (uint8 / 255)."""
    import base64

    path = Path(__file__).resolve().parents[1] / f"server/web/static/samples/{name}.json"
    s = json.loads(path.read_text())
    raw = np.frombuffer(base64.b64decode(s["pixels_base64"]), dtype=np.uint8)
    return (raw.reshape(-1, *s["shape"]) / 255.0).astype(np.float64)


def _python(url: str, model: str, images: np.ndarray) -> dict:
    import crypto_nn
    from client.api import Client
    from client.session import run_images

    with Client(url) as c:
        t0 = time.perf_counter()
        keys = crypto_nn.client_for(c.model(model))
        public = keys.public_context()
        keygen = time.perf_counter() - t0
        t0 = time.perf_counter()
        key_id = c.register_key(public)
        register = time.perf_counter() - t0
        outcome = run_images(c, keys, model, key_id, images)
    return {"keygen_s": keygen, "register_s": register, **outcome.timings,
            "up": outcome.upload_bytes, "classes": outcome.logits.argmax(1).tolist()}  # fmt: skip


def run(*, checkpoint: Path, workdir: Path, batch: int = 4096) -> dict:
    from server.local import local_server

    models = workdir / "models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, models / checkpoint.name)
    name = checkpoint.stem
    pool = samples("fashion-mnist")
    result: dict = {"model": name, "batch": batch, "browser": {}, "python": {}}
    with local_server(models, workdir / "state", log=workdir / "server.log") as url:
        with tempfile.TemporaryDirectory() as profile:
            driver = chromium(Path(profile))
            try:
                t0 = time.perf_counter()
                driver.get(url + "/")
                _, first = run_page(driver, model=f"{name}-single", sample=0)
                result["page_to_first_result_s"] = time.perf_counter() - t0
                _, again = run_page(driver, model=f"{name}-single", sample=1)
                _, big = run_page(driver, model=name, batch=batch)
                result["browser"] = {"single_first": first, "single_kept": again, "batch": big}
                driver.save_screenshot(str(workdir / "browser-client.png"))
            finally:
                driver.quit()
        result["python"] = {
            "single": _python(url, f"{name}-single", pool[:1]),
            "batch": _python(url, name, np.resize(pool, (batch, *pool.shape[1:]))),
        }
    b, p = result["browser"], result["python"]
    trip = lambda t: t.get("encrypt_s", 0) + t.get("server_s", 0) + t.get("decrypt_s", 0)  # noqa: E731
    result["single_round_trip_ratio"] = trip(b["single_kept"]) / trip(p["single"])
    result["batch_encrypt_ratio"] = b["batch"]["encrypt_s"] / p["batch"]["encrypt_s"]
    return result


def table(r: dict) -> str:
    b, p = r["browser"], r["python"]

    def row(label, t, *, keygen=True):
        trip = t.get("encrypt_s", 0) + t.get("server_s", 0) + t.get("decrypt_s", 0)
        return [
            label,
            f"{t['keygen_s']:.2f} s" if keygen and "keygen_s" in t else "kept",
            f"{t['encrypt_s']:.2f} s",
            f"{t['server_s']:.2f} s",
            f"{t['decrypt_s']:.3f} s",
            f"{trip:.2f} s",
            f"{t['up'] / 1e6:.1f} MB",
        ]

    rows = [
        row("browser, CKKS single, first image (fresh profile)", b["single_first"]),
        row("browser, CKKS single, second image (keys kept)", b["single_kept"], keygen=False),
        row("Python client, CKKS single", p["single"]),
        row(f"browser, CKKS batch of {r['batch']}", b["batch"]),
        row(f"Python client, CKKS batch of {r['batch']}", p["batch"]),
    ]
    header = ["", "keygen", "encrypt", "server", "decrypt", "round trip", "upload"]
    return (
        f"Browser (headless Chromium, node-seal 7.0.0 = SEAL 4.1.2 wasm) vs Python client "
        f"(TenSEAL 0.3.18), {r['model']}\n\n"
        + report.markdown_table(header, rows)
        + f"\npage load → first result on a fresh profile: {r['page_to_first_result_s']:.1f} s; "
        f"single round trip browser / Python: {r['single_round_trip_ratio']:.2f}×; "
        f"batch encryption browser / Python: {r['batch_encrypt_ratio']:.2f}×\n"
    )
