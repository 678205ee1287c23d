"""Mutated payloads: truncated, bit-flipped, lying headers. Never a 5xx, never a dead worker."""

import json

import numpy as np

from crypto_nn import context as ctx_format
from crypto_nn import framing
from nets import data

OK = {200, 201, 400, 404, 413, 422}


def _mutations(blob: bytes, rng: np.random.Generator, count: int):
    for k in range(count):
        kind = k % 4
        if kind == 0:  # truncated
            yield blob[: int(rng.integers(0, len(blob)))]
        elif kind == 1:  # a few bits flipped anywhere
            b = bytearray(blob)
            for pos in rng.integers(0, len(b), size=int(rng.integers(1, 8))):
                b[pos] ^= 1 << int(rng.integers(0, 8))
            yield bytes(b)
        elif kind == 2:  # flipped inside the first 200 bytes (headers, SEAL metadata)
            b = bytearray(blob)
            b[int(rng.integers(0, min(200, len(b))))] ^= 0xFF
            yield bytes(b)
        else:  # random junk of a plausible size
            yield rng.bytes(int(rng.integers(1, 5000)))


def test_mutated_contexts(api, client_keys):
    rng = np.random.default_rng(0)
    valid = client_keys(api).public_context()
    header_end = valid.index(b"\n", len(ctx_format.MAGIC))
    header = json.loads(valid[len(ctx_format.MAGIC) : header_end])
    header["parts"][0][1] = 2**62  # declares an absurd part size
    liar = ctx_format.MAGIC + json.dumps(header).encode() + valid[header_end:]
    statuses = [
        api.post("/v1/keys", content=body).status_code
        for body in [liar, *_mutations(valid, rng, 120)]
    ]
    assert set(statuses) <= OK, sorted(set(statuses))
    assert api.get("/healthz").status_code == 200


def test_mutated_ciphertext_lists(api, client_keys):
    rng = np.random.default_rng(1)
    keys = client_keys(api)
    key_id = api.post("/v1/keys", content=keys.public_context()).json()["key_id"]
    cts = keys.encrypt_batch(data.load("digits", "test").images[:4])
    url = "/v1/models/digits-mlp/infer"
    statuses = []
    for body in _mutations(framing.pack(cts), rng, 24):
        statuses.append(api.post(url, params={"key_id": key_id}, content=body).status_code)
    for _, bad in zip(range(8), _mutations(cts[5], rng, 8), strict=False):
        mutated = cts[:5] + [bad] + cts[6:]
        statuses.append(
            api.post(url, params={"key_id": key_id}, content=framing.pack(mutated)).status_code
        )
    assert set(statuses) <= OK, sorted(set(statuses))
    good = api.post(url, params={"key_id": key_id}, content=framing.pack(cts))
    assert good.status_code == 200  # the workers survived everything above
