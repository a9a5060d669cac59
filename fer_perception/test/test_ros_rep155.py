"""ros/rep155.py: the REP-155 (ROS4HRI) mapping without ROS: ids, face life cycle, expression / soft
biometrics fields (serialized with the hri_msgs definitions through rosbags), crops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fer_perception.results import DemographicsResult, EmotionResult, Roi
from fer_perception.ros import rep155


@dataclass
class Trk:
    face_id: str
    box: np.ndarray
    missed: int = 0


def emo(face_id, labels=("happy", "fear", "surprise", "anger", "disgust", "sadness"), p=None, stamp=7):
    p = np.array([0.7, 0.1, 0.1, 0.05, 0.05, 0.0]) if p is None else np.asarray(p, float)
    return EmotionResult(stamp_ns=stamp, frame_id="cam", face_id=face_id, roi=Roi(0, 0, 10, 10), source="frames",
                         model="m", labels=list(labels), probabilities=p)


def dem(face_id, gender="male", age=34.6, age_std=5.0, conf=0.8):
    return DemographicsResult(stamp_ns=7, frame_id="cam", face_id=face_id, roi=Roi(0, 0, 10, 10), model="ag",
                              age=age, age_std=age_std, gender=gender, gender_confidence=conf)


def test_face_topic_ids_are_valid_name_tokens():
    assert rep155.face_topic_id("face_3") == "face_3"
    assert rep155.face_topic_id("12") == "f12"
    assert rep155.face_topic_id("rgb:face-1") == "rgb_face_1"
    assert rep155.face_topic("face_3", "roi") == "/humans/faces/face_3/roi"


def test_expression_fields_use_rep155_constants_and_circumplex():
    f = rep155.expression_fields(emo("face_1"))
    assert f["expression"] == "happy" and f["confidence"] == pytest.approx(0.7)
    assert f["valence"] > 0.3 and f["arousal"] > 0
    sad = rep155.expression_fields(emo("face_1", p=[0, 0, 0, 0, 0, 1.0]))
    assert sad["expression"] == "sad" and sad["valence"] < 0 and sad["arousal"] < 0
    # labels of other models map to the REP-155 constants
    assert rep155.expression_fields(emo("f", labels=("surprise", "fear", "disgust", "happiness", "sadness",
                                                     "anger", "neutral"),
                                        p=[0, 0.9, 0, 0, 0, 0.1, 0]))["expression"] == "scared"
    v, a = rep155.valence_arousal(["neutral"], [1.0])
    assert (v, a) == (0.0, 0.0)


def test_softbiometrics_gender_codes_and_age_uint8():
    f = rep155.softbiometrics_fields(dem("face_1", "female", age=27.5))
    assert f["gender"] == rep155.GENDER_FEMALE == 1 and f["age"] == 28
    assert rep155.softbiometrics_fields(dem("x", "male"))["gender"] == rep155.GENDER_MALE == 2
    u = rep155.softbiometrics_fields(dem("x", "", conf=0.5))
    assert u["gender"] == rep155.GENDER_UNDEFINED == 0 and u["gender_confidence"] == 0.0
    assert rep155.softbiometrics_fields(dem("x", age=400.0))["age"] == 255
    assert rep155.softbiometrics_fields(dem("x", age=-3.0))["age"] == 0
    assert rep155.softbiometrics_fields(dem("x", age=float("nan")))["age"] == 0
    assert rep155.age_confidence(0.0) == 1.0 and rep155.age_confidence(10.0) == pytest.approx(np.exp(-1))
    assert rep155.age_confidence(20.0) < rep155.age_confidence(5.0)


def test_fields_serialize_with_the_hri_msgs_definitions():
    from fer_perception.bag.writer import BagWriter
    from fer_perception.msgdefs import get_typestore

    store = get_typestore()

    def build(msgtype, fields):
        kw = dict(fields)
        h = kw.pop("header")
        kw["header"] = BagWriter.header(store, h["stamp"]["sec"] * 10**9 + h["stamp"]["nanosec"], h["frame_id"])
        msg = store.types[msgtype](**kw)
        return store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)

    e = build("hri_msgs/msg/Expression", rep155.expression_fields(emo("face_1")))
    assert e.expression == e.HAPPY
    s = build("hri_msgs/msg/SoftBiometrics", rep155.softbiometrics_fields(dem("face_1", "female")))
    assert s.gender == s.FEMALE and s.age == 35
    ids = build("hri_msgs/msg/IdsList", {"header": {"stamp": {"sec": 1, "nanosec": 0}, "frame_id": ""},
                                         "ids": ["face_1", "face_2"]})
    assert list(ids.ids) == ["face_1", "face_2"]


def test_mapper_face_life_cycle_and_per_face_fields():
    m = rep155.Rep155Mapper(source="rgb")
    img = np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3)
    t1 = [Trk("face_1", np.array([10.0, 5.0, 20.0, 30.0])), Trk("", np.array([0.0, 0.0, 5.0, 5.0]))]
    u = m.update_frame("rgb", 100, "cam", t1, [emo("face_1")], [dem("face_1")], img)
    assert u.added == ["face_1"] and u.removed == [] and u.tracked["ids"] == ["face_1"]
    fu = u.faces["face_1"]
    assert fu.roi == {"x_offset": 10, "y_offset": 5, "width": 20, "height": 30, "do_rectify": False}
    assert (fu.cropped["width"], fu.cropped["height"]) == (20, 30)
    assert fu.cropped["data"] == img[5:35, 10:30].tobytes()
    assert fu.expression["expression"] == "happy" and fu.softbiometrics["gender"] == 2
    # a second face appears; the first is missed this frame: still tracked, but no roi / crop
    t2 = [Trk("face_1", np.array([10.0, 5.0, 20.0, 30.0]), missed=1), Trk("face_2", np.array([40.0, 10, 20, 20]))]
    u = m.update_frame("rgb", 200, "cam", t2, [], [], img)
    assert u.added == ["face_2"] and u.removed == [] and u.tracked["ids"] == ["face_1", "face_2"]
    assert list(u.faces) == ["face_2"]
    assert u.faces["face_2"].expression is None and u.faces["face_2"].softbiometrics is None
    u = m.update_frame("rgb", 300, "cam", [], [], [], img)
    assert u.removed == ["face_1", "face_2"] and u.tracked["ids"] == []
    # another source's images do not change the REP-155 faces
    assert m.update_frame("aps", 400, "dvs", t1, [], [], img) is None


def test_mapper_event_results_update_expression_of_tracked_faces_only():
    m = rep155.Rep155Mapper(source="aps", crops=False)
    m.update_frame("aps", 1, "dvs", [Trk("face_1", np.array([0.0, 0, 10, 10]))], image=np.zeros((20, 20), np.uint8))
    u = m.update_events([emo("face_1"), emo("sensor")])
    assert list(u.faces) == ["face_1"] and u.tracked is None and u.faces["face_1"].expression
    assert m.update_events([emo("sensor")]) is None


def test_crop_outside_the_image_is_none():
    img = np.zeros((10, 10, 3), np.uint8)
    assert rep155.crop(img, Roi(20, 20, 5, 5)) is None
    assert rep155.crop(img, Roi(-2, -2, 5, 5)).shape == (3, 3, 3)
