"""Mutated payloads: truncated, bit-flipped, lying headers. Never a 5xx, never a dead worker."""

import json

import numpy as np

from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import framing
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


def _zstd_bomb(like: bytes, inflated_gib: int = 1) -> bytes:
    """A SEAL header copied from ``like`` over a zstd frame that inflates to GiBs of zeros."""
    import struct

    import zstandard

    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(64 << 20)
    body = b"".join(compressor.compress(zeros) for _ in range(16 * inflated_gib))
    body += compressor.flush()
    header = bytearray(like[:16])
    header[8:16] = struct.pack("<Q", 16 + len(body))
    return bytes(header) + body


def _rss_mb(pid: int) -> float:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_zstd_decompression_bombs_are_refused_without_inflating(api, client_keys):
    keys = client_keys(api)
    public = keys.public_context()
    _, parts = ctx_format.unpack(public)
    bomb_ctx = ctx_format.pack(
        "ckks", {"params": _zstd_bomb(parts["params"]), "relin_keys": parts["relin_keys"]}
    )
    assert len(bomb_ctx) < 2_000_000  # a small upload that would inflate to 1 GiB
    refused = api.post("/v1/keys", content=bomb_ctx)
    assert refused.status_code == 422, refused.text
    key_id = api.post("/v1/keys", content=public).json()["key_id"]
    cts = keys.encrypt_batch(data.load("digits", "test").images[:2])
    url = "/v1/models/digits-mlp/infer"
    assert api.post(url, params={"key_id": key_id}, content=framing.pack(cts)).status_code == 200
    worker_pid = api.app.state.services.workers.pids()[0]
    before = _rss_mb(worker_pid)
    bombed = [_zstd_bomb(cts[0])] + cts[1:]
    response = api.post(url, params={"key_id": key_id}, content=framing.pack(bombed))
    assert response.status_code == 422 and "unfolds past" in response.json()["detail"]
    assert _rss_mb(worker_pid) - before < 100  # refused from the header, never inflated
