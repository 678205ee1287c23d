"""BFV single packing: one image per request, exact, from the plan's JSON alone."""

import dataclasses
import json

import numpy as np
import pytest

import crypto_nn
from crypto_nn.bfv.client import BfvSingleClient, public_parts
from crypto_nn.bfv.compile import compile_bfv_single
from crypto_nn.bfv.single import BfvSingleEvaluator
from crypto_nn.errors import ContextError
from integer_nn.model import IntModel
from integer_nn.ops import IntConv2d, IntFlatten, IntLinear, IntSquare


@pytest.fixture(scope="module")
def compiled():
    rng = np.random.default_rng(5)
    model = IntModel(
        ops=[
            IntConv2d(weight=rng.integers(-3, 4, (2, 1, 3, 3)), bias=rng.integers(-5, 6, 2)),
            IntSquare(),
            IntFlatten(),
            IntLinear(weight=rng.integers(-3, 4, (3, 8)), bias=np.array([4, -1, 0])),
        ],
        in_shape=(1, 4, 4),
        input_bits=2,
        output_scale=1.0,
    )
    return model, compile_bfv_single(model)


def test_bfv_single_packing_is_exact_and_needs_its_rotation_keys(compiled):
    model, plan = compiled
    assert all(r & (r - 1) == 0 for r in plan.rotations)
    client = BfvSingleClient(plan)
    evaluator = BfvSingleEvaluator(plan, client.public_context())
    x = np.random.default_rng(6).integers(0, 4, size=(3, 1, 4, 4))
    x[0] = 3
    for image, expected in zip(x, model.forward(x), strict=True):
        got = client.decrypt_single(evaluator.run_primes(client.encrypt_single(image)))
        assert got.tolist() == expected.tolist()
    with pytest.raises(
        ContextError, match=rf"lacks rotation keys for steps \[{plan.rotations[0]}\]"
    ):
        BfvSingleEvaluator(plan, _context_with_rotations(client, plan.rotations[1:]))


def test_the_client_comes_from_the_json_and_the_evaluator_reports_progress(compiled):
    """client_for serves BFV single like every other plan: JSON in, exact logits out."""
    model, plan = compiled
    plan = dataclasses.replace(plan, pixel_max=3)  # pixels in [0, 1] → round(x·3)
    client = crypto_nn.client_for(json.loads(json.dumps(plan.describe())))
    assert isinstance(client, BfvSingleClient)
    evaluator = plan.evaluator(client.public_context())
    reports: list[float] = []

    def send(segment, cts):
        assert segment == 0
        return evaluator.run(cts, reports.append)

    images = np.random.default_rng(7).integers(0, 4, size=(2, 1, 4, 4)) / 3
    logits = client.infer(images, send)
    assert logits.tolist() == model.forward(np.rint(images * 3).astype(np.int64)).tolist()
    steps = len(plan.program.steps) * len(plan.params.plain_moduli)
    assert reports == [k / steps for k in range(1, steps + 1)] * 2  # per image, in order


def _context_with_rotations(client, steps):
    """The client's public context, but with Galois keys for ``steps`` only."""
    return public_parts(
        [
            ks._replace(spec=dataclasses.replace(ks.spec, rotations=tuple(steps)))
            for ks in client._sets
        ]
    )
