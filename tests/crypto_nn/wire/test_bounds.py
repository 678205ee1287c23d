"""Every wire parser under hostile bytes: decompression bounded by what the object can hold
before anything is allocated, exactly one frame, no byte SEAL does not load, the metadata
SEAL checks — and nothing but :class:`ContextError` ever escapes.

Memory is measured two ways: ``tracemalloc`` per call (every Python-side buffer, the
decompressor's output included) and the process's peak RSS over a whole fuzz run (SEAL's
own allocations, which tracemalloc cannot see)."""

from __future__ import annotations

import contextlib
import math
import struct
import tracemalloc

import numpy as np
import pytest
import tenseal.sealapi as seal
import zstandard
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crypto_nn.errors import ContextError
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import framing, inflate, residues, seal_bytes, seeded
from crypto_nn.wire.key_checks import KeySpec
from server.keycheck import PlanNeeds, check_context
from tests.server.hostile import declaring, rle_bomb

MiB = 1 << 20
CKKS = KeySpec("ckks", 4096, (40, 20, 40), relin=True, rotations=(1, 2))
BFV_T = seal.PlainModulus.Batching(4096, 20).value()
BFV = KeySpec(
    "bfv", 4096, (36, 36, 37), plain_modulus=BFV_T, relin=True, rotations=(1,), suffix=".0"
)
CKKS_SCALE = 2.0**20


