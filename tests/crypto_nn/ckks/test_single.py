import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from crypto_nn import slots as schedule
from crypto_nn.ckks import compile as plan_mod
from crypto_nn.ckks.client import CkksClient, make_keys
from crypto_nn.ckks.plan import CkksClientPlan
from crypto_nn.ckks.single import CkksSingleEvaluator
from crypto_nn.ckks.single_ring import RingSingle
from crypto_nn.errors import CompileError, ContextError
from crypto_nn.wire import residues, seal_bytes
from nets.layers import Square as TorchSquare
from tests.ckks_bounds import single_error_bound as error_bound


def _conv_net(act: nn.Module) -> nn.Module:
    """conv (3 channels, padding, stride 2) → act → linear → act → linear, on 8×8 digits."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        act,
        nn.Flatten(),
        nn.Linear(48, 12),
        act,
        nn.Linear(12, 10),
    ).eval()


@pytest.fixture(scope="module")
def square_plan(digits):
    return plan_mod.compile(_conv_net(TorchSquare()), digits[0].images[:300], packing="single")


def _run(plan, images, keys=None, public=None):
    if keys is None:
        keys, public = make_keys(plan)
    evaluator = CkksSingleEvaluator(plan, public)
    return np.stack([keys.decrypt_single(evaluator.run(keys.encrypt_single(i))) for i in images])


@pytest.mark.parametrize("act", ["square", "relu"])
def test_encrypted_logits_match_plain_within_derived_bound(act, square_plan, digits):
    plan = (
        square_plan
        if act == "square"
        else plan_mod.compile(_conv_net(nn.ReLU()), digits[0].images[:300], packing="single")
    )
    images = digits[1].images[:6]
    logits = _run(plan, images)
    plain = plan.forward_plain(images)
    bound = error_bound(plan, images)
    assert np.abs(logits - plain).max() <= bound
    assert bound < 0.05 * np.abs(plain).max()  # tight enough for an argmax to mean something
    assert (logits.argmax(1) == plain.argmax(1)).all()


def test_plan_json_is_all_a_client_needs(square_plan, digits):
    desc = json.loads(square_plan.to_json())
    client_plan = CkksClientPlan.from_description(desc)
    assert desc["packing"] == "single" and desc["galois_keys"] and desc["rotations"]
    # powers of two, the baby steps below g and the first layer's input steps t·G (both
    # hoisted on the ring route)
    hoisted = {i for st in square_plan.program.steps if st.diagonals
               for i in range(1, st.diagonals.baby)}  # fmt: skip
    hoisted |= set(square_plan.program.steps[0].im2col.input_steps)
    assert len(square_plan.program.steps[0].im2col.input_steps) == 7
    assert all(r & (r - 1) == 0 or r in hoisted for r in desc["rotations"])
    keys = CkksClient(client_plan)
    images = digits[1].images[:3]
    logits = _run(square_plan, images, keys, keys.public_context())
    np.testing.assert_allclose(
        logits, square_plan.forward_plain(images), atol=error_bound(square_plan, images)
    )


def test_context_missing_a_rotation_key_is_refused_when_registered(square_plan):
    short = dataclasses.replace(square_plan, rotations=square_plan.rotations[:-1])
    public = CkksClient(short).public_context()
    with pytest.raises(
        ContextError, match=rf"lacks rotation keys for steps \[{square_plan.rotations[-1]}\]"
    ):
        CkksSingleEvaluator(square_plan, public)
    batch_like = dataclasses.replace(square_plan, rotations=[])
    with pytest.raises(ContextError, match="no galois_keys part"):
        CkksSingleEvaluator(square_plan, CkksClient(batch_like).public_context())


def test_wrong_number_of_inputs_and_batch_plans_are_refused(square_plan, digits):
    keys, public = make_keys(square_plan)
    evaluator = CkksSingleEvaluator(square_plan, public)
    cts = keys.encrypt_single(digits[1].images[0])
    with pytest.raises(ContextError, match="this plan takes 1"):
        evaluator.run(cts * 2)
    with pytest.raises(ContextError, match="packs batches"):
        batch = plan_mod.compile(_conv_net(TorchSquare()), digits[0].images[:50])
        CkksClient(batch).encrypt_single(digits[1].images[0])


def test_single_packing_refuses_two_activations_in_a_row(digits):
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 8), TorchSquare(), TorchSquare(), nn.Linear(8, 10)
    )
    with pytest.raises(CompileError, match="affine → square → square → affine"):
        plan_mod.compile(net, digits[0].images[:50], packing="single")


def test_parameters_fuse_affine_and_square_into_one_prime(square_plan):
    p = square_plan.params
    s, w = p.scale_bits, p.weight_scale_bits
    chain = p.coeff_mod_bit_sizes
    assert chain[1:-1] == (s + 2 * w,) * 2  # one prime per activation, none per affine layer
    assert chain[0] >= s + w + 2  # the logits decrypt at Δ·Δw from the first prime


# --- the slot schedule itself, on plain vectors ---------------------------------------


@st.composite
def _layer_case(draw):
    slots = 256
    m = draw(st.integers(1, 20))
    n_blocks = draw(st.integers(1, 3))
    blocks, n_in = [], 0
    for _ in range(n_blocks):
        period = 1 << draw(st.integers(0, 5))
        count = draw(st.integers(1, period))
        entries = np.full(period, -1)
        entries[np.sort(draw(st.permutations(range(period)))[:count])] = np.arange(
            n_in, n_in + count
        )
        blocks.append(schedule.Block(entries, period))
        n_in += count
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    weight = rng.normal(size=(m, n_in)) * (rng.random((m, n_in)) < 0.6)
    return slots, weight, rng.normal(size=m), blocks, rng.normal(size=n_in)


@settings(max_examples=60, deadline=None)
@given(_layer_case())
def test_diagonal_schedule_computes_the_matrix_product(case):
    slots, weight, bias, blocks, x = case
    xs = [np.tile(np.concatenate([x, [0.0]])[b.entries], slots // b.period) for b in blocks]
    diag = schedule.diagonals(weight, bias, blocks, slots)
    y = schedule.apply_plain(diag, xs)
    expected = weight @ x + bias
    for s in range(0, slots, diag.out_period):  # every period holds the whole output
        np.testing.assert_allclose(y[s : s + len(expected)], expected, atol=1e-9)
    babies = set(range(1, diag.baby)) if diag.baby <= schedule.HOIST_MAX_BABY else {1}
    assert all(r & (r - 1) == 0 or r in babies for r in diag.rotations)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 40), st.integers(1, 30), st.sampled_from([64, 256]))
def test_im2col_schedule_computes_the_first_layer(seed, m, n, slots):
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(m, n)) * (rng.random((m, n)) < 0.3)
    bias = rng.normal(size=m)
    x = rng.random(n)
    first = schedule.im2col(weight, slots)
    outs = schedule.apply_im2col_plain(first, bias, schedule.encode_image(first.layouts, x))
    got = np.full(m, np.nan)
    for block, out in zip(first.blocks, outs, strict=True):
        for s, e in enumerate(block.entries):
            if e >= 0:
                got[e] = out[s]
    np.testing.assert_allclose(got, weight @ x + bias, atol=1e-9)
    # the ring route's hoisting: the first levels on the input (its rotations by t·G, times
    # the weights rotated alike), then the remaining levels — the same slots
    for chunk, xc in enumerate(schedule.encode_image(first.layouts, x)):
        for r in range(len(first.weights[chunk])):
            acc = sum(
                schedule.rot(xc, step) * wt
                for step, wt in zip(
                    [0, *first.input_steps], first.rotated_weights(chunk, r), strict=True
                )
            )
            for step in first.rotations_after_hoisting:
                acc = acc + schedule.rot(acc, step)
            i = chunk * len(first.weights[chunk]) + r
            unbiased = outs[i] - schedule.bias_pattern(first.blocks[i], bias, slots)
            np.testing.assert_allclose(acc, unbiased, atol=1e-9)


# --- weights that encode to zero ------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(_layer_case(), st.data())
def test_diagonals_that_encode_to_zero_are_skipped_and_counted(case, data_):
    """A diagonal whose values all round to 0 at the weight scale encodes to the zero
    plaintext (SEAL would refuse its product): it is left out, counted, and the product
    loses only those sub-resolution terms."""
    from crypto_nn.ckks.params import CkksParams

    slots, weight, bias, blocks, x = case
    params = CkksParams(8192, (46, 57, 57, 57), 25, weight_scale_bits=16)
    tiny = data_.draw(st.floats(1e-12, 1e-8))
    full = schedule.diagonals(weight, bias, blocks, slots)
    picked = data_.draw(st.sets(st.sampled_from(sorted(full.plain)) if full.plain else st.nothing(),
                                max_size=len(full.plain)))  # fmt: skip
    for key in picked:  # make these diagonals tiny (the rest keep their values)
        full.plain[key] = full.plain[key] * tiny
    test = params.encodes_to_zero()
    kept = {k: v for k, v in full.plain.items() if not test(v)}
    dropped = set(full.plain) - set(kept)
    assert set(picked) <= dropped  # every tiny diagonal encodes to 0 (a sparse one may too)
    assert schedule.diagonals(weight * 0, bias, blocks, slots).plain == {}
    diag = schedule.Diagonals(kept, full.baby, full.giants, full.out_period, full.in_period,
                            full.bias, full.out, skipped=len(dropped))  # fmt: skip
    xs = [np.tile(np.concatenate([x, [0.0]])[b.entries], slots // b.period) for b in blocks]
    y = schedule.apply_plain(diag, xs)
    reference = schedule.apply_plain(full, xs)  # with every diagonal
    # what is lost is at most the dropped diagonals' terms: each below the weight scale
    lost = sum(np.abs(full.plain[k]).max() for k in dropped) * max(np.abs(x).max(), 1.0)
    np.testing.assert_allclose(y, reference, atol=lost + 1e-9)
    assert lost <= len(dropped) * 2.0**-6


def test_a_layer_whose_weights_all_round_to_zero_is_refused_at_compile_time(digits):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), TorchSquare(), nn.Linear(16, 10)).eval()
    with torch.no_grad():
        net[-1].weight.mul_(1e-7)
    with pytest.raises(CompileError, match=r"affine layer 1: every weight rounds to 0"):
        plan_mod.compile(net, digits[0].images[:200], packing="single")


def test_single_plans_describe_the_skipped_diagonals(square_plan):
    assert square_plan.describe()["zero_diagonals_skipped"] == 0


def test_ring_route_is_seals_bytes_unhoisted_and_its_slots_hoisted(square_plan, digits):
    """Our kernels run SEAL's schedule bit for bit; hoisting the baby steps changes the
    bytes (the digits' sign convention) but not the slots beyond the derived bound."""
    keys, public = make_keys(square_plan)
    seal_ev = CkksSingleEvaluator(square_plan, public, route="seal")
    image = digits[1].images[0]
    cts = keys.encrypt_single(image)
    reference = seal_bytes.dumps(seal_ev.evaluate(seal_ev.load_inputs(cts)))
    ref_meta, ref = residues.parse(reference)
    meta, exact = residues.parse(RingSingle(seal_ev, hoist=False).run(seal_ev.load_inputs(cts)))
    assert meta == ref_meta and np.array_equal(exact, ref)
    assert any(st.diagonals and st.diagonals.baby > 1 for st in square_plan.program.steps)
    (hoisted,) = CkksSingleEvaluator(square_plan, public).run(cts)
    assert not np.array_equal(residues.parse(hoisted)[1], ref)
    np.testing.assert_allclose(
        keys.decrypt_single([hoisted]),
        keys.decrypt_single([reference]),
        atol=error_bound(square_plan, image[None]),
    )
    with pytest.raises(ValueError, match="route 'gpu': ring or seal"):
        CkksSingleEvaluator(square_plan, public, route="gpu")
