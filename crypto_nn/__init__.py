"""Compile a network to a homomorphic-encryption plan (TenSEAL CKKS / BFV) and run it.

Layout: ``ckks/`` and ``bfv/`` hold the same roles under the same module names
(``params``, ``plan``, ``client``, ``batch``, ``single``); ``slots`` is the packing
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


def compile(model, calibration=None, *, scheme: str = "ckks", packing: str = "batch", **options):
    """→ a :class:`crypto_nn.roles.Plan`. CKKS: ``compile(torch_model, calibration,
    packing="batch"|"single", poly_degree=2, ...)``. BFV: ``compile(int_model,
    scheme="bfv", packing="batch"|"single", tables="refuse"|"poly"|"client")`` — exact
    plans (``bfv.plan``, ``bfv.single``, ``bfv.client_aided``)."""
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
    from integer_nn.model import IntModel

    if not isinstance(model, IntModel):
        raise CompileError(
            "BFV runs integer networks: quantise first (integer_nn.quantize(model, calibration))"
        )
    tables = options.pop("tables", "refuse")
    if packing == "single":
        if tables != "refuse":
            raise CompileError("BFV single packing takes polynomial models (x²) only")
        from crypto_nn.bfv.single import compile_bfv_single

        return compile_bfv_single(model, **options)
    if packing != "batch":
        raise CompileError(f"packing {packing!r}: choose batch or single")
    if tables == "client":
        from crypto_nn.bfv.client_aided import compile_client_aided

        return compile_client_aided(model, **options)
    from crypto_nn.bfv.plan import compile_bfv

    return compile_bfv(model, tables=tables, **options)


def client_for(description: dict, secret: bytes | None = None):
    """The :class:`crypto_nn.roles.Client` for a published plan description (JSON alone:
    no weights, no server objects). ``secret``: CKKS keys saved with ``save_secret``."""
    from crypto_nn.errors import CompileError
    from crypto_nn.roles import parse_description

    desc = parse_description(description)
    if desc.get("scheme") == "ckks":
        from crypto_nn.ckks.client import CkksClient
        from crypto_nn.ckks.plan import CkksClientPlan

        return CkksClient(CkksClientPlan.from_description(desc), secret=secret)
    if desc.get("scheme") != "bfv":
        raise CompileError(f"plan scheme {str(desc.get('scheme'))[:20]!r}: not ckks or bfv")
    if secret is not None:
        raise CompileError("BFV keys are made per session; saved BFV secrets are not supported")
    if desc.get("packing") == "single":
        raise CompileError("BFV single plans are run in process (bfv.single.BfvSingleClient)")
    from crypto_nn.bfv.client import BatchClient

    return BatchClient(desc)


def load_plan(path):
    """A plan saved with ``plan.save(path)`` (format and version checked first)."""
    from crypto_nn import roles

    return roles.load(path)
