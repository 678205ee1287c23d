import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nets import checkpoint, data, models
from nets.errors import CheckpointError, UserError
from nets.runinfo import resolve_device, run_info
from nets.train import TrainConfig, TrainStep, evaluate, predict, train

FAST = TrainConfig(epochs=5, batch_size=32, lr=5e-3, seed=0)


def _fresh(seed=0):
    torch.manual_seed(seed)
    return models.build("mlp", (1, 8, 8), 10, hidden=32, layers=1)


def test_training_learns_digits(digits):
    train_set, test_set = digits
    model = _fresh()
    before = evaluate(model, test_set)
    result = train(model, train_set, FAST, test_data=test_set)
    assert before < 0.3 and result.test_accuracy > 0.9
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert not model.training


def test_same_seed_same_weights_other_seed_differs(digits):
    train_set, _ = digits
    runs = []
    for seed in (0, 0, 1):
        model = _fresh(seed)
        train(model, train_set, TrainConfig(epochs=1, batch_size=64, seed=seed))
        runs.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_batch_hook_changes_training(digits):
    """A training method plugs in by overriding the loss; the loop is not copied."""
    train_set, _ = digits
    seen = []

    class FlipStep(TrainStep):
        def loss(self, model, x, y):
            seen.append(len(x))
            logits = model(x.flip(-1))  # train on mirrored images
            return F.cross_entropy(logits, y), logits

    m_std, m_flip = _fresh(), _fresh()
    train(m_std, train_set, TrainConfig(epochs=1, batch_size=100, seed=0))
    train(m_flip, train_set, TrainConfig(epochs=1, batch_size=100, seed=0), step=FlipStep())
    assert sum(seen) == len(train_set) and max(seen) == 100
    mirrored = data.Dataset(
        "m", "train", train_set.images[..., ::-1].copy(), train_set.labels, train_set.classes
    )
    assert evaluate(m_flip, mirrored) > evaluate(m_std, mirrored)


def test_divergence_is_a_clear_error(digits):
    train_set, _ = digits
    model = models.build("mlp", (1, 8, 8), 10, act="square")
    cfg = TrainConfig(epochs=1, lr=1e6, optimizer="sgd", schedule="constant")
    with pytest.raises(UserError, match="diverged .* lower --lr"):
        train(model, train_set, cfg)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs must be ≥ 1"),
        ({"lr": -1.0}, "learning rate must be > 0"),
        ({"optimizer": "lion"}, "unknown optimizer 'lion'"),
        ({"schedule": "warm"}, "unknown schedule"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(UserError, match=match):
        TrainConfig(**kwargs)


def test_predict_restores_mode(digits):
    _, test_set = digits
    model = _fresh().train()
    pred = predict(model, test_set.images[:5])
    assert model.training and pred.shape == (5,) and pred.dtype == np.int64


def _ckpt(model_name="mlp", args=None):
    return checkpoint.Checkpoint(
        model_name=model_name,
        model_args=args or {"hidden": 32, "layers": 1},
        in_shape=(1, 8, 8),
        num_classes=10,
        classes=data.DIGIT_CLASSES,
        data="digits",
        metrics={"test_accuracy": 0.5},
        run=run_info(seed=3, device="cpu"),
    )


def test_checkpoint_round_trip(tmp_path, digits):
    _, test_set = digits
    model = _fresh(4)
    path = checkpoint.save(tmp_path / "m.pt", model, _ckpt())
    loaded, meta = checkpoint.load(path)
    x = torch.from_numpy(test_set.images[:16])
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    assert meta.run["seed"] == 3 and meta.run["versions"]["torch"] == torch.__version__
    assert meta.in_shape == (1, 8, 8) and meta.model_args == {"hidden": 32, "layers": 1}
    assert not loaded.training


def test_truncated_checkpoint(tmp_path):
    path = checkpoint.save(tmp_path / "m.pt", _fresh(), _ckpt())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load(path)


def test_foreign_and_newer_checkpoints(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a cryptorobust checkpoint"):
        checkpoint.load(tmp_path / "foreign.pt")
    path = checkpoint.save(tmp_path / "m.pt", _fresh(), _ckpt())
    payload = torch.load(path, weights_only=True)
    payload["version"] = checkpoint.VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 2; .* upgrade"):
        checkpoint.load(path)


def test_checkpoint_weights_must_match_architecture(tmp_path):
    path = checkpoint.save(tmp_path / "m.pt", _fresh(), _ckpt(args={"hidden": 64, "layers": 1}))
    with pytest.raises(CheckpointError, match="weights do not match model 'mlp'"):
        checkpoint.load(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found; train one"):
        checkpoint.load(tmp_path / "none.pt")


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="unknown device 'tpu0'"):
        resolve_device("tpu0")
