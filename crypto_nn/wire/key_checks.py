"""The one place a client's public context is checked and loaded, for every scheme.

A plan states the key sets it needs as :class:`KeySpec` s — CKKS one (parts ``params``,
``relin_keys``, ``galois_keys``), BFV one per plaintext prime ``i`` (``params.i`` …) —
and :func:`load_keys` parses, checks and loads exactly those: the server's registration
check, every evaluator and the trial run all go through it.

Why the component checks: SEAL's ``load`` checks each key's metadata (parms_id, residues
below their primes) but not how many key-switching components a key holds: relinearisation
bytes that are really a Galois key, or a key with one of its components, load fine and
make the first ``relinearize`` / ``rotate`` read past the end of a vector — a segfault of
the evaluating process. Every check here is one SEAL would need and does not make.
"""

from __future__ import annotations

from dataclasses import dataclass

import tenseal.sealapi as seal

from crypto_nn.errors import ContextError
from crypto_nn.security import is_secure
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import seal_bytes

SCHEMES = {"ckks": seal.SCHEME_TYPE.CKKS, "bfv": seal.SCHEME_TYPE.BFV}


@dataclass(frozen=True)
class KeySpec:
    """One key set a plan needs: its SEAL parameters and which evaluation keys. Small,
    hashable and picklable (the registration check runs in another process)."""

    scheme: str  # "ckks" | "bfv"
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    plain_modulus: int = 0  # BFV only
    relin: bool = False
    rotations: tuple[int, ...] = ()
    suffix: str = ""  # part names: "params" + suffix …; BFV prime i: ".i"

    @property
    def parts(self) -> set[str]:
        wanted = {"params" + self.suffix}
        if self.relin:
            wanted.add("relin_keys" + self.suffix)
        if self.rotations:
            wanted.add("galois_keys" + self.suffix)
        return wanted

    def seal_parameters(self) -> seal.EncryptionParameters:
        parms = seal.EncryptionParameters(SCHEMES[self.scheme])
        parms.set_poly_modulus_degree(self.poly_modulus_degree)
        parms.set_coeff_modulus(
            seal.CoeffModulus.Create(self.poly_modulus_degree, list(self.coeff_mod_bit_sizes))
        )
        if self.scheme == "bfv":
            parms.set_plain_modulus(self.plain_modulus)
        return parms

    def seal_context(self) -> seal.SEALContext:
        return seal.SEALContext(self.seal_parameters(), True, seal.SEC_LEVEL_TYPE.TC128)

    def describe(self) -> str:
        t = f", t={self.plain_modulus}" if self.plain_modulus else ""
        return f"N={self.poly_modulus_degree}, bits {list(self.coeff_mod_bit_sizes)}{t}"


@dataclass
class LoadedKeys:
    """One key set, loaded and checked: what an evaluator runs with."""

    spec: KeySpec
    context: seal.SEALContext
    relin_keys: seal.RelinKeys | None = None
    galois_keys: seal.GaloisKeys | None = None


def galois_elements(context: seal.SEALContext, steps: list[int] | tuple[int, ...]) -> list[int]:
    tool = context.key_context_data().galois_tool()
    return [tool.get_elt_from_step(step) for step in steps]


def check_params(parms: seal.EncryptionParameters, spec: KeySpec) -> None:
    """Refuse parameters outside the 128-bit table or different from the plan's."""
    n = parms.poly_modulus_degree()
    bits = [m.bit_count() for m in parms.coeff_modulus()]
    if not is_secure(n, bits):
        raise ContextError(
            f"parameters N={n}, {sum(bits)} modulus bits are outside the 128-bit security table"
        )
    if parms.scheme() != SCHEMES[spec.scheme]:
        raise ContextError(f"params{spec.suffix} are not {spec.scheme.upper()} parameters")
    want = spec.seal_parameters()
    same = n == spec.poly_modulus_degree and [m.value() for m in parms.coeff_modulus()] == [
        m.value() for m in want.coeff_modulus()
    ]
    if spec.scheme == "bfv":
        same = same and parms.plain_modulus().value() == spec.plain_modulus
    if not same:
        t = f", t={parms.plain_modulus().value()}" if spec.scheme == "bfv" else ""
        raise ContextError(
            f"context parameters (N={n}, bits {bits}{t}) do not match the plan ({spec.describe()})"
        )


def read_params(parts: dict[str, bytes], spec: KeySpec) -> seal.EncryptionParameters:
    name = "params" + spec.suffix
    if name not in parts:
        raise ContextError(f"the context has no {name} part; make it with this plan's Client")
    return seal_bytes.loads(seal.EncryptionParameters, parts[name], what=f"context {name}")


def _decomposition_count(context: seal.SEALContext) -> int:
    """Components per key-switching key: the primes of the first data level."""
    return len(context.first_context_data().parms().coeff_modulus())


