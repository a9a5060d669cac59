"""messages.py is the one result-to-message mapping: the node's fields, replay's bag messages, replay's
results.jsonl records and the REP-155 messages agree on edge cases (boxes outside the image, unknown gender,
empty probabilities, non-finite numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception import messages
from fer_perception.bag.writer import build_message
from fer_perception.errors import BagError
from fer_perception.msgdefs import get_typestore
from fer_perception.results import DemographicsResult, EmotionResult, Roi
from fer_perception.ros import rep155, topics


def emotion(**kw):
    base = dict(stamp_ns=2_000_000_001, frame_id="cam", face_id="face_1", roi=Roi(10, 20, 30, 40),
                source="frames", model="m", labels=["happy", "sad"], probabilities=np.array([0.8, 0.2]))
    base.update(kw)
    return EmotionResult(**base)


def demographics(**kw):
    base = dict(stamp_ns=2_000_000_001, frame_id="cam", face_id="face_1", roi=Roi(10, 20, 30, 40), model="ag",
                age=30.0, age_std=5.0, gender="male", gender_confidence=0.9)
    base.update(kw)
    return DemographicsResult(**base)


@pytest.mark.parametrize("roi, expected", [
    (Roi(-5, 3, 20, 10), [0, 3, 15, 10]),      # left edge outside: the width shrinks by what lies outside
    (Roi(4, -8, 10, 10), [4, 0, 10, 2]),
    (Roi(-50, -50, 20, 10), [0, 0, 0, 0]),     # wholly outside: empty box at the corner
    (Roi(7, 9, 0, 0), [7, 9, 0, 0]),
])
def test_box_outside_the_image_is_the_same_in_message_record_and_rep155(roi, expected):
    store = get_typestore()
    r = emotion(roi=roi)
    f = messages.emotion_fields(r)
    msg = build_message(store, topics.EMOTION_TYPE, f)
    assert [msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height] == expected
    assert messages.emotion_record(r, 0)["roi"] == expected
    d = demographics(roi=roi)
    assert messages.demographics_record(d, 0)["roi"] == expected
    dm = build_message(store, topics.DEMOGRAPHICS_TYPE, messages.demographics_fields(d))
    assert [dm.roi.x_offset, dm.roi.y_offset, dm.roi.width, dm.roi.height] == expected
    rf = messages.roi_fields(roi)
    assert [rf["x_offset"], rf["y_offset"], rf["width"], rf["height"]] == expected


@pytest.mark.parametrize("gender", ["", "unknown", "other", "Female"])
def test_unknown_gender_is_empty_with_zero_confidence_everywhere(gender):
    d = demographics(gender=gender, gender_confidence=0.5)
    f = messages.demographics_fields(d)
    assert (f["gender"], f["gender_confidence"]) == ("", 0.0)
    rec = messages.demographics_record(d, 0)
    assert (rec["gender"], rec["gender_confidence"]) == ("", 0.0)
    sb = rep155.softbiometrics_fields(d)
    assert (sb["gender"], sb["gender_confidence"]) == (rep155.GENDER_UNDEFINED, 0.0)
    msg = build_message(get_typestore(), topics.DEMOGRAPHICS_TYPE, f)
    assert (msg.gender, msg.gender_confidence) == ("", 0.0)


def test_known_genders_map_the_same_way():
    for gender, code in (("female", rep155.GENDER_FEMALE), ("male", rep155.GENDER_MALE)):
        d = demographics(gender=gender, gender_confidence=0.75)
        assert messages.demographics_fields(d)["gender"] == gender
        assert messages.demographics_record(d, 0)["gender_confidence"] == 0.75
        assert rep155.softbiometrics_fields(d)["gender"] == code


def test_empty_probabilities_give_an_empty_label_everywhere():
    r = emotion(labels=[], probabilities=np.zeros(0))
    f = messages.emotion_fields(r)
    assert (f["label"], f["confidence"], f["labels"], f["probabilities"]) == ("", 0.0, [], [])
    msg = build_message(get_typestore(), topics.EMOTION_TYPE, f)
    assert msg.label == "" and len(msg.probabilities) == 0 and msg.labels == []
    rec = messages.emotion_record(r, 5)
    assert rec["label"] == "" and rec["probabilities"] == []
    ex = rep155.expression_fields(r)
    assert ex["confidence"] == 0.0 and (ex["valence"], ex["arousal"]) == (0.0, 0.0)


def test_non_finite_numbers_become_zero_in_message_and_record():
    r = emotion(probabilities=np.array([np.nan, 0.2]), latency_ms=float("inf"))
    f = messages.emotion_fields(r)
    assert f["probabilities"][0] == 0.0 and f["latency_ms"] == 0.0
    rec = messages.emotion_record(r, 0)
    assert rec["probabilities"][0] == 0.0 and rec["latency_ms"] == 0.0
    d = demographics(age=float("nan"), age_std=float("nan"))
    assert messages.demographics_record(d, 0)["age"] == 0.0
    assert rep155.softbiometrics_fields(d)["age"] == 0


def test_record_carries_the_message_fields():
    r = emotion(window_ns=87_000_123, latency_ms=12.34567)
    rec = messages.emotion_record(r, 99)
    f = messages.emotion_fields(r)
    assert rec["window_ns"] == 87_000_123 and rec["latency_ms"] == 12.346
    assert rec["label"] == f["label"] == "happy" and rec["confidence"] == pytest.approx(0.8)
    assert (rec["kind"], rec["t_ns"], rec["stamp_ns"], rec["frame_id"], rec["face_id"]) == (
        "emotion", 99, 2_000_000_001, "cam", "face_1")


def test_build_message_refuses_incomplete_or_unknown_fields():
    store = get_typestore()
    f = messages.demographics_fields(demographics())
    with pytest.raises(BagError, match=r"missing fields \['age'\], unknown fields \[\]"):
        build_message(store, topics.DEMOGRAPHICS_TYPE, {k: v for k, v in f.items() if k != "age"})
    with pytest.raises(BagError, match=r"missing fields \[\], unknown fields \['extra'\]"):
        build_message(store, topics.DEMOGRAPHICS_TYPE, dict(f, extra=1))


def test_topic_names_have_one_home():
    from fer_perception.commands.replay import OUT_TOPICS

    assert OUT_TOPICS["emotion_events"] == ("/fer/emotion/events", topics.EMOTION_TYPE)
    assert OUT_TOPICS["annotated"] == ("/fer/annotated_image", topics.IMAGE_TYPE)
    assert set(OUT_TOPICS) == set(topics.OUTPUTS)
    assert topics.resolve("demographics", "/robot/fer/") == "/robot/fer/demographics"
    assert topics.resolve("/diagnostics") == "/diagnostics"
