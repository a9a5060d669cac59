"""Frame-model training modules: tiny end-to-end runs (metrics.json, confusion matrix, usable checkpoint),
the age/gender evaluation and the batch augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_perception.errors import ConfigError
from fer_perception.runtime.frame_models import AgeGenderModel, ExpressionModel
from fer_perception.train.agegender import evaluate_age_gender
from fer_perception.train.frame_common import augment_batch, class_balanced_sampler, group_split

COMMON = ["--epochs", "1", "--limit-train-batches", "2", "--no-progress", "--threads", "1", "--workers", "0"]


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path_factory, monkeypatch):
    """Keep exported ONNX files of these tests out of the user's cache."""
    monkeypatch.setenv("FER_PERCEPTION_CACHE", str(tmp_path_factory.getbasetemp() / "onnx_cache"))


def _check_report(out, n_classes):
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    cm = np.asarray(metrics["test"]["confusion_matrix"])
    assert cm.shape == (n_classes, n_classes) and cm.sum() == metrics["test"]["n"] > 0
    return metrics


@pytest.mark.slow
def test_train_light_synthetic_end_to_end(tmp_path):
    from fer_perception.train import light

    assert light.TRAIN_NAME == "light" and light.TRAIN_HELP
    out = tmp_path / "light"
    assert light.main(["--synthetic", "4", "--out", str(out), "--batch-size", "16", *COMMON]) == 0
    metrics = _check_report(out, 7)
    assert metrics["model"] == "light" and metrics["n_train"] == 4 * 7 * 3
    em = ExpressionModel("light", str(out / "light_fer.pt"), device="cpu")
    assert em.labels[-1] == "neutral" and em.meta["test_accuracy"] == metrics["test"]["accuracy"]
    p = em.predict([np.zeros((50, 50, 3), np.uint8)])
    assert p.shape == (1, 7)


@pytest.mark.slow
def test_train_agegender_synthetic_end_to_end(tmp_path):
    from fer_perception.train import agegender

    out = tmp_path / "ag"
    assert agegender.main(["--synthetic", "10", "--size", "48", "--out", str(out), "--batch-size", "8",
                           *COMMON]) == 0
    metrics = _check_report(out, 2)
    ev = metrics["age_gender"]
    assert {"age_mae", "age_mae_predict_train_mean", "gender_accuracy", "by_age_group", "by_gender"} <= set(ev)
    age, std, pf = AgeGenderModel(str(out / "age_gender.pt"), device="cpu").predict([np.zeros((40, 40, 3), np.uint8)])
    assert np.isfinite(age[0]) and std[0] > 0 and 0 <= pf[0] <= 1


@pytest.mark.slow
def test_train_dan_synthetic_smoke(tmp_path):
    from fer_perception.train import dan

    out = tmp_path / "dan"
    assert dan.main(["--synthetic", "2", "--size", "64", "--out", str(out), "--batch-size", "8", *COMMON]) == 0
    _check_report(out, 7)
    em = ExpressionModel("dan", str(out / "dan.pt"), device="cpu")
    assert em.preprocess.size == 64 and len(em.labels) == 7


def test_evaluate_age_gender_breakdown():
    ev = evaluate_age_gender(age_true=[10, 25, 25, 65], age_pred=[12, 20, 25, 60], age_std=[3, 3, 1, 1],
                             gender_true=[0, 1, 1, 0], p_female=[0.2, 0.9, 0.4, 0.1], race=[0, 1, 1, 4],
                             train_mean_age=30)
    assert ev["age_mae"] == pytest.approx(3.0)
    assert ev["age_mae_predict_train_mean"] == pytest.approx((20 + 5 + 5 + 35) / 4)
    assert ev["gender_accuracy"] == pytest.approx(0.75)
    assert ev["age_1sigma_coverage"] == pytest.approx(0.5)
    assert ev["by_age_group"]["20-29"] == {"n": 2, "age_mae": 2.5, "gender_accuracy": 0.5}
    assert ev["by_gender"]["male"]["age_mae"] == pytest.approx(3.5)
    assert set(ev["by_race"]) == {"white", "black", "others"}
    with pytest.raises(ConfigError):
        evaluate_age_gender([], [], [], [], [])


def test_group_split_keeps_subjects_apart():
    groups = np.repeat(np.arange(10), 3)
    tr, va = group_split(groups, 0.2, seed=1)
    assert len(np.intersect1d(groups[tr], groups[va])) == 0
    assert len(np.unique(groups[va])) == 2 and len(tr) + len(va) == 30
    with pytest.raises(ConfigError):
        group_split(groups, 1.5, 0)


def test_class_balanced_sampler_equalises_classes():
    labels = np.array([0] * 90 + [1] * 10)
    s = class_balanced_sampler(labels, 2, seed=0)
    drawn = labels[np.fromiter(iter(s), dtype=np.int64)]
    assert 0.35 < drawn.mean() < 0.65


def test_augment_batch_keeps_shape_and_changes_content():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16, 16)
    y = augment_batch(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(x, y)
    ident = augment_batch(x, max_shift=0, max_scale=0, max_rot_deg=0, brightness=0, contrast=0, flip=False)
    assert torch.allclose(ident, x, atol=1e-5)


def test_random_erasing_zeroes_one_rectangle_per_chosen_image():
    from fer_perception.train.frame_common import random_erasing

    torch.manual_seed(0)
    x = torch.ones(64, 3, 20, 20)
    y = random_erasing(x, p=0.5, scale=(0.02, 0.25))
    erased = (y == 0).all(dim=1)  # all channels together
    frac = erased.flatten(1).float().mean(1)
    hit = frac > 0
    assert 0.25 < hit.float().mean() < 0.75
    assert frac[hit].min() >= 1 / 400 and frac[hit].max() <= 0.26
    for i in torch.nonzero(hit).flatten()[:5]:  # a rectangle: its bounding box is entirely zero
        rows = torch.nonzero(erased[i].any(1)).flatten()
        cols = torch.nonzero(erased[i].any(0)).flatten()
        assert erased[i][rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    assert torch.equal(random_erasing(x, p=0.0), x)