def _zstd(body: bytes, *, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(write_content_size=content_size).compress(body)


def _seal(like: bytes, body: bytes, compression: int) -> bytes:
    """A SEAL header copied from ``like`` over ``body`` in ``compression`` mode."""
    head = bytearray(like[:16])
    head[5] = compression
    head[8:16] = struct.pack("<Q", 16 + len(body))
    return bytes(head) + body


class Objects:
    """Real SEAL objects of one key spec, as a client sends them."""

    def __init__(self, spec: KeySpec) -> None:
        self.spec = spec
        self.context = spec.seal_context()
        keygen = seal.KeyGenerator(self.context)
        self.secret = seal_bytes.dumps(keygen.secret_key())
        plain = seal.Plaintext()
        if spec.scheme == "ckks":
            seal.CKKSEncoder(self.context).encode([0.25] * 8, CKKS_SCALE, plain)
        else:
            seal.BatchEncoder(self.context).encode([3] * 8, plain)
        encryptor = seal.Encryptor(self.context, keygen.secret_key())
        self.seeded = seal_bytes.dumps(encryptor.encrypt_symmetric(plain))
        self.full = seal_bytes.dumps(
            seal_bytes.loads(seal.Ciphertext, self.seeded, self.context, what="input")
        )
        elements = [
            self.context.key_context_data().galois_tool().get_elt_from_step(s)
            for s in spec.rotations
        ]
        s = spec.suffix
        self.parts = {
            "params" + s: seal_bytes.dumps(spec.seal_parameters()),
            "relin_keys" + s: seal_bytes.dumps(keygen.create_relin_keys()),
            "galois_keys" + s: seal_bytes.dumps(keygen.create_galois_keys(elements)),
        }
        self.scale = CKKS_SCALE if spec.scheme == "ckks" else 1.0
        self.most = seal_bytes.bound(seal.Ciphertext, self.context, size=2)

    def context_bytes(self, parts: dict[str, bytes] | None = None) -> bytes:
        return ctx_format.pack(self.spec.scheme, parts or self.parts, client="ab" * 16)

    def needs(self) -> list[PlanNeeds]:
        return [PlanNeeds(f"{self.spec.scheme}-plan", self.spec.scheme, (self.spec,))]


@pytest.fixture(scope="module", params=["ckks", "bfv"])
def objects(request) -> Objects:
    return Objects(CKKS if request.param == "ckks" else BFV)


def _parsers(o: Objects):
    """Every reader of a client's ciphertext bytes, with the bound it promises."""
    return {
        "inflate.body": (lambda b: inflate.body(b, o.most), o.most),
        "residues.parse": (lambda b: residues.parse(b, most=o.most), o.most),
        "seeded.split": (lambda b: seeded.split(b, o.most), o.most),
        "SeededInputs.parse": (
            lambda b: seeded.SeededInputs.parse(o.context, [b], scale=o.scale),
            2 * o.most,
        ),
        "load_fresh_ciphertexts": (
            lambda b: seal_bytes.load_fresh_ciphertexts(o.context, [b], scale=o.scale),
            2 * o.most,
        ),
    }


def _only_context_errors_within(o: Objects, blob: bytes) -> None:
    for name, (parse, bound) in _parsers(o).items():
        tracemalloc.start()
        try:
            parse(blob)
        except ContextError:
            pass
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak <= bound + MiB, (name, peak, bound)


# --- 1: bounded before allocating, one frame, only ContextError ---------------------------
def test_bombs_are_refused_before_they_inflate(objects):
    o = objects
    bombs = {
        "declares 2 GiB": declaring(2 << 30),
        "declares 2^50 bytes": declaring(1 << 50),
        "declares 2^64-2 bytes": declaring((1 << 64) - 2),
        "32 GiB of RLE blocks, no size declared": rle_bomb(32),
        "64 MB of zeros, no size declared": _zstd(bytes(64 * MiB), content_size=False),
    }
    for why, frame in bombs.items():
        blob = _seal(o.seeded, frame, inflate.ZSTD)
        assert len(blob) < 2 * MiB, why
        for parse, _ in _parsers(o).values():
            with pytest.raises(ContextError, match="fit|unfolds past|declares"):
                parse(blob)
        _only_context_errors_within(o, blob)
    # a key part: the same refusal before SEAL sees it
    for part in o.parts:
        bombed = o.context_bytes({**o.parts, part: _seal(o.parts[part], rle_bomb(2), 2)})
        with pytest.raises(ContextError, match="fit|unfolds past|declares"):
            check_context(bombed, o.needs())


def test_exactly_one_frame_and_nothing_after_it(objects):
    o = objects
    _, body = inflate.body(o.seeded, o.most)
    frame = _zstd(body)
    skippable = struct.pack("<II", 0x184D2A50, 8) + o.secret[:8]
    assert (
        seeded.split(_seal(o.seeded, frame, 2), o.most)[0].k == len(o.spec.coeff_mod_bit_sizes) - 1
    )
    hostile = {
        "a second frame": frame + _zstd(o.secret),
        "a skippable frame after": frame + skippable,
        "a skippable frame before": skippable + frame,
        "bytes after the frame": frame + o.secret,
        "a truncated frame": frame[:-7],
    }
    for why, raw in hostile.items():
        with pytest.raises(ContextError):
            inflate.body(_seal(o.seeded, raw, 2), o.most)
        with pytest.raises(ContextError):  # SEAL never sees it either
            seal_bytes.loads(seal.Ciphertext, _seal(o.seeded, raw, 2), o.context, what=why)


def test_memory_error_from_a_frame_is_a_context_error(monkeypatch, objects):
    def no_memory(*_, **__):
        raise MemoryError

    assert objects.seeded[5] == inflate.ZSTD
    monkeypatch.setattr(inflate, "_ZSTD", type("NoMemory", (), {"decompress": no_memory})())
    with pytest.raises(ContextError, match="memory"):
        inflate.body(objects.seeded, objects.most)


# --- 2: no stored part holds bytes SEAL did not load -------------------------------------
def test_a_secret_key_inside_any_compressed_part_is_refused(objects):
    o = objects
    checked = check_context(o.context_bytes(), o.needs())
    _, stored = ctx_format.unpack(checked.context)
    assert stored == o.parts  # honest parts are stored as sent: every byte was loaded
    for part, blob in o.parts.items():
        _, body = inflate.body(blob, 1 << 30)
        for how, raw in {
            "after the members, in the same frame": _zstd(body + o.secret),
            "as zeros after the members": _zstd(body + bytes(2 * MiB), content_size=False),
            "as a second frame": _zstd(body) + _zstd(o.secret),
        }.items():
            smuggled = o.context_bytes({**o.parts, part: _seal(blob, raw, 2)})
            with pytest.raises(ContextError):
                check_context(smuggled, o.needs())
                pytest.fail(f"{part}: a secret key {how} was accepted")
        uncompressed = _seal(blob, body + o.secret, 0)  # no compression: SEAL's own check
        with pytest.raises(ContextError, match="invalid data size|corrupt|fit"):
            check_context(o.context_bytes({**o.parts, part: uncompressed}), o.needs())


# --- 3: seeded inputs' metadata as SEAL checks it, and the plan's scale ---------------------
def _with_meta(blob: bytes, **changes) -> bytes:
    version, body = inflate.body(blob, 1 << 30)
    fields = list(residues.BODY.unpack_from(body))
    index = {"ntt": 4, "size": 5, "n": 6, "k": 7, "scale": 8, "correction": 9}
    for name, value in changes.items():
        fields[index[name]] = value
    body = residues.BODY.pack(*fields) + body[residues.BODY.size :]
    return _seal(blob, _zstd(body), 2)


@pytest.mark.parametrize(
    "changes",
    [
        {"scale": 0.0},
        {"scale": -1.0},
        {"scale": math.inf},
        {"scale": math.nan},
        {"scale": 2.0**200},
        {"scale": 2.0},
        {"correction": 2},
        {"correction": 0},
    ],
    ids=str,
)
def test_seeded_metadata_seal_or_the_plan_would_refuse_is_refused(objects, changes):
    o = objects
    hostile = _with_meta(o.seeded, **changes)
    with pytest.raises(ContextError, match="scale|correction"):
        seeded.SeededInputs.parse(o.context, [hostile], scale=o.scale)
    with pytest.raises(ContextError):
        seal_bytes.load_fresh_ciphertexts(o.context, [_with_meta(o.full, **changes)], scale=o.scale)


def test_the_other_form_is_refused(objects):
    o = objects
    _, body = inflate.body(o.seeded, o.most)
    ntt = residues.BODY.unpack_from(body)[4]
    with pytest.raises(ContextError, match="fresh ciphertext"):
        seeded.SeededInputs.parse(o.context, [_with_meta(o.seeded, ntt=1 - ntt)], scale=o.scale)


# --- 4: a structure-aware fuzz of every parser -------------------------------------------
MUTATIONS = (
    "declared",
    "compression",
    "frame_size",
    "append",
    "prepend_skippable",
    "truncate",
    "flip",
    "meta",
    "count",
    "framing",
    "context",
)


@st.composite
def hostile_blobs(draw, o: Objects):
    """A real object with one structural lie: sizes, modes, frames, metadata, counts."""
    blob = bytearray(draw(st.sampled_from([o.seeded, o.full])))
    kind = draw(st.sampled_from(MUTATIONS))
    u64 = st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, 1 << 31, 1 << 50]))
    if kind == "declared":
        blob[8:16] = struct.pack("<Q", draw(u64))
    elif kind == "compression":
        blob[5] = draw(st.integers(0, 255))
    elif kind == "frame_size":
        blob = bytearray(_seal(blob, declaring(draw(u64)), 2))
    elif kind == "append":
        extra = draw(st.sampled_from([_zstd(o.secret), o.secret, b"\0" * 9, rle_bomb(1)]))
        blob = bytearray(_seal(blob, bytes(blob[16:]) + extra, blob[5]))
    elif kind == "prepend_skippable":
        blob = bytearray(_seal(blob, struct.pack("<II", 0x184D2A50, 3) + b"abc" + blob[16:], 2))
    elif kind == "truncate":
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "meta":
        field = draw(st.sampled_from(["ntt", "size", "n", "k", "scale", "correction"]))
        value = (
            draw(st.floats(allow_nan=True, allow_infinity=True))
            if field == "scale"
            else draw(st.sampled_from([0, 1, 2, 3, 17, 4096, 1 << 20, 1 << 40, (1 << 64) - 1]))
        )
        if field == "ntt":
            value = draw(st.integers(0, 255))
        blob = bytearray(_with_meta(bytes(blob), **{field: value}))
    elif kind == "count":  # the coefficient array's own count
        version, body = inflate.body(bytes(blob), 1 << 30)
        at = residues.BODY.size + residues.HEADER.size
        body = body[:at] + struct.pack("<Q", draw(u64)) + body[at + 8 :]
        blob = bytearray(_seal(blob, _zstd(body), 2))
    return kind, bytes(blob)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(data=st.data())
