"""Compile a network to a homomorphic-encryption plan (TenSEAL CKKS / BFV) and run it.

``crypto_nn.compile`` is the one entry point: a torch model and calibration images for
CKKS, an ``integer_nn.IntModel`` for BFV. The modules behind it load lazily, so importing
a small piece (``crypto_nn.framing`` in the server's event loop) stays cheap.
"""

from __future__ import annotations


def compile(model, calibration=None, *, scheme: str = "ckks", packing: str = "batch", **options):
    """→ a plan. CKKS: ``compile(torch_model, calibration, packing="batch"|"single",
    poly_degree=2, ...)`` (``crypto_nn.plan.compile``). BFV: ``compile(int_model,
    scheme="bfv", packing="batch"|"single", tables="refuse"|"poly"|"client")`` — exact
    plans (``crypto_nn.bfv``, ``bfv_single``, ``bfv_client_aided``)."""
    from crypto_nn.errors import CompileError

    if scheme == "ckks":
        from crypto_nn.plan import compile as compile_ckks

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
        from crypto_nn.bfv_single import compile_bfv_single

        return compile_bfv_single(model, **options)
    if packing != "batch":
        raise CompileError(f"packing {packing!r}: choose batch or single")
    if tables == "client":
        from crypto_nn.bfv_client_aided import compile_client_aided

        return compile_client_aided(model, **options)
    from crypto_nn.bfv import compile_bfv

    return compile_bfv(model, tables=tables, **options)
