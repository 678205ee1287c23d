"""The GEMM route over RNS limbs: the kernel is exact modular arithmetic, and both batch
evaluators give the term route's ciphertexts bit for bit (BFV: and IntModel.forward)."""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto_nn
from crypto_nn import rns
from crypto_nn.ckks.batch import BatchEvaluator
from crypto_nn.wire import residues
from nets.layers import Square


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_kernel_is_w_times_x_mod_q_exactly(data):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_in, n_out = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 5))
    width = data.draw(st.sampled_from([1, 7, 1024, 1500]))
    qbits = data.draw(st.lists(st.integers(2, 60), min_size=1, max_size=4))
    moduli = np.array([int(rng.integers(2 ** (b - 1), 2**b)) | 1 for b in qbits], np.uint64)
    wbits = data.draw(st.sampled_from([1, 8, 20, 40]))
    weights = rng.integers(-(2**wbits), 2**wbits, (n_out, n_in))
    weights[rng.random(weights.shape) < 0.3] = 0
    x = np.stack(
        [rng.integers(0, int(q), size=(n_in, width), dtype=np.uint64) for q in moduli], axis=1
    )
    x[0, :, 0] = moduli - 1  # the largest residues
    got = rns.affine_residues(x, moduli, weights)
    for j, r, c in [
        (0, 0, 0),
        (n_out - 1, len(moduli) - 1, width - 1),
        (n_out // 2, 0, width // 2),
    ]:
        want = sum(int(weights[j, i]) * int(x[i, r, c]) for i in range(n_in)) % int(moduli[r])
        assert int(got[j, r, c]) == want


def test_seal_rounding_is_half_away_from_zero():
    v = np.array([0.5, -0.5, 1.5, -2.5, 0.49999999999999994, 2.0**52 - 0.5, -3.2])
    assert rns.seal_round(v).tolist() == [1, -1, 2, -3, 0, 2**52, -3]


def _same(a: list[bytes], b: list[bytes]) -> bool:
    return all(
        residues.parse(x)[1].tobytes() == residues.parse(y)[1].tobytes()
        for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**16), st.integers(1, 12), st.integers(1, 50), st.booleans())
def test_ckks_gemm_route_gives_the_term_routes_ciphertexts(seed, hidden, n, fused):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16, hidden), Square(), torch.nn.Linear(hidden, 3)
    ).eval()
    with torch.no_grad():  # tiny and zero weights too: rows no input reaches
        net[1].weight[0] = 0.0
        net[1].weight[-1, :3] = 1e-9
    calib = rng.random((64, 1, 4, 4)).astype(np.float32)
    plan = crypto_nn.compile(net, calib, fused=fused)
    client = crypto_nn.client_for(plan.describe())
    public = client.public_context()
    cts = client.encrypt_batch(rng.random((n, 1, 4, 4)))
    gemm = BatchEvaluator(plan, public, route="gemm").run(cts)
    terms = BatchEvaluator(plan, public, route="terms").run(cts)
    assert _same(gemm, terms)