def test_fuzz_every_wire_parser_only_context_errors_within_bounds(objects, data):
    o = objects
    kind, blob = data.draw(hostile_blobs(o))
    event(kind)
    if kind == "framing":  # a ciphertext list cut short or followed by other bytes
        listed = framing.pack([o.seeded, o.seeded])
        sent = (
            listed[: data.draw(st.integers(0, len(listed)))] + blob[: data.draw(st.integers(0, 64))]
        )
        try:
            _, payloads = framing.unpack(sent, nonempty=True)
        except ContextError:
            return
        assert sent == listed and payloads == [o.seeded, o.seeded]
        return
    if kind == "context":  # the same lies inside a key part
        part = data.draw(st.sampled_from(sorted(o.parts)))
        with pytest.raises(ContextError):
            check_context(o.context_bytes({**o.parts, part: blob}), o.needs())
        return
    _only_context_errors_within(o, blob)


def test_a_whole_fuzz_run_stays_under_the_memory_ceiling(objects):
    """SEAL's own allocations (invisible to tracemalloc): the process's peak RSS over a
    few hundred hostile objects grows by less than 64 MB."""
    o = objects
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    rng = np.random.default_rng(0)
    lies = [declaring(1 << 40), rle_bomb(4), _zstd(bytes(8 * MiB), content_size=False)]
    for i in range(200):
        blob = bytearray(o.seeded if i % 2 else o.full)
        blob[rng.integers(16, len(blob))] ^= 1 << int(rng.integers(0, 8))
        for candidate in (bytes(blob), _seal(o.seeded, lies[i % len(lies)], 2)):
            for parse, _ in _parsers(o).values():
                with contextlib.suppress(ContextError):
                    parse(candidate)
    assert _status("VmHWM") - before < 64 * MiB


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(key)
