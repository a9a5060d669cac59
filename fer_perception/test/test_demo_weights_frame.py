"""The synthetic demo weights of the frame path: present, small, described by their cards, and they learned
(checked on synthetic subjects never seen in training)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fer_perception.data.synthetic_faces import age_gender_crops, expression_crops
from fer_perception.labels import SYNTHETIC_CLASSES
from fer_perception.runtime.frame_models import DEMO_WEIGHTS, AgeGenderModel, ExpressionModel
from fer_perception.train.frame_demo import sha256

FRESH = range(777_000, 777_016)  # subjects far from every training/validation/test seed range


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path_factory, monkeypatch):
    """Keep exported ONNX files of these tests out of the user's cache."""
    monkeypatch.setenv("FER_PERCEPTION_CACHE", str(tmp_path_factory.getbasetemp() / "onnx_cache"))


@pytest.mark.parametrize("kind", ["light", "agegender"])
def test_demo_weights_are_small_and_carded(kind):
    path = DEMO_WEIGHTS[kind]
    assert os.path.isfile(path), f"missing demo weights {path}"
    assert os.path.getsize(path) < 2_000_000
    assert "synthetic" in os.path.basename(path)
    card = json.loads(open(os.path.splitext(path)[0] + ".json").read())
    assert card["synthetic"] is True and card["kind"] == kind
    assert card["sha256"] == sha256(path) and card["bytes"] == os.path.getsize(path)
    assert card["training_command"].startswith("fer-perception train")
    if kind == "light":
        assert card["classes"] == list(SYNTHETIC_CLASSES)


def test_light_demo_recognises_apex_expressions_of_new_subjects():
    model = ExpressionModel("light", device="cpu")
    assert model.labels == SYNTHETIC_CLASSES
    x, y = expression_crops(FRESH, frames_per_clip=1, size=64, min_strength=0.9)
    pred = model.predict(list(x)).argmax(1)
    acc = float((pred == y).mean())
    assert acc >= 0.8, f"apex accuracy {acc:.3f} on {len(y)} fresh crops"


def test_light_demo_on_scene_images_with_haar_boxes():
    """The pipeline's frame path: a scene image, boxes from OpenCV's Haar detector, image + boxes in."""
    from fer_perception.faces.detect import make_detector
    from fer_perception.synth.faces import SyntheticFaceConfig, render_clip

    model = ExpressionModel("light", device="cpu")
    detector = make_detector("haar")
    hits = tried = 0
    for i, expr in enumerate(SYNTHETIC_CLASSES * 2):
        clip = render_clip(expr, 888_000 + i, SyntheticFaceConfig.scene(n_frames=12))
        dets = detector.detect(clip.frames[-1])
        if not dets:
            continue
        tried += 1
        p = model.predict(clip.frames[-1], [dets[0].box])
        hits += int(model.labels[int(p.argmax())] == expr)
    assert tried >= 10
    assert hits >= 0.75 * tried, f"{hits}/{tried} detected scene faces right"


def test_age_gender_demo_beats_the_mean_and_knows_gender():
    model = AgeGenderModel(device="cpu")
    x, age, gender = age_gender_crops(range(778_000, 778_040), frames_per_clip=1, size=64)
    pred = model.predict(list(x))
    mae = float(np.abs(pred.age - age).mean())
    card = json.loads(open(os.path.splitext(DEMO_WEIGHTS["agegender"])[0] + ".json").read())
    center = float(card["config"]["age_center"])  # the training-set mean age
    baseline = float(np.abs(center - age).mean())
    assert mae < 0.6 * baseline, f"MAE {mae:.2f} vs predict-the-mean {baseline:.2f}"
    acc = float(((pred.p_female >= 0.5) == (gender == 1)).mean())
    assert acc >= 0.8, f"gender accuracy {acc:.3f}"
    assert np.all(pred.age_std > 0)


def test_age_gender_demo_on_scene_images_with_haar_boxes():
    from fer_perception.data.synthetic_faces import demographic_identity, demographics_for_seed
    from fer_perception.faces.detect import make_detector
    from fer_perception.synth.faces import SyntheticFaceConfig, render_clip

    model = AgeGenderModel(device="cpu")
    detector = make_detector("haar")
    err, right, truth = [], [], []
    for seed in range(779_000, 779_020):
        age, gender = demographics_for_seed(seed)
        clip = render_clip("neutral", seed, SyntheticFaceConfig.scene(n_frames=6),
                           identity=demographic_identity(seed, age, gender))
        dets = detector.detect(clip.frames[-1])
        if not dets:
            continue
        pred = model.predict(clip.frames[-1], [dets[0].box])
        err.append(abs(float(pred.age[0]) - age))
        right.append((pred.p_female[0] >= 0.5) == (gender == 1))
        truth.append(age)
    assert len(err) >= 15
    baseline = float(np.mean(np.abs(np.asarray(truth) - np.mean(truth))))
    assert np.mean(err) < 0.6 * baseline and np.mean(right) >= 0.8
