"""Key registration, run in a checker process: a context is parsed whole, checked against
every served plan, and *proven* by one relinearisation and one rotation per step.

Why a separate process: SEAL parses multi-megabyte keys holding the GIL (the event loop
would stall), and a key that passes every structural check but still breaks SEAL can
only crash the checker — the registration fails, evaluation workers never see the key.
What is stored is the context re-packed from the parts that were parsed (scheme, client
id, parts; no unknown header field, no unparsed part), and each part holds no byte SEAL
did not load: ``crypto_nn.wire.inflate`` accepts exactly one compressed frame with nothing
after it, inflates it, and SEAL loads the result uncompressed — its loader refuses an
object whose members leave any byte unread ("invalid data size"). Stored bytes are the
client's own (seeded keys stay half-size), and every one of them is accounted for.

The checks themselves are ``crypto_nn.wire.key_checks`` — the same code every
evaluator loads keys with, for CKKS and BFV alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto_nn.errors import ContextError
from crypto_nn.wire import context as ctx_format
from crypto_nn.wire import seal_bytes, seal_version
from crypto_nn.wire.key_checks import KeySpec, check_params, load_key_set, prove, read_params

CHECK_VERSION = 4  # keys registered by an older check are refused until registered again


@dataclass(frozen=True)
class PlanNeeds:
    """What registration must know of a plan (small and picklable, unlike the plan)."""

    name: str
    scheme: str
    specs: tuple[KeySpec, ...]

    @classmethod
    def of(cls, name: str, plan) -> PlanNeeds:
        return cls(name, plan.scheme, tuple(plan.key_specs()))

    @property
    def parts(self) -> set[str]:
        return set().union(*(spec.parts for spec in self.specs))


@dataclass
class Checked:
    context: bytes  # canonical: re-packed from the parsed parts
    models: list[str]
    refused: dict[str, str]
    dropped: list[str]  # parts only refused plans would have used: not stored


def check_context(body: bytes, plans: list[PlanNeeds]) -> Checked:
    """→ the canonical context and the plans it serves; :class:`ContextError` if none."""
    header, parts = ctx_format.unpack(body)
    scheme = header["scheme"]
    mine = [plan for plan in plans if plan.scheme == scheme]
    if not mine:
        served = sorted({plan.scheme.upper() for plan in plans})
        raise ContextError(
            f"context scheme {str(scheme)[:20]!r}: this server serves {' and '.join(served)} plans"
        )
    known = set().union(*(plan.parts for plan in mine))
    extra = sorted(set(parts) - known)
    if extra:
        raise ContextError(
            f"context parts {extra} are not used by any served {scheme} plan; send only the "
            "parts a plan's description lists under keys"
        )
    for name, data in parts.items():
        seal_bytes.check_whole(data, what=f"context part {name}")
    if header.get("seal") is not None:  # SEAL 4.1 (node-seal): headers rewritten, sent plain
        parts = {
            name: seal_version.translate(
                data, seal_version.part_kind(name), seal_version.SERVER_MINOR, len(data),
                what=f"context part {name} (SEAL {header['seal']}, uncompressed)",
            )
            for name, data in parts.items()
        }  # fmt: skip
    models, refused, wanted, stored = [], {}, set(), set()
    proven: dict[KeySpec, None] = {}  # plans sharing a key set load and prove it once
    for plan in mine:
        try:
            for spec in plan.specs:
                check_params(read_params(parts, spec), spec)
        except ContextError as exc:
            refused[plan.name] = str(exc)
            continue
        wanted |= plan.parts
        try:
            for spec in plan.specs:
                if spec not in proven:
                    prove(load_key_set(parts, spec))
                    proven[spec] = None
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
        scheme,
        {n: parts[n] for n in parts if n in stored},
        client=header.get("client"),
        seal=header.get("seal"),
    )
    return Checked(canonical, models, refused, dropped)
