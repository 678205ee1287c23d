"""BadNets and Neural Cleanse on MNIST-5k: on the 4-class subset of seed 003 the smallest
reversed trigger names the backdoored model and its target class; on all ten classes the
MAD anomaly index (> 2) does; unlearning removes the backdoor."""

import numpy as np
import pytest
import torch
from rich.console import Console

from adversarial.defense_cli import select_classes
from adversarial.defenses.badnets import Trigger, attack_success, poison
from adversarial.defenses.cleanse import CleanseConfig, anomaly_indices, cleanse, unlearn
from adversarial.defenses.judge import accuracy
from nets import data
from nets.train import TrainConfig
from tests.helpers import train_small

QUIET = Console(quiet=True)
CFG = TrainConfig(epochs=4, batch_size=64, lr=3e-3, seed=0)
TARGET = 2
TRIGGER = Trigger(size=4, position="bottom-right", pattern="checker")


# ten classes take 2–3× the four (ten masks to reverse): that run is in the slow suite
@pytest.fixture(
    scope="module",
    params=["0,1,2,3", pytest.param(None, marks=pytest.mark.slow)],
    ids=["4 classes", "10 classes"],
)
def subset(request):
    return (
        select_classes(data.load("mnist-5k", "train"), request.param),
        select_classes(data.load("mnist-5k", "test"), request.param),
    )


def _trained(train_set):
    return train_small("cnn", train_set, epochs=4, batch_size=64, lr=3e-3, width=16, depth=2)


@pytest.fixture(scope="module")
def models_pair(subset):
    train_set, _ = subset
    poisoned, picks = poison(train_set, TRIGGER, TARGET, rate=0.1, seed=0)
    assert len(picks) == round(0.1 * len(train_set)) and (poisoned.labels[picks] == TARGET).all()
    return _trained(train_set), _trained(poisoned)


def _xy(ds):
    return torch.from_numpy(ds.images), torch.from_numpy(ds.labels).long()


def test_anomaly_index_uses_the_mad_consistency_constant():
    l1 = np.array([10.0, 11.0, 9.0, 2.0])
    median = np.median(l1)
    mad = 1.4826 * np.median(np.abs(l1 - median))
    assert np.allclose(anomaly_indices(l1), (median - l1) / mad)


# ~100 s on 4 classes, 2–3× that on ten: the slow suite. The default suite runs Neural Cleanse
# and unlearning through the CLI (test_defense_cli) and the neural-cleanse experiment's tiny run.
@pytest.mark.slow
def test_cleanse_names_the_backdoored_model_and_unlearning_removes_it(subset, models_pair):
    train_set, test_set = subset
    clean, bad = models_pair
    x, y = _xy(test_set)
    assert attack_success(bad, test_set, TRIGGER, TARGET) >= 0.95
    assert accuracy(bad, x, y) > 0.93
    cfg = CleanseConfig(steps=300, seed=0)
    probe = test_set.subset(400)
    bad_report = cleanse(bad, probe, cfg, progress=False)
    clean_report = cleanse(clean, probe, cfg, progress=False)
    assert bad_report.smallest == TARGET and bad_report.norm_ratio > 5, bad_report.as_dict()
    assert clean_report.norm_ratio < 2.5, clean_report.as_dict()
    assert not clean_report.flagged, clean_report.as_dict()
    if len(train_set.classes) == 10:  # the MAD needs more than four norms to be sharp
        assert bad_report.flagged == [TARGET], bad_report.as_dict()
        assert bad_report.anomaly[TARGET] > 2
    clean_before = accuracy(bad, x, y)
    unlearn(bad, train_set, bad_report.triggers[TARGET], TrainConfig(epochs=3, seed=0, lr=2e-3),
            console=QUIET)  # fmt: skip
    assert attack_success(bad, test_set, TRIGGER, TARGET) <= 0.10
    assert accuracy(bad, x, y) >= clean_before - 0.02


def test_the_trigger_margin_puts_the_patch_flush_in_its_corner_or_refuses():
    mask, _ = Trigger(size=3, position="top-left", margin=0).mask_and_pattern((1, 8, 8))
    assert mask[:3, :3].all() and mask.sum() == 9
    mask, _ = Trigger(size=3, position="bottom-right").mask_and_pattern((1, 8, 8))
    assert mask[4:7, 4:7].all() and mask.sum() == 9  # the default: one pixel in
    with pytest.raises(Exception, match="margin -1"):
        Trigger(margin=-1)
