"""Compile a network to a homomorphic-encryption plan (TenSEAL CKKS / BFV) and run it.

Layout: ``ckks/`` and ``bfv/`` hold the same roles under the same module names:
``params`` (parameters), ``plan`` (plan data, server and client side), ``compile``
(compilers), ``client`` (every client role), ``batch`` / ``single`` (evaluators only);
``slots`` is the packing
schedule both schemes' single packing runs, ``wire/`` the bytes both put on the wire
(SEAL objects, ciphertext lists, public contexts, key checks, residues), ``rns`` the
batch layers' integer matrix product over RNS limbs, ``roles`` the three
interfaces (Plan, Client, Evaluator) every scheme, packing and table mode implements.

``compile`` returns a Plan whatever the scheme; ``client_for(description)`` the Client
for a plan's published JSON; ``load_plan(path)`` a saved plan. The modules behind them
load lazily, so importing a small piece (``crypto_nn.wire.framing`` in the server's
event loop) stays cheap.
"""

from __future__ import annotations

from crypto_nn.kernel_cache import ensure_fresh

ensure_fresh()  # numba's cache does not see a changed kernel in another module


def compile(model, calibration=None, *, scheme: str = "ckks", packing: str = "batch", **options):
    """→ a :class:`crypto_nn.roles.Plan`. CKKS: ``compile(torch_model, calibration,
    packing="batch"|"single", poly_degree=2, ...)`` (``ckks.compile``). BFV:
    ``compile(int_model, scheme="bfv", packing="batch"|"single",
    tables="refuse"|"poly"|"client")`` — exact plans (``bfv.compile``)."""
    from crypto_nn.errors import CompileError

    if scheme == "ckks":
        from crypto_nn.ckks.compile import compile as compile_ckks

        if calibration is None:
            raise CompileError(
                "CKKS plans need calibration images (their value ranges set the scale)"
            )
        return compile_ckks(model, calibration, packing=packing, **options)
    if scheme != "bfv":
        raise CompileError(f"scheme {scheme!r}: choose ckks or bfv")
    from crypto_nn.bfv.compile import compile as compile_bfv

    return compile_bfv(model, packing=packing, **options)


def client_for(description: dict, secret: bytes | None = None):
    """The :class:`crypto_nn.roles.Client` for a published plan description (JSON alone:
    no weights, no server objects), chosen by (scheme, packing). ``secret``: CKKS keys saved
    with ``save_secret``."""
    from crypto_nn.errors import CompileError
    from crypto_nn.roles import parse_description

    desc = parse_description(description)
    role = (desc.get("scheme"), desc.get("packing", "batch"))
    if role[0] == "bfv" and secret is not None:
        raise CompileError("BFV keys are made per session; saved BFV secrets are not supported")
    if role in (("ckks", "batch"), ("ckks", "single")):
        from crypto_nn.ckks.client import CkksClient
        from crypto_nn.ckks.plan import CkksClientPlan

        return CkksClient(CkksClientPlan.from_description(desc), secret=secret)
    if role == ("bfv", "batch"):
        from crypto_nn.bfv.client import BfvClient

        return BfvClient(desc)
    if role == ("bfv", "single"):
        from crypto_nn.bfv.client import BfvSingleClient
        from crypto_nn.bfv.plan import BfvSingleClientPlan

        return BfvSingleClient(BfvSingleClientPlan.from_description(desc))
    raise CompileError(
        f"plan scheme/packing {str(role[0])[:20]!r}/{str(role[1])[:20]!r}: not ckks or bfv, "
        "batch or single"
    )


def load_plan(path):
    """A plan saved with ``plan.save(path)`` (format and version checked first)."""
    from crypto_nn import roles

    return roles.load(path)
