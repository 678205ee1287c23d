"""The GEMM route over RNS limbs: the kernel is exact modular arithmetic, and both batch
evaluators give the term route's ciphertexts bit for bit (BFV: and IntModel.forward)."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto_nn
from crypto_nn import rns
from crypto_nn.ckks.batch import CkksBatchEvaluator
from crypto_nn.errors import ContextError
from crypto_nn.wire import inflate, residues, seal_bytes, seeded
from nets.layers import Square


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_kernel_is_w_times_x_mod_q_exactly(data):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_in, n_out = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 5))
    width = data.draw(st.sampled_from([1, 7, 1024, 1500]))
    qbits = data.draw(st.lists(st.integers(2, 60), min_size=1, max_size=4))
    moduli = np.array([int(rng.integers(2 ** (b - 1), 2**b)) | 1 for b in qbits], np.uint64)
    wbits = data.draw(st.sampled_from([1, 8, 20, 40]))
    weights = rng.integers(-(2**wbits), 2**wbits, (n_out, n_in))
    weights[rng.random(weights.shape) < 0.3] = 0
    x = np.stack(
        [rng.integers(0, int(q), size=(n_in, width), dtype=np.uint64) for q in moduli], axis=1
    )
    x[0, :, 0] = moduli - 1  # the largest residues
    got = rns.affine_residues(x, moduli, weights)
    for j, r, c in [
        (0, 0, 0),
        (n_out - 1, len(moduli) - 1, width - 1),
        (n_out // 2, 0, width // 2),
    ]:
        want = sum(int(weights[j, i]) * int(x[i, r, c]) for i in range(n_in)) % int(moduli[r])
        assert int(got[j, r, c]) == want


def test_small_weights_take_the_whole_residue_as_one_int64_piece():
    """BFV's weights (|w| mod t, a few bits) with 44-bit primes: one piece, no cutting;
    CKKS-sized weights (×2^25) still cut the residue into int32 pieces."""
    small = rns.Layer.from_weights(np.full((3, 49), 7), 44)
    assert (small.pieces, small.bits, rns.piece_dtype(small.bits)) == (1, 44, np.int64)
    large = rns.Layer.from_weights(np.full((3, 49), 7 << 25), 56)
    assert large.pieces > 1 and rns.piece_dtype(large.bits) == np.int32


def test_seal_rounding_is_half_away_from_zero():
    v = np.array([0.5, -0.5, 1.5, -2.5, 0.49999999999999994, 2.0**52 - 0.5, -3.2])
    assert rns.seal_round(v).tolist() == [1, -1, 2, -3, 0, 2**52, -3]


def _same(a: list[bytes], b: list[bytes]) -> bool:
    return all(
        residues.parse(x)[1].tobytes() == residues.parse(y)[1].tobytes()
        for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**16), st.integers(1, 12), st.integers(1, 50), st.booleans())
def test_ckks_gemm_route_gives_the_term_routes_ciphertexts(seed, hidden, n, fused):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, hidden), Square(), torch.nn.Linear(hidden, 3)
    ).eval()
    with torch.no_grad():  # tiny and zero weights too: rows no input reaches
        net[1].weight[0] = 0.0
        net[1].weight[-1, :3] = 1e-9
    calib = rng.random((64, 1, 4, 4)).astype(np.float32)
    plan = crypto_nn.compile(net, calib, fused=fused)
    client = crypto_nn.client_for(plan.describe())
    public = client.public_context()
    cts = client.encrypt_batch(rng.random((n, 1, 4, 4)))
    gemm = CkksBatchEvaluator(plan, public, route="gemm").run(cts)
    terms = CkksBatchEvaluator(plan, public, route="terms").run(cts)
    assert _same(gemm, terms)


def _seeded_context(scheme: str):
    import tenseal.sealapi as seal

    parms = seal.EncryptionParameters(getattr(seal.SCHEME_TYPE, scheme.upper()))
    parms.set_poly_modulus_degree(8192)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(8192, [49, 56, 56, 56]))
    if scheme == "bfv":
        parms.set_plain_modulus(seal.PlainModulus.Batching(8192, 20))
    context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    secret = seal.KeyGenerator(context).secret_key()
    encryptor = seal.Encryptor(context, secret)
    plain = seal.Plaintext()
    if scheme == "ckks":
        seal.CKKSEncoder(context).encode([0.25] * 16, 2.0**30, plain)
    else:
        seal.BatchEncoder(context).encode([3] * 16, plain)
    return context, [seal_bytes.dumps(encryptor.encrypt_symmetric(plain)) for _ in range(3)]


@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
def test_seeds_expand_to_seals_own_c1_and_hostile_seeded_inputs_are_refused(scheme):
    import tenseal.sealapi as seal

    context, payloads = _seeded_context(scheme)
    scale = 2.0**30 if scheme == "ckks" else 1.0
    inputs = seeded.SeededInputs.parse(context, payloads, scale=scale)
    got = inputs.pieces(30, 2, {})  # (2, 3, 2k, N) int32 pieces
    joined = got[0].astype(np.uint64) | (got[1].astype(np.uint64) << np.uint64(30))
    for i, data in enumerate(payloads):
        _, want = residues.parse(seal_bytes.dumps(seal_bytes.loads(seal.Ciphertext, data, context)))
        assert np.array_equal(joined[i], want.reshape(-1, want.shape[-1]))
    meta, c0, seed = seeded.split(payloads[0])
    c0 = c0.copy()
    c0[0, 0] = inputs.moduli[0]  # a residue past its prime, as a hostile client may send
    bad = residues.serialize(meta, c0[None])  # a full-size header over c0 only: refused
    assert seeded.SeededInputs.parse(context, [bad], scale=scale) is None  # SEAL decides
    with pytest.raises(ContextError, match="past their primes"):
        seeded.SeededInputs.parse(context, [_with_c0(payloads[0], c0)], scale=scale)
    with pytest.raises(ContextError, match="scale"):  # SEAL would accept it, then compute garbage
        seeded.SeededInputs.parse(context, payloads, scale=2 * scale)


def _with_c0(data: bytes, c0: np.ndarray) -> bytes:
    """The seeded ciphertext with its c0 replaced (uncompressed body, same seed record)."""
    version, body = inflate.body(data, 1 << 31)
    start = residues.BODY.size + residues.HEADER.size + residues.COUNT.size
    body = body[:start] + c0.astype("<u8").tobytes() + body[start + c0.nbytes :]
    head = residues.HEADER.pack(residues.MAGIC, 16, *version, 0, 0, 16 + len(body))
    return head + body


def test_a_small_body_that_unfolds_past_a_ciphertext_is_refused():
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))  # 64 MB of zeros
    data = residues.HEADER.pack(residues.MAGIC, 16, 4, 3, 2, 0, 16 + len(bomb)) + bomb
    with pytest.raises(ContextError, match="declares|fit"):
        inflate.body(data, 1 << 20)
    context, _ = _seeded_context("ckks")
    with pytest.raises(ContextError, match="declares|fit"):
        seeded.SeededInputs.parse(context, [data], scale=2.0**30)
