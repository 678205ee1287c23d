"""``wire.key_checks`` directly (the server's registration and every evaluator call it):
the keys a spec names are loaded and proven; what is missing, foreign or mismatched is
refused with the reason."""

import dataclasses

import pytest

from crypto_nn.bfv.client import key_sets, public_parts
from crypto_nn.bfv.params import batching_primes, default_coeff
from crypto_nn.errors import ContextError
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire.key_checks import KeySpec, load_keys, prove

N = 4096


@pytest.fixture(scope="module")
def spec():
    bits, avoid = default_coeff(N)
    (t,) = batching_primes(N, 20, 1000, avoid)[:1]
    return KeySpec("bfv", N, tuple(bits), plain_modulus=t, relin=True, rotations=(1, 4))


@pytest.fixture(scope="module")
def context(spec):
    return public_parts(key_sets([spec]))


def test_the_keys_a_spec_names_load_and_prove(spec, context):
    (loaded,) = load_keys(context, [spec])
    assert loaded.relin_keys is not None and loaded.galois_keys is not None
    prove(loaded)  # one relinearisation, a rotation per step: no SEAL error


def test_a_missing_part_is_named(spec, context):
    header, parts = ctx_format.unpack(context)
    del parts["relin_keys"]
    stripped = ctx_format.pack("bfv", parts)
    with pytest.raises(ContextError, match="relinearisation keys.*no relin_keys part"):
        load_keys(stripped, [spec])


def test_rotation_keys_for_other_steps_are_refused(spec):
    other = public_parts(key_sets([dataclasses.replace(spec, rotations=(1,))]))
    with pytest.raises(ContextError, match=r"rotation keys for steps \[4\]"):
        load_keys(other, [spec])


def test_a_context_of_the_other_scheme_or_other_parameters_is_refused(spec, context):
    _, parts = ctx_format.unpack(context)
    with pytest.raises(ContextError, match="this plan is CKKS"):
        load_keys(ctx_format.pack("bfv", parts), [dataclasses.replace(spec, scheme="ckks")])
    wider = dataclasses.replace(spec, poly_modulus_degree=2 * N)
    with pytest.raises(ContextError):
        load_keys(context, [wider])
