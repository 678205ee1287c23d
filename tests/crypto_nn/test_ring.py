"""CKKS evaluator operations on residue arrays equal SEAL's, bit for bit: add, multiply by a
plaintext, multiply, square, rescale, relinearise, rotate — random ciphertexts and keys,
N 4096–16384, 2–6 primes."""

import numpy as np
import pytest
import tenseal.sealapi as seal
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crypto_nn import keyswitch, ring
from crypto_nn.wire import residues, seal_bytes
from crypto_nn.wire.residues import parse_kswitch


def _bytes_of(ct) -> np.ndarray:
    return residues.parse(seal_bytes.dumps(ct))[1]


@settings(max_examples=3, deadline=None)
@given(
    n=st.sampled_from([4096, 8192, 16384]),
    middle=st.lists(st.sampled_from([30, 36, 40]), min_size=1, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_ckks_operations_equal_seals(n, middle, seed):
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, [50, *middle, 60]))  # last: special
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.NONE)  # any chain: a unit test
    keys = seal.KeyGenerator(ctx)
    enc, ev = seal.Encryptor(ctx, keys.secret_key()), seal.Evaluator(ctx)
    encoder = seal.CKKSEncoder(ctx)
    rng = np.random.default_rng(seed)
    scale = 2.0 ** middle[-1]

    def encrypt(values):
        pt, ct = seal.Plaintext(), seal.Ciphertext()
        encoder.encode(values.tolist(), scale, pt)
        enc.encrypt_symmetric(pt, ct)
        return ct

    a = encrypt(rng.uniform(-1, 1, n // 2))
    b = encrypt(rng.uniform(-1, 1, n // 2))
    moduli = [m.value() for m in parms.coeff_modulus()][: 1 + len(middle)]
    ra, rb = _bytes_of(a), _bytes_of(b)

    out = seal.Ciphertext()
    ev.add(a, b, out)
    assert np.array_equal(ring.add(ra, rb, moduli), _bytes_of(out))
    ev.multiply(a, b, out)
    product = _bytes_of(out)
    assert np.array_equal(ring.multiply(ra, rb, moduli), product)
    rescaled = seal.Ciphertext()
    ev.rescale_to_next(out, rescaled)
    assert np.array_equal(ring.rescale(product, moduli), _bytes_of(rescaled))
    ev.square(a, out)
    assert np.array_equal(ring.square(ra, moduli), _bytes_of(out))
    plain = seal.Plaintext()
    encoder.encode(rng.uniform(-1, 1, n // 2).tolist(), scale, plain)
    ev.multiply_plain(a, plain, out)
    p = residues.parse_plaintext(seal_bytes.dumps(plain), len(moduli))
    assert np.array_equal(ring.multiply_plain(ra, p, moduli), _bytes_of(out))
    stack = np.stack([ra, rb])  # a stack of ciphertexts runs as one call
    assert np.array_equal(ring.square(stack, moduli)[1], ring.square(rb, moduli))

    # key switching: the keys as the client would send them (seeded), loaded once by SEAL
    key_moduli = [m.value() for m in parms.coeff_modulus()]
    relin = seal_bytes.loads(seal.RelinKeys, seal_bytes.dumps(keys.create_relin_keys()), ctx)
    ev.multiply(a, b, out)
    ev.relinearize_inplace(out, relin)
    relin_res = parse_kswitch(seal_bytes.dumps(relin))[0]
    assert np.array_equal(keyswitch.relinearize(product, relin_res, key_moduli), _bytes_of(out))
    tool = ctx.key_context_data().galois_tool()
    steps = (1, 5, -2)
    elts = [tool.get_elt_from_step(step) for step in steps]
    galois = seal_bytes.loads(seal.GaloisKeys, seal_bytes.dumps(keys.create_galois_keys(elts)), ctx)
    galois_res = parse_kswitch(seal_bytes.dumps(galois))
    for step, elt in zip(steps, elts, strict=True):
        assert keyswitch.galois_elt(step, n) == elt
        ev.rotate_vector(a, step, galois, out)
        assert np.array_equal(keyswitch.rotate(ra, step, galois_res, key_moduli), _bytes_of(out))
    # one task per ciphertext (a stack) and parallel inside one key switch: the same bytes
    many = keyswitch.rotate(np.stack([ra, rb, ra]), steps[0], galois_res, key_moduli)
    assert np.array_equal(many[2], keyswitch.rotate(ra, steps[0], galois_res, key_moduli))
    # the keys in one stack, indexed by row (no copy per call): the same bytes, hoisted too
    companions = [keyswitch.key_shoup(k, key_moduli) if k.shape[0] else k for k in galois_res]
    stack = keyswitch.KeyStack.of(galois_res, companions, key_moduli)
    for step in steps:
        assert np.array_equal(
            keyswitch.rotate(ra, step, stack, key_moduli),
            keyswitch.rotate(ra, step, galois_res, key_moduli),
        )
    assert np.array_equal(
        keyswitch.rotate_many(ra, steps, stack, key_moduli),
        keyswitch.rotate_many(ra, steps, galois_res, key_moduli),
    )
    with pytest.raises(ValueError, match="no Galois key for step 3"):
        keyswitch.rotate(ra, 3, stack, key_moduli)


def test_hoisted_rotations_decrypt_to_the_rotated_slots():
    """One decomposition, several rotations: not SEAL's bytes (SEAL does not hoist; the
    digits' signs differ) but the same rotated slots within CKKS noise."""
    n = 8192
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, [60, 40, 40, 60]))
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    keys = seal.KeyGenerator(ctx)
    encoder = seal.CKKSEncoder(ctx)
    values = np.random.default_rng(3).uniform(-1, 1, n // 2)
    pt, ct = seal.Plaintext(), seal.Ciphertext()
    encoder.encode(values.tolist(), 2.0**40, pt)
    seal.Encryptor(ctx, keys.secret_key()).encrypt_symmetric(pt, ct)
    meta, res = residues.parse(seal_bytes.dumps(ct))
    steps = (1, 2, 16, -7)
    tool = ctx.key_context_data().galois_tool()
    made = keys.create_galois_keys([tool.get_elt_from_step(s) for s in steps])
    loaded = seal_bytes.loads(seal.GaloisKeys, seal_bytes.dumps(made), ctx)
    galois = parse_kswitch(seal_bytes.dumps(loaded))
    key_moduli = [m.value() for m in parms.coeff_modulus()]
    hoisted = keyswitch.rotate_many(res, steps, galois, key_moduli)
    decryptor = seal.Decryptor(ctx, keys.secret_key())
    for g, step in enumerate(steps):
        out = seal_bytes.loads(seal.Ciphertext, residues.serialize(meta, hoisted[g]), ctx)
        plain = seal.Plaintext()
        decryptor.decrypt(out, plain)
        got = np.asarray(encoder.decode_double(plain))
        assert np.abs(got - np.roll(values, -step)).max() < 1e-5


@settings(max_examples=4, deadline=None)
@given(
    n=st.sampled_from([4096, 8192, 16384]),
    bits=st.lists(st.sampled_from([30, 36, 40, 50]), min_size=2, max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_bfv_relinearize_equals_seals(n, bits, seed):
    """BFV keeps ciphertexts in coefficient form: the key switch's BFV branch (no NTT of the
    result, the sums brought back instead) gives SEAL's relinearised bytes."""
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, [*bits, 60]))  # the special prime last
    parms.set_plain_modulus(seal.PlainModulus.Batching(n, 20))
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.NONE)  # any chain: a unit test
    keys = seal.KeyGenerator(ctx)
    enc, ev = seal.Encryptor(ctx, keys.secret_key()), seal.Evaluator(ctx)
    rng = np.random.default_rng(seed)
    pt, ct = seal.Plaintext(), seal.Ciphertext()
    seal.BatchEncoder(ctx).encode(rng.integers(0, 1 << 19, n).tolist(), pt)
    enc.encrypt_symmetric(pt, ct)
    squared = seal.Ciphertext()
    ev.square(ct, squared)
    relin = seal_bytes.loads(seal.RelinKeys, seal_bytes.dumps(keys.create_relin_keys()), ctx)
    key_moduli = [m.value() for m in parms.coeff_modulus()]
    meta, before = residues.parse(seal_bytes.dumps(squared))
    assert not meta.is_ntt_form and before.shape[0] == 3
    ev.relinearize_inplace(squared, relin)
    relin_res = parse_kswitch(seal_bytes.dumps(relin))[0]
    got = keyswitch.relinearize_bfv(before, relin_res, key_moduli)
    assert np.array_equal(got, _bytes_of(squared))
    stacked = keyswitch.relinearize_bfv(np.stack([before, before]), relin_res, key_moduli)
    assert np.array_equal(stacked[1], got)  # a stack of ciphertexts: each the same


@settings(max_examples=5, deadline=None)
@given(
    n=st.sampled_from([4096, 8192, 16384]),
    bits=st.lists(st.sampled_from([30, 40, 50, 60]), min_size=2, max_size=6),
    t_bits=st.sampled_from([17, 20, 33, 41]),  # never a coefficient prime's size
    seed=st.integers(0, 2**32 - 1),
)
@example(n=4096, bits=[60, 60], t_bits=41, seed=1)  # 32 + 41 + 120 ≥ 61·3: B gets a prime more
def test_bfv_square_and_multiply_equal_seals(n, bits, t_bits, seed):
    """SEAL's BEHZ product (extend to Bsk ∪ {m̃}, Montgomery step, tensor in both bases,
    ×t, fast floor, Shenoy–Kumaresan back to q) gives its bytes for square and multiply —
    including the parameters where B takes one more prime (large t and q)."""
    from crypto_nn import behz

    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, [*bits, 60]))
    parms.set_plain_modulus(seal.PlainModulus.Batching(n, t_bits))
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.NONE)  # any chain: a unit test
    keys = seal.KeyGenerator(ctx)
    enc, ev = seal.Encryptor(ctx, keys.secret_key()), seal.Evaluator(ctx)
    rng = np.random.default_rng(seed)
    t = parms.plain_modulus().value()
    cts = []
    for _ in range(2):
        pt, ct = seal.Plaintext(), seal.Ciphertext()
        seal.BatchEncoder(ctx).encode(rng.integers(0, t, n).tolist(), pt)
        enc.encrypt_symmetric(pt, ct)
        cts.append(ct)
    moduli = [m.value() for m in ctx.first_context_data().parms().coeff_modulus()]
    x, y = (residues.parse(seal_bytes.dumps(c))[1] for c in cts)
    squared, product = seal.Ciphertext(), seal.Ciphertext()
    ev.square(cts[0], squared)
    ev.multiply(cts[0], cts[1], product)
    assert np.array_equal(behz.square(x, moduli, t), _bytes_of(squared))
    assert np.array_equal(behz.multiply(x, y, moduli, t), _bytes_of(product))
    stacked = behz.square(np.stack([y, x]), moduli, t)
    assert np.array_equal(stacked[1], _bytes_of(squared))


def test_behz_auxiliary_primes_are_seals():
    """SEAL 4.1 at N 8192: its first 61-bit primes ≡ 1 mod 2N, descending (get_primes)."""
    from crypto_nn import behz

    primes = behz.aux_primes(8192, 3)
    assert primes == sorted(primes, reverse=True) and all(p % 16384 == 1 for p in primes)
    assert all(p.bit_length() == 61 for p in primes)
    assert behz._is_prime(primes[0]) and not behz._is_prime(primes[0] + 16384 * 0 + 2)


@settings(max_examples=30, deadline=None)
@given(
    q=st.integers(3, (1 << 61) - 1),
    fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20),
)
def test_shoup_companions_are_exact_quotients(q, fractions):
    """key_shoup's estimate-and-correct quotient is ⌊w·2⁶⁴/q⌋ exactly, edges included."""
    w = sorted({0, q - 1, *(min(int(f * q), q - 1) for f in fractions)})
    got = keyswitch.key_shoup(np.array([w], dtype=np.uint64)[None], [q])
    assert [int(v) for v in got.ravel()] == [(v << 64) // q for v in w]
