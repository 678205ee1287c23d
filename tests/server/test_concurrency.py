"""8 concurrent clients × 25 encrypted requests against a live server: 0 failures."""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from client.api import Client
from crypto_nn.ckks.client import CkksClient
from crypto_nn.ckks.plan import CkksClientPlan
from nets import data
from server.local import local_server


@pytest.mark.slow
def test_eight_clients_twenty_five_requests_each(models_dir, tmp_path):
    images = data.load("digits", "test").images[:16]
    with local_server(models_dir, tmp_path / "state") as url:

        def one_client(k: int) -> list[float]:
            with Client(url, retries=60) as client:
                keys = CkksClient(CkksClientPlan.from_description(client.model("digits-mlp")))
                key_id = client.register_key(keys.public_context())
                cts = keys.encrypt_batch(images)
                expected = None
                latencies = []
                for _ in range(25):
                    t0 = time.perf_counter()
                    logits = keys.decrypt_batch(
                        client.infer("digits-mlp", key_id, cts), len(images)
                    )
                    latencies.append(time.perf_counter() - t0)
                    pred = logits.argmax(1)
                    expected = pred if expected is None else expected
                    assert np.array_equal(pred, expected)
                return latencies

        with ThreadPoolExecutor(8) as pool:
            latencies = [t for result in pool.map(one_client, range(8)) for t in result]
    assert len(latencies) == 200
    p50, p99 = statistics.median(latencies), float(np.percentile(latencies, 99))
    print(f"\n200 requests from 8 clients: 0 failures, p50 {p50:.2f} s, p99 {p99:.2f} s")
