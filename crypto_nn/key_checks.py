"""Evaluation keys from a client, checked for the shape SEAL's key switching assumes.

SEAL's ``load`` checks each key's metadata (parms_id, residues below their primes) but not
how many key-switching components a key holds: relinearisation bytes that are really a
Galois key, or a key with one of its components, load fine and make the first
``relinearize`` / ``rotate`` read past the end of a vector — a segfault of the evaluating
process. Every check here is one SEAL would need and does not make.
"""

from __future__ import annotations

import tenseal.sealapi as seal

from crypto_nn.errors import ContextError


def _decomposition_count(context: seal.SEALContext) -> int:
    """Components per key-switching key: the primes of the first data level."""
    return len(context.first_context_data().parms().coeff_modulus())


def _check_component_vector(keys: list, context: seal.SEALContext, what: str) -> None:
    want = _decomposition_count(context)
    if len(keys) != want:
        raise ContextError(
            f"{what} has {len(keys)} key-switching components; these parameters need {want} "
            "— make the keys with ClientKeys for this plan"
        )
    key_id = context.key_parms_id()
    key_level = len(context.key_context_data().parms().coeff_modulus())
    n = context.key_context_data().parms().poly_modulus_degree()
    for j, public_key in enumerate(keys):
        ct = public_key.data()
        if (
            public_key.parms_id() != key_id
            or ct.size() != 2
            or ct.coeff_modulus_size() != key_level
            or ct.poly_modulus_degree() != n
            or not ct.is_ntt_form()
        ):
            raise ContextError(f"{what}: component {j} is not a key-level key for these parameters")


def check_relin_keys(keys: seal.RelinKeys, context: seal.SEALContext) -> None:
    """Exactly one key (for the square of the secret) with a full component vector."""
    data = keys.data()
    if keys.parms_id() != context.key_parms_id() or len(data) != 1:
        raise ContextError(
            f"relinearisation keys hold {len(data)} key slots, want 1 (for s²): these "
            "bytes are not relinearisation keys for these parameters"
        )
    _check_component_vector(data[0], context, "relinearisation keys")


def check_galois_keys(
    keys: seal.GaloisKeys, context: seal.SEALContext, elements: list[int]
) -> None:
    """Every element the plan rotates by is present and whole (others are never used)."""
    if keys.parms_id() != context.key_parms_id():
        raise ContextError("rotation keys were made for other parameters")
    data = keys.data()
    for elt in elements:
        index = seal.GaloisKeys.get_index(elt)
        if index >= len(data) or not keys.has_key(elt):
            continue  # missing keys are reported by the caller, with the steps
        _check_component_vector(data[index], context, f"rotation key for element {elt}")


def load_relin_keys(data: bytes, context: seal.SEALContext) -> seal.RelinKeys:
    """Relinearisation keys from a client, loaded by SEAL and checked whole."""
    from crypto_nn import seal_bytes

    keys = seal_bytes.loads(seal.RelinKeys, data, context, what="relinearisation keys")
    check_relin_keys(keys, context)
    return keys