def _check_component_vector(keys: list, context: seal.SEALContext, what: str) -> None:
    want = _decomposition_count(context)
    if len(keys) != want:
        raise ContextError(
            f"{what} has {len(keys)} key-switching components; these parameters need {want} "
            "— make the keys with this plan's Client"
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
    keys: seal.GaloisKeys, context: seal.SEALContext, steps: tuple[int, ...], what: str
) -> None:
    """Every step the plan rotates by has its key, whole (others are never used)."""
    if keys.parms_id() != context.key_parms_id():
        raise ContextError(f"{what} were made for other parameters")
    data = keys.data()
    elements = galois_elements(context, steps)
    missing = [s for s, e in zip(steps, elements, strict=True) if not keys.has_key(e)]
    if missing:
        raise ContextError(
            f"{what} lacks rotation keys for steps {missing}; this plan rotates by "
            f"{list(steps)} — make the keys with this plan's Client"
        )
    for elt in elements:
        index = seal.GaloisKeys.get_index(elt)
        if index >= len(data):
            raise ContextError(f"{what}: no key slot for element {elt}")
        _check_component_vector(data[index], context, f"rotation key for element {elt}")


def load_relin_keys(data: bytes, context: seal.SEALContext, what: str = "relin_keys"):
    keys = seal_bytes.loads(seal.RelinKeys, data, context, what=what)  # bound: one key
    check_relin_keys(keys, context)
    return keys


def load_key_set(parts: dict[str, bytes], spec: KeySpec) -> LoadedKeys:
    """Parameters checked against the spec, then exactly the keys it names, checked whole."""
    parms = read_params(parts, spec)
    check_params(parms, spec)
    context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    loaded = LoadedKeys(spec, context)
    for part, why in (("relin_keys", "multiplies"), ("galois_keys", "rotates")):
        name = part + spec.suffix
        if name in spec.parts and name not in parts:
            kind = "relinearisation" if part == "relin_keys" else "rotation"
            raise ContextError(
                f"this plan {why} ciphertexts, so it needs {kind} keys: the context must "
                f"carry {kind} keys, and it has no {name} part — make it with this plan's Client"
            )
    if spec.relin:
        loaded.relin_keys = load_relin_keys(parts["relin_keys" + spec.suffix], context)
    if spec.rotations:
        name = "galois_keys" + spec.suffix
        most = seal_bytes.bound(
            seal.GaloisKeys, context, keys=len(set(galois_elements(context, spec.rotations)))
        )  # a key per element the plan rotates by, and not one more
        loaded.galois_keys = seal_bytes.loads(
            seal.GaloisKeys, parts[name], context, what=name, most=most
        )
        check_galois_keys(loaded.galois_keys, context, spec.rotations, name)
    return loaded


def unpack_for(public_context: bytes, scheme: str) -> dict[str, bytes]:
    """The parts of a context made for ``scheme`` (refused, naming both, if not)."""
    header, parts = ctx_format.unpack(public_context)
    if header["scheme"] != scheme:
        raise ContextError(
            f"a {str(header['scheme'])[:20]!r} context; this plan is {scheme.upper()} — make "
            "the keys with this plan's Client"
        )
    return parts


def load_keys(public_context: bytes, specs: list[KeySpec]) -> list[LoadedKeys]:
    """Every key set a plan needs, from the client's public context (evaluators)."""
    parts = unpack_for(public_context, specs[0].scheme)
    return [load_key_set(parts, spec) for spec in specs]


def prove(loaded: LoadedKeys) -> None:
    """One relinearisation and one rotation per step with the client's keys, on a
    ciphertext under a throwaway secret key: the keys' shapes are exercised as inference
    will exercise them (the values are noise — nobody decrypts them)."""
    context, spec = loaded.context, loaded.spec
    evaluator = seal.Evaluator(context)
    secret = seal.KeyGenerator(context).secret_key()
    pt = seal.Plaintext()
    if spec.scheme == "ckks":
        seal.CKKSEncoder(context).encode([0.5] * 8, float(2**20), pt)
    else:
        seal.BatchEncoder(context).encode([1] * 8, pt)
    fresh = seal.Encryptor(context, secret).encrypt_symmetric(pt)
    ct = seal_bytes.loads(seal.Ciphertext, seal_bytes.dumps(fresh), context, what="probe")
    if loaded.relin_keys is not None:
        squared = seal.Ciphertext()
        evaluator.square(ct, squared)
        evaluator.relinearize_inplace(squared, loaded.relin_keys)
    for step in spec.rotations:
        rotated = seal.Ciphertext()
        if spec.scheme == "ckks":
            evaluator.rotate_vector(ct, step, loaded.galois_keys, rotated)
        else:
            evaluator.rotate_rows(ct, step, loaded.galois_keys, rotated)
