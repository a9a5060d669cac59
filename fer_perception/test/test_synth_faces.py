"""Synthetic face clips: shapes, determinism, expression dynamics, geometry ground truth, Haar detectability."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.errors import ConfigError
from fer_perception.labels import FERDVS_CLASSES, SYNTHETIC_CLASSES
from fer_perception.synth.faces import (
    EXPRESSIONS,
    SyntheticFaceConfig,
    UnknownExpressionError,
    expression_name,
    haar_detection_rate,
    make_identity,
    nose_centred_crops,
    render_clip,
)

SMALL = SyntheticFaceConfig(n_frames=12)


def test_clip_shapes_and_dtypes():
    clip = render_clip("happy", 0, SMALL)
    assert clip.frames.shape == (12, 200, 200, 3) and clip.frames.dtype == np.uint8
    assert clip.times_s.shape == (12,)
    np.testing.assert_allclose(np.diff(clip.times_s), 1 / 30)
    assert clip.boxes.shape == (12, 4) and clip.nose.shape == (12, 2) and clip.strength.shape == (12,)
    assert clip.label == "happy" and clip.label_index == 0 and clip.ferdvs_label == 1
    assert clip.aus.shape[0] == 12


def test_any_size_renders():
    clip = render_clip("anger", 1, SyntheticFaceConfig(width=96, height=64, n_frames=3))
    assert clip.frames.shape == (3, 64, 96, 3)


def test_deterministic_per_seed_and_different_across_seeds():
    a = render_clip("fear", 5, SMALL)
    b = render_clip("fear", 5, SMALL)
    c = render_clip("fear", 6, SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.frames, c.frames)
    assert a.identity == make_identity(5) and a.identity != c.identity


def test_identity_can_be_shared_across_clips():
    ident = make_identity(42)
    a = render_clip("happy", 1, SMALL, identity=ident)
    b = render_clip("sadness", 2, SMALL, identity=ident)
    assert a.identity == b.identity == ident


def test_strength_ramps_from_neutral_to_apex():
    clip = render_clip("surprise", 3, SyntheticFaceConfig(n_frames=30))
    s = clip.strength
    assert s[0] == 0.0 and s[-1] == pytest.approx(1.0)
    assert np.all(np.diff(s) >= -1e-12)
    neutral = render_clip("neutral", 3, SyntheticFaceConfig(n_frames=30))
    assert np.all(neutral.strength == 0) and neutral.label == "neutral" and neutral.ferdvs_label is None


def test_expression_changes_the_face_more_than_neutral_idle():
    """Without motion, lighting or blinks, only the expression changes the picture; neutral stays still."""
    still = SyntheticFaceConfig(n_frames=10, translation=0, rotation_deg=0, scale_drift=0, light_gain=0,
                                light_gradient=0, blink_rate_hz=0)
    neutral = render_clip("neutral", 4, still)
    assert np.abs(neutral.frames[-1].astype(int) - neutral.frames[0]).max() == 0
    for name in FERDVS_CLASSES:
        clip = render_clip(name, 4, still)
        diff = np.abs(clip.frames[-1].astype(int) - clip.frames[0]).sum(-1)
        assert (diff > 30).sum() > 150, name


def test_apex_faces_differ_between_expressions():
    still = SyntheticFaceConfig(n_frames=2, translation=0, rotation_deg=0, scale_drift=0, light_gain=0,
                                light_gradient=0, blink_rate_hz=0, onset=0.0, apex=0.5)
    apex = {name: render_clip(name, 9, still).frames[-1].astype(int) for name in FERDVS_CLASSES}
    for i, a in enumerate(FERDVS_CLASSES):
        for b in FERDVS_CLASSES[i + 1:]:
            assert (np.abs(apex[a] - apex[b]).sum(-1) > 30).sum() > 100, (a, b)


def test_centered_config_puts_the_nose_near_the_centre():
    clip = render_clip("disgust", 2, SyntheticFaceConfig(n_frames=8))
    np.testing.assert_allclose(clip.nose.mean(0), [100, 100], atol=8)
    x, y, w, h = clip.boxes[0]
    assert x < 100 < x + w and y < 100 < y + h
    assert 0.6 * 200 < h < 0.9 * 200


def test_scene_face_stays_inside_the_image():
    for seed in range(6):
        clip = render_clip("fear", seed, SyntheticFaceConfig.scene(n_frames=4))
        b = clip.boxes
        assert b[:, 0].min() >= 0 and b[:, 1].min() >= 0
        assert (b[:, 0] + b[:, 2]).max() <= 640 and (b[:, 1] + b[:, 3]).max() <= 480


def test_face_box_matches_skin_pixels():
    """The ground-truth box lies on the drawn face: its centre has skin colour."""
    clip = render_clip("neutral", 11, SyntheticFaceConfig.scene(n_frames=1, clutter=0, light_gain=0,
                                                                light_gradient=0, blur=0))
    x, y, w, h = clip.boxes[0]
    cheek = clip.frames[0, int(y + 0.55 * h), int(x + 0.3 * w)].astype(float)
    np.testing.assert_allclose(cheek, clip.identity.skin, atol=3)


def test_haar_cascade_detects_most_scene_frames():
    rates = [haar_detection_rate(render_clip(name, seed, SyntheticFaceConfig.scene(n_frames=12)), step=3)
             for seed in (0, 1) for name in EXPRESSIONS]
    assert np.mean(rates) >= 0.85, rates


def test_expression_names_and_errors():
    assert EXPRESSIONS == SYNTHETIC_CLASSES
    assert expression_name("sad") == "sadness" and expression_name("Angry") == "anger"
    with pytest.raises(UnknownExpressionError, match="contempt"):
        render_clip("contempt", 0, SMALL)
    with pytest.raises(ConfigError, match="n_frames"):
        SyntheticFaceConfig(n_frames=0)
    with pytest.raises(ConfigError, match="onset"):
        SyntheticFaceConfig(onset=0.9, apex=0.5)


def test_project_haar_detector_finds_the_faces_too():
    detect = pytest.importorskip("fer_perception.faces.detect")
    det = detect.HaarFaceDetector()
    rates = [haar_detection_rate(render_clip(name, 7, SyntheticFaceConfig.scene(n_frames=8)), step=4, detector=det)
             for name in EXPRESSIONS]
    assert np.mean(rates) >= 0.8, rates


def test_nose_centred_crops_of_a_scene():
    scene = render_clip("happy", 3, SyntheticFaceConfig.scene(n_frames=6))
    crops = nose_centred_crops(scene, size=200)
    assert crops.frames.shape == (6, 200, 200, 3) and crops.label == "happy"
    np.testing.assert_allclose(crops.nose[0], [100, 100], atol=1e-6)
    assert crops.boxes[0, 3] == pytest.approx(0.77 * 200)
    # fixed crop: later frames keep the head motion; follow: every frame centred
    follow = nose_centred_crops(scene, size=200, follow=True)
    np.testing.assert_allclose(follow.nose, np.full((6, 2), 100.0), atol=1e-6)
    # the crop shows the same picture as the scene, scaled
    x, y, w, h = scene.boxes[0]
    k = 200 / (h / 0.77)
    cy, cx = int(scene.nose[0, 1] - 0.3 * h), int(scene.nose[0, 0])
    cyc, cxc = int(round(100 - 0.3 * h * k)), 100
    np.testing.assert_allclose(crops.frames[0, cyc, cxc].astype(float), scene.frames[0, cy, cx].astype(float), atol=40)
