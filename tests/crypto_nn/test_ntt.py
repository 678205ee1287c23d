"""Our negacyclic NTT gives SEAL's own NTT-form residues, bit for bit, and inverts them."""

import numpy as np
import pytest
import tenseal.sealapi as seal
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto_nn import ntt
from crypto_nn.wire import residues, seal_bytes


def _seal_pair(n: int, bits: list[int], seed: int):
    """A BFV ciphertext's residues in coefficient form, and SEAL's transform_to_ntt of it."""
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(n, [*bits, 60]))  # + the special prime
    parms.set_plain_modulus(seal.PlainModulus.Batching(n, 20))
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.NONE)  # any chain: a unit test
    keys = seal.KeyGenerator(ctx)
    pt = seal.Plaintext()
    values = np.random.default_rng(seed).integers(0, 1 << 19, n).tolist()
    seal.BatchEncoder(ctx).encode(values, pt)
    ct = seal.Ciphertext()
    seal.Encryptor(ctx, keys.secret_key()).encrypt_symmetric(pt, ct)
    _, coeff = residues.parse(seal_bytes.dumps(ct))
    seal.Evaluator(ctx).transform_to_ntt_inplace(ct)
    meta, want = residues.parse(seal_bytes.dumps(ct))
    assert meta.is_ntt_form
    moduli = [m.value() for m in parms.coeff_modulus()][: len(bits)]
    return coeff, want, moduli


@settings(max_examples=5, deadline=None)
@given(
    n=st.sampled_from([4096, 8192, 16384]),
    bits=st.lists(st.sampled_from([30, 36, 40, 50, 60]), min_size=2, max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_forward_is_seals_ntt_and_inverse_undoes_it(n, bits, seed):
    coeff, want, moduli = _seal_pair(n, bits, seed)
    got = ntt.forward(coeff, moduli)
    assert got.dtype == np.uint64 and np.array_equal(got, want)
    assert np.array_equal(ntt.inverse(want, moduli), coeff)


def test_seals_root_is_the_minimal_primitive_root():
    q = seal.CoeffModulus.Create(4096, [40])[0].value()
    psi = ntt.minimal_root(8192, q)
    assert pow(psi, 4096, q) == q - 1  # primitive 2N-th: ψ^N = −1
    odd = {pow(psi, k, q) for k in range(1, 8192, 2)}  # every primitive 2N-th root
    assert psi == min(odd)


def test_bad_residues_are_refused():
    moduli = [seal.CoeffModulus.Create(4096, [40])[0].value()]
    with pytest.raises(ValueError, match="primes"):
        ntt.forward(np.zeros((1, 2, 4096), dtype=np.uint64), moduli)
    with pytest.raises(ValueError, match="reduced"):
        ntt.forward(np.full((1, 1, 4096), moduli[0], dtype=np.uint64), moduli)
