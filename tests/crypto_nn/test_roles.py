"""Every plan fills the three roles: a saved plan loads back and runs; the Client built
from the plan's JSON alone talks to the plan's Evaluator; a stale plan file is refused."""

import numpy as np
import pytest
import torch

import crypto_nn
from crypto_nn import roles
from crypto_nn.errors import CompileError
from integer_nn.model import IntModel
from integer_nn.ops import IntFlatten, IntLinear, IntSquare, IntTable
from nets import data, models


def _send(evaluator):
    return lambda segment, cts: evaluator.run(cts, segment=segment)


def _int_model(table: bool) -> IntModel:
    rng = np.random.default_rng(4)
    middle = (
        IntTable(values=np.maximum(np.arange(-8, 8), 0).astype(np.int64), function="relu", lo=-8)
        if table
        else IntSquare()
    )
    return IntModel(
        ops=[
            IntFlatten(),
            IntLinear(weight=rng.integers(-1, 2, (4, 16)), bias=rng.integers(-2, 3, 4)),
            middle,
            IntLinear(weight=rng.integers(-3, 4, (3, 4)), bias=np.array([1, -2, 3])),
        ],
        in_shape=(1, 4, 4),
        input_bits=1,
        output_scale=0.5,
    )


@pytest.mark.parametrize("table", [False, True])
def test_a_saved_bfv_plan_loads_and_serves_its_client_exactly(tmp_path, table):
    model = _int_model(table)
    plan = crypto_nn.compile(model, scheme="bfv", tables="client" if table else "refuse")
    assert isinstance(plan, roles.Plan)
    loaded = crypto_nn.load_plan(plan.save(tmp_path / "m.plan", {"from": "test"}))
    assert loaded.describe() == plan.describe()
    client = crypto_nn.client_for(plan.describe())
    assert isinstance(client, roles.Client)
    evaluator = loaded.evaluator(client.public_context())
    assert isinstance(evaluator, roles.Evaluator)
    images = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)
    got = client.infer(images, _send(evaluator))
    assert got.tolist() == model.forward(model.quantize_input(images)).tolist()
    assert plan.describe()["round_trips"] == int(table)


def test_a_ckks_plan_round_trips_through_its_roles(tmp_path):
    torch.manual_seed(0)
    net = models.build("mlp", (1, 8, 8), 10, hidden=8, layers=1, act="square").eval()
    images = data.load("digits", "test").images[:8]
    plan = crypto_nn.compile(net, data.load("digits", "train").images[:200])
    loaded = crypto_nn.load_plan(plan.save(tmp_path / "c.plan"))
    client = crypto_nn.client_for(plan.describe())
    timings = {}
    logits = client.infer(images, _send(loaded.evaluator(client.public_context())), timings=timings)
    with torch.no_grad():
        plain = net(torch.from_numpy(images)).numpy()
    assert np.abs(logits - plain).max() < 1e-2  # CKKS: approximate, stated bound
    assert set(timings) == {"encrypt_s", "server_s", "decrypt_s"}


def test_a_plan_file_of_another_version_is_refused_before_unpickling(tmp_path):
    plan = crypto_nn.compile(_int_model(False), scheme="bfv", verify=False)
    saved = plan.save(tmp_path / "old.plan")
    raw = saved.read_bytes().replace(b'"version": 1', b'"version": 99', 1)
    saved.write_bytes(raw)
    with pytest.raises(CompileError, match="compile the plan again"):
        crypto_nn.load_plan(saved)
    (tmp_path / "junk.plan").write_bytes(b"\x80\x04junk")
    with pytest.raises(CompileError, match="not a cryptorobust plan file"):
        crypto_nn.load_plan(tmp_path / "junk.plan")


def test_a_segment_a_plan_lacks_is_refused_by_name():
    plan = crypto_nn.compile(_int_model(True), scheme="bfv", tables="client", verify=False)
    with pytest.raises(Exception, match="segment 2; this plan has 2"):
        plan.input_count(2)


def test_a_plan_saved_by_another_version_is_refused_with_the_fix(tmp_path):
    """A class that moved since the plan was saved: a CompileError the server recompiles on,
    not an AttributeError at start-up."""
    import pickle

    path = tmp_path / "moved.plan"
    blob = pickle.dumps(roles.Progress(1, None)).replace(b"Progress", b"Vanished")
    path.write_bytes(roles.MAGIC + b'{"format": "cryptorobust.plan", "version": 1}\n' + blob)
    with pytest.raises(CompileError, match="another version of cryptorobust"):
        crypto_nn.load_plan(path)
