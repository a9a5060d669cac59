"""annotate.py: boxes in expression colours, probability bars, ids, demographics, event view; robustness."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.annotate import (
    EXPRESSION_COLORS,
    FaceAnnotation,
    annotate_events,
    annotate_frame,
    expression_color,
)
from fer_perception.errors import ConfigError, ImageError
from fer_perception.events.batch import EventBatch
from fer_perception.faces.track import Track
from fer_perception.labels import FERDVS_CLASSES, RAFDB_CLASSES
from fer_perception.results import DemographicsResult, EmotionResult, Roi

GREY = 100


def frame(h=480, w=640):
    return np.full((h, w, 3), GREY, np.uint8)


def emotion(probs, labels=RAFDB_CLASSES):
    p = np.asarray(probs, float)
    return EmotionResult(0, "cam", "face_1", Roi(0, 0, 1, 1), "frames", "test", list(labels), p)


HAPPY = emotion([0.02, 0.02, 0.02, 0.8, 0.04, 0.05, 0.05])  # RAF-DB order: happiness is index 3


def count_colour(img, colour):
    return int(np.all(img == np.array(colour, np.uint8), axis=2).sum())


def test_expression_colours_are_distinct_and_canonical():
    cols = list(EXPRESSION_COLORS.values())
    assert len(set(cols)) == len(cols)
    assert expression_color("happiness") == expression_color("happy") == EXPRESSION_COLORS["happy"]
    assert expression_color("Anger") == EXPRESSION_COLORS["angry"]
    assert expression_color("") == expression_color("something else")


def test_box_drawn_in_the_expression_colour_input_untouched():
    img = frame()
    before = img.copy()
    out = annotate_frame(img, [FaceAnnotation((200, 150, 120, 120), "face_1", HAPPY)], bars=False)
    np.testing.assert_array_equal(img, before)
    assert out.shape == img.shape and out.dtype == np.uint8
    happy = np.array(EXPRESSION_COLORS["happy"], np.uint8)
    np.testing.assert_array_equal(out[210, 200], happy)      # left edge
    np.testing.assert_array_equal(out[270, 320], happy)      # right edge
    np.testing.assert_array_equal(out[210, 260], [GREY] * 3)  # inside the box stays clean
    # the tag sits above the box, filled with the expression colour
    assert count_colour(out[120:150, 200:330], EXPRESSION_COLORS["happy"]) > 500


def test_bars_show_each_class_with_the_winner_longest():
    out = annotate_frame(frame(), [FaceAnnotation((150, 150, 120, 120), "face_1", HAPPY)])
    panel = out[150:270, 276:500]  # right of the box
    counts = {c: count_colour(panel, EXPRESSION_COLORS[c]) for c in ("happy", "surprise", "neutral")}
    assert counts["happy"] > 3 * counts["surprise"] > 0
    assert counts["neutral"] > 0
    # the panel is shaded: darker than the grey background on average
    assert panel.mean() < GREY
    # no bars without probabilities
    plain = annotate_frame(frame(), [FaceAnnotation((150, 150, 120, 120), "face_1",
                                                    {"label": "happy", "confidence": 0.8})])
    assert count_colour(plain[150:270, 276:500], EXPRESSION_COLORS["happy"]) == 0


def test_bars_go_left_when_the_box_touches_the_right_edge():
    out = annotate_frame(frame(), [FaceAnnotation((520, 200, 110, 110), "face_1", HAPPY)])
    assert count_colour(out[200:320, 300:515], EXPRESSION_COLORS["happy"]) > 100


def test_label_from_probabilities_and_colour_follows_the_winner():
    anger = {"labels": list(FERDVS_CLASSES), "probabilities": [0.1, 0.05, 0.05, 0.7, 0.05, 0.05]}
    out = annotate_frame(frame(), [{"box": (100, 100, 100, 100), "face_id": "face_7", "emotion": anger}], bars=False)
    np.testing.assert_array_equal(out[150, 100], EXPRESSION_COLORS["angry"])
    with pytest.raises(ConfigError, match="6 labels but 2 probabilities"):
        annotate_frame(frame(), [{"box": (1, 1, 5, 5),
                                  "emotion": {"labels": list(FERDVS_CLASSES), "probabilities": [1, 0]}}])


def test_demographics_and_event_lines_below_the_box():
    box = (200, 100, 120, 120)
    demo = DemographicsResult(0, "cam", "face_1", Roi(*box), "ag", 31.4, 4.2, "female", 0.92)
    base = annotate_frame(frame(), [FaceAnnotation(box, "face_1", HAPPY)], bars=False)
    with_demo = annotate_frame(frame(), [FaceAnnotation(box, "face_1", HAPPY, demo)], bars=False)
    below = (slice(225, 245), slice(200, 400))
    assert np.array_equal(base[below], frame()[below])
    changed = np.any(with_demo[below] != base[below], axis=2).sum()
    assert changed > 300  # shaded box with white text
    assert (with_demo[below] > 180).all(axis=2).sum() > 30  # white text
    both = annotate_frame(frame(), [FaceAnnotation(box, "face_1", HAPPY, demo, {"label": "fear", "confidence": 0.6})],
                          bars=False)
    two_lines = (slice(225, 270), slice(200, 400))
    assert np.any(both[two_lines] != with_demo[two_lines])


def test_many_kinds_of_face_records_and_bad_boxes():
    t = Track("face_3", np.array([50.0, 60, 80, 80]), 0.9, 3, 0, 0, 0)
    faces = [
        t,                                                                  # a tracker Track (no emotion)
        {"roi": Roi(300, 100, 60, 60), "face_id": "face_4", "emotion": HAPPY},
        FaceAnnotation((600, 440, 100, 100), "face_5", HAPPY),              # partly outside
        FaceAnnotation((-500, -500, 50, 50), "face_6", HAPPY),              # fully outside
        FaceAnnotation((10, 10, 0, 20), "face_8", HAPPY),                   # degenerate: skipped
        FaceAnnotation((10, 10, np.nan, 20), "face_9", HAPPY),
    ]
    out = annotate_frame(frame(), faces, header="frames 30 Hz")
    assert out.shape == (480, 640, 3)
    assert not np.array_equal(out[60:140, 50], frame()[60:140, 50])
    with pytest.raises(ConfigError, match="needs a box"):
        annotate_frame(frame(), [{"face_id": "x"}])


def test_mono_rgba_small_and_in_place():
    mono = np.full((120, 160), 80, np.uint8)
    out = annotate_frame(mono, [FaceAnnotation((40, 30, 50, 50), "face_1", HAPPY)])
    assert out.shape == (120, 160, 3)
    rgba = np.full((240, 320, 4), 90, np.uint8)
    assert annotate_frame(rgba, [FaceAnnotation((40, 30, 50, 50), "f", HAPPY)]).shape == (240, 320, 3)
    img = frame()
    res = annotate_frame(img, [FaceAnnotation((200, 150, 120, 120), "face_1", HAPPY)], copy=False)
    assert res is img and np.any(img != GREY)
    with pytest.raises(ImageError):
        annotate_frame(np.zeros((10, 10, 3), np.float32), [])


def test_annotate_events_from_a_batch():
    rng = np.random.default_rng(0)
    n = 5000
    x = rng.integers(0, 346, n)
    y = rng.integers(0, 260, n)
    batch = EventBatch.from_arrays(x, y, np.arange(n), rng.integers(0, 2, n), 346, 260)
    ev = {"labels": list(FERDVS_CLASSES), "probabilities": [0.1, 0.6, 0.1, 0.1, 0.05, 0.05]}
    out = annotate_events(batch, [FaceAnnotation((100, 60, 100, 100), "face_1", event_emotion=ev)])
    assert out.shape == (520, 692, 3)  # enlarged 2x to reach 480 px width
    fear = np.array(EXPRESSION_COLORS["fear"], np.uint8)
    np.testing.assert_array_equal(out[200, 200], fear)  # the window's left edge at 2x
    assert count_colour(out, EXPRESSION_COLORS["fear"]) > 800
    small = annotate_events(batch, [], min_width=0)
    assert small.shape == (260, 346, 3)
    # events outside the window untouched by annotation: the event picture itself matches the renderer
    from fer_perception.events.visualize import event_frame_image
    np.testing.assert_array_equal(small, event_frame_image(batch, 346, 260))


def test_annotate_events_from_an_image_and_errors():
    img = np.zeros((240, 320), np.uint8)
    out = annotate_events(img, [{"box": (10, 10, 50, 50), "face_id": "face_1",
                                 "emotion": {"label": "surprise", "confidence": 0.5}}])
    assert out.shape == (480, 640, 3)
    np.testing.assert_array_equal(out[60, 20], EXPRESSION_COLORS["surprise"])
    with pytest.raises(ConfigError, match="sensor size"):
        annotate_events(EventBatch.empty(), [])
    assert annotate_events(EventBatch.empty(), [], width=64, height=48).shape == (384, 512, 3)  # 8x
