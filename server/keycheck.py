"""Key registration, run in a checker process: a context is parsed whole, checked against
every served plan, and *proven* by one relinearisation and one rotation per step.

Why a separate process: SEAL parses multi-megabyte keys holding the GIL (the event loop
would stall), and a key that passes every structural check but still breaks SEAL can
only crash the checker — the registration fails, evaluation workers never see the key.
What is stored is the context re-packed from the parts that were parsed, nothing else:
no unknown header fields, no unparsed part, no bytes after a SEAL object.
"""

from __future__ import annotations

from dataclasses import dataclass

import tenseal.sealapi as seal

from crypto_nn import context as ctx_format
from crypto_nn import seal_bytes
from crypto_nn.ckks_single import galois_elements, load_rotation_keys
from crypto_nn.errors import ContextError
from crypto_nn.key_checks import load_relin_keys
from crypto_nn.params import CkksParams

CHECK_VERSION = 2  # keys registered by an older check are refused until registered again
SERVED_PARTS = ("params", "relin_keys", "galois_keys")  # CKKS: no per-prime (.i) parts


@dataclass(frozen=True)
class PlanNeeds:
    """What registration must know of a plan (small and picklable, unlike the plan)."""

    name: str
    params: CkksParams
    needs_relin_keys: bool
    rotations: tuple[int, ...]

    @property
    def parts(self) -> set[str]:
        wanted = {"params"}
        if self.needs_relin_keys:
            wanted.add("relin_keys")
        if self.rotations:
            wanted |= {"relin_keys", "galois_keys"}  # single packing squares too
        return wanted


@dataclass
class Checked:
    context: bytes  # canonical: re-packed from the parsed parts
    models: list[str]
    refused: dict[str, str]
    dropped: list[str]  # parts only refused plans would have used: not stored


def check_context(body: bytes, plans: list[PlanNeeds]) -> Checked:
    """→ the canonical context and the plans it serves; :class:`ContextError` if none."""
    header, parts = ctx_format.unpack(body)
    if header["scheme"] != "ckks":
        raise ContextError(
            f"context scheme {str(header['scheme'])[:20]!r}: this server serves CKKS"
        )
    extra = sorted(set(parts) - set(SERVED_PARTS))
    if extra:
        raise ContextError(
            f"context parts {extra} are not used by CKKS plans; send only {list(SERVED_PARTS)}"
        )
    for name, data in parts.items():
        seal_bytes.check_whole(data, what=f"context part {name}")
    parms = ctx_format.read_params(parts)
    models, refused, wanted, stored = [], {}, {"params"}, {"params"}
    cache: dict = {}  # plans sharing parameters load and prove the relin keys once
    for plan in plans:
        try:
            ctx_format.check_matches(parms, plan.params)
        except ContextError as exc:
            refused[plan.name] = str(exc)
            continue
        wanted |= plan.parts
        try:
            _check_keys(plan, parts, cache)
        except ContextError as exc:
            refused[plan.name] = str(exc)
            continue
        models.append(plan.name)
        stored |= plan.parts
    if not models:
        reasons = "; ".join(f"{name}: {why}" for name, why in refused.items())
        raise ContextError("parameters match no served plan: " + reasons)
    unused = sorted(set(parts) - wanted)
    if unused:
        raise ContextError(
            f"context parts {unused} are not used by the plans these parameters match "
            f"({', '.join(models)}); leave them out"
        )
    # only parts that served an accepted plan (parsed and proven) reach the disk: a part
    # only a refused plan would have used is dropped, whatever it held
    dropped = sorted(set(parts) - stored)
    canonical = ctx_format.pack(
        "ckks", {n: parts[n] for n in SERVED_PARTS if n in stored and n in parts}
    )
    return Checked(canonical, models, refused, dropped)


def _check_keys(plan: PlanNeeds, parts: dict[str, bytes], cache: dict) -> None:
    """Load and prove the keys this plan uses; plans sharing parameters share the context
    and the proven relinearisation keys (``cache``, one per registration)."""
    entry = cache.setdefault(plan.params, {"context": plan.params.seal_context()})
    context = entry["context"]
    if plan.needs_relin_keys:
        if "relin_keys" not in parts:
            raise ContextError("the plan needs relinearisation keys, the context has none")
        if "relin" not in entry:
            relin = load_relin_keys(parts["relin_keys"], context)
            _prove(plan, context, relin, None)
            entry["relin"] = relin
    if plan.rotations:
        galois = load_rotation_keys(plan, parts, context)  # checks every step's key whole
        _prove(plan, context, None, galois)


def _prove(plan: PlanNeeds, context, relin, galois) -> None:
    """One relinearisation and one rotation per step with the client's keys, on a
    ciphertext under a throwaway secret key: the keys' shapes are exercised as inference
    will exercise them (the values are noise — nobody decrypts them)."""
    encoder, evaluator = seal.CKKSEncoder(context), seal.Evaluator(context)
    secret = seal.KeyGenerator(context).secret_key()
    pt = seal.Plaintext()
    encoder.encode([0.5] * 8, float(2**plan.params.scale_bits), pt)
    fresh = seal.Encryptor(context, secret).encrypt_symmetric(pt)
    ct = seal_bytes.loads(seal.Ciphertext, seal_bytes.dumps(fresh), context, what="probe")
    if relin is not None:
        squared = seal.Ciphertext()
        evaluator.square(ct, squared)
        evaluator.relinearize_inplace(squared, relin)
    if galois is not None:
        for step, elt in zip(
            plan.rotations, galois_elements(context, list(plan.rotations)), strict=True
        ):
            if not galois.has_key(elt):
                raise ContextError(f"the context lacks the rotation key for step {step}")
            rotated = seal.Ciphertext()
            evaluator.rotate_vector(ct, step, galois, rotated)
