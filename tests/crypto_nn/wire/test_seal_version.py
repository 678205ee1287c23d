"""SEAL 4.1 ↔ 4.3 version headers: every object that crosses, both schemes, walked to its
last byte; hostile bytes are a ContextError and nothing else."""

import numpy as np
import pytest
import tenseal.sealapi as seal
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto_nn.ckks.params import CkksParams
from crypto_nn.errors import ContextError
from crypto_nn.wire import seal_bytes, seal_version
from crypto_nn.wire.seal_version import BROWSER_MINOR, SERVER_MINOR, translate

BIG = 1 << 30


def _bfv_context():
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(4096)
    parms.set_coeff_modulus(seal.CoeffModulus.BFVDefault(4096, seal.SEC_LEVEL_TYPE.TC128))
    parms.set_plain_modulus(seal.PlainModulus.Batching(4096, 20))
    return parms, seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)


@pytest.fixture(scope="module")
def objects():
    """Every kind of object a client and the server exchange, as the server's SEAL writes
    them (zstd, version 4.3), with what to load them as."""
    out = {}
    ckks = CkksParams(8192, (60, 40, 40, 60), 40, 0)
    bfv_parms, bfv_ctx = _bfv_context()
    for scheme, parms, ctx in (
        ("ckks", ckks.seal_parameters(), ckks.seal_context()),
        ("bfv", bfv_parms, bfv_ctx),
    ):
        kg = seal.KeyGenerator(ctx)
        enc = seal.Encryptor(ctx, kg.secret_key())
        pt = seal.Plaintext()
        if scheme == "ckks":
            seal.CKKSEncoder(ctx).encode([0.25] * 4096, 2.0**40, pt)
        else:
            seal.BatchEncoder(ctx).encode([7] * 4096, pt)
        full = seal.Ciphertext()
        enc.encrypt_symmetric(pt, full)
        tool = ctx.key_context_data().galois_tool()
        galois = kg.create_galois_keys([tool.get_elt_from_step(s) for s in (1, 4)])
        out[scheme] = {
            "context": ctx,
            "secret": kg.secret_key(),
            "items": [
                ("params", seal_bytes.dumps(parms), None),
                ("ciphertext", seal_bytes.dumps(enc.encrypt_symmetric(pt)), seal.Ciphertext),
                ("ciphertext", seal_bytes.dumps(full), seal.Ciphertext),
                ("kswitch", seal_bytes.dumps(kg.create_relin_keys()), seal.RelinKeys),
                ("kswitch", seal_bytes.dumps(galois), seal.GaloisKeys),
                ("plaintext", seal_bytes.dumps(kg.secret_key()), seal.SecretKey),
            ],
        }
    return out


@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
def test_translation_round_trips_and_the_server_loads_only_its_own_version(objects, scheme):
    ctx = objects[scheme]["context"]
    for kind, data, cls in objects[scheme]["items"]:
        assert seal_version.version(data) == (4, SERVER_MINOR)  # what TenSEAL writes
        down = translate(data, kind, BROWSER_MINOR, BIG)
        assert down[4] == BROWSER_MINOR and down[5] == 0 and len(down) > len(data)  # plain
        back = translate(down, kind, SERVER_MINOR, BIG)
        assert back == translate(data, kind, SERVER_MINOR, BIG)  # only headers changed
        assert translate(back, kind, BROWSER_MINOR, BIG) == down
        if cls is None:
            continue
        loaded = seal_bytes.loads(cls, back, ctx, what=kind)  # the server's SEAL reads it
        assert seal_bytes.dumps(loaded)[:4] == data[:4]
        with pytest.raises(Exception, match="incompatible version"):  # and needs it
            seal_bytes.loads(cls, down, ctx, what=kind)


def test_a_translated_ciphertext_decrypts_to_the_same_values(objects):
    ctx = objects["ckks"]["context"]
    _, seeded, _ = objects["ckks"]["items"][1]
    back = translate(translate(seeded, "ciphertext", 1, BIG), "ciphertext", 3, BIG)
    ct = seal_bytes.loads(seal.Ciphertext, back, ctx, what="ct")
    pt = seal.Plaintext()
    seal.Decryptor(ctx, objects["ckks"]["secret"]).decrypt(ct, pt)
    values = np.asarray(seal.CKKSEncoder(ctx).decode_double(pt))
    assert np.abs(values - 0.25).max() < 1e-6


def test_the_wrong_kind_or_version_is_refused(objects):
    kind, params, _ = objects["ckks"]["items"][0]
    _, ciphertext, _ = objects["ckks"]["items"][1]
    with pytest.raises(ContextError):
        translate(ciphertext, "params", 1, BIG)
    with pytest.raises(ContextError):
        translate(params, "kswitch", 1, BIG)
    other = bytearray(translate(params, kind, 1, BIG))
    other[4] = 2  # SEAL 4.2: neither side's
    with pytest.raises(ContextError, match="4.2"):
        translate(bytes(other), kind, 3, BIG)
    with pytest.raises(ContextError, match="at most"):  # a 4.1 client must send it plain
        translate(ciphertext, "ciphertext", 3, 1000)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_hostile_bytes_are_a_context_error_never_a_crash(objects, data):
    kind, blob, _ = data.draw(st.sampled_from(objects["bfv"]["items"]))
    plain = bytearray(translate(blob, kind, BROWSER_MINOR, BIG))
    cut = data.draw(st.integers(0, 200))  # the walk's fields are in the first bytes
    at = data.draw(st.integers(0, min(len(plain) - 1, 400)))
    plain[at] = data.draw(st.integers(0, 255))
    if cut:
        plain = plain[: len(plain) - cut]
        plain[8:16] = len(plain).to_bytes(8, "little")  # a consistent outer size
    try:
        out = translate(bytes(plain), kind, SERVER_MINOR, BIG)
    except ContextError:
        return
    assert len(out) == len(plain)  # accepted: the same layout, only headers rewritten
