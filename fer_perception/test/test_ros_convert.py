"""messages.py, ros/convert.py and ros/qos.py: message field building without ROS, checked against the message
definitions (through rosbags, the same messages replay writes), diagnostics levels, QoS choices."""

from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest

from fer_perception.errors import ConfigError, FerPerceptionError
from fer_perception.results import DemographicsResult, EmotionResult, Roi
from fer_perception import messages
from fer_perception.bag.writer import build_message
from fer_perception.ros import convert, qos


def emotion(**kw):
    base = dict(stamp_ns=1_700_000_000_123_456_789, frame_id="dvs", face_id="face_2", roi=Roi(10, 20, 30, 40),
                source="events", model="spiking_fer", labels=["happy", "fear", "surprise"],
                probabilities=np.array([0.2, 0.7, 0.1]), window_ns=87_000_000, latency_ms=12.5)
    base.update(kw)
    return EmotionResult(**base)


def demographics(**kw):
    base = dict(stamp_ns=5_000_000_001, frame_id="cam", face_id="face_1", roi=Roi(1, 2, 3, 4), model="ag",
                age=31.4, age_std=4.2, gender="female", gender_confidence=0.9, latency_ms=3.0)
    base.update(kw)
    return DemographicsResult(**base)


def assert_matches(obj, fields, path=""):
    """Every key of ``fields`` is a field of the (rosbags) message ``obj`` with the same value."""
    for key, value in fields.items():
        assert hasattr(obj, key), f"message has no field {path}{key}"
        got = getattr(obj, key)
        if isinstance(value, dict):
            assert_matches(got, value, f"{path}{key}.")
        elif isinstance(value, (bytes, list)) and not (value and isinstance(value[0], (str, dict))):
            assert np.allclose(np.asarray(got, dtype=np.float64),
                               np.frombuffer(value, np.uint8) if isinstance(value, bytes) else value), path + key
        elif isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-6), path + key
        else:
            assert got == value, path + key


def message_fields(msg):
    """Field names of a rosbags message (constants, upper-case, excluded)."""
    return {n for n in msg.__dataclass_fields__ if n != "__msgtype__" and not n.isupper()}


def test_time_fields_floor_and_range():
    assert messages.time_fields(1_500_000_000) == {"sec": 1, "nanosec": 500_000_000}
    assert messages.time_fields(-1) == {"sec": -1, "nanosec": 999_999_999}
    assert messages.time_fields(0) == {"sec": 0, "nanosec": 0}


def test_emotion_fields_match_the_message_replay_writes():
    from fer_perception.msgdefs import get_typestore

    r = emotion()
    f = messages.emotion_fields(r)
    assert f["label"] == "fear" and f["confidence"] == pytest.approx(0.7)
    assert f["window"] == {"sec": 0, "nanosec": 87_000_000}
    assert f["header"]["stamp"] == {"sec": 1_700_000_000, "nanosec": 123_456_789}
    assert all(isinstance(v, float) for v in f["probabilities"])
    store = get_typestore()
    msg = build_message(store, "fer_perception_msgs/msg/Emotion", f)
    assert_matches(msg, f)
    # every field of the message is filled
    assert set(f) == message_fields(msg)


def test_demographics_fields_match_the_message_and_unknown_gender():
    from fer_perception.msgdefs import get_typestore

    d = demographics()
    f = messages.demographics_fields(d)
    msg = build_message(get_typestore(), "fer_perception_msgs/msg/Demographics", f)
    assert_matches(msg, f)
    assert set(f) == message_fields(msg)
    u = messages.demographics_fields(demographics(gender="unknown", gender_confidence=0.5))
    assert u["gender"] == "" and u["gender_confidence"] == 0.0


def test_roi_fields_clip_negative_corners():
    assert messages.roi_fields(Roi(-5, 3, 20, 10)) == {"x_offset": 0, "y_offset": 3, "height": 10, "width": 15,
                                                       "do_rectify": False}
    assert messages.roi_fields(Roi(-50, -50, 20, 10))["width"] == 0


def test_emotion_fields_reject_inconsistent_results_and_sanitise_nan():
    with pytest.raises(FerPerceptionError, match="face_2.*2 probabilities for 3 labels"):
        messages.emotion_fields(emotion(probabilities=np.array([0.5, 0.5])))
    f = messages.emotion_fields(emotion(latency_ms=float("nan")))
    assert f["latency_ms"] == 0.0
    assert messages.emotion_fields(emotion(), latency_ms=40.0)["latency_ms"] == 40.0


def test_image_fields_rgb_and_mono():
    from fer_perception.msgdefs import get_typestore

    rgb = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    f = messages.image_fields(rgb, 42, "cam")
    assert (f["encoding"], f["height"], f["width"], f["step"]) == ("rgb8", 6, 5, 15)
    assert_matches(build_message(get_typestore(), "sensor_msgs/msg/Image", f), f)
    m = messages.image_fields(rgb[..., 0].copy(), 42, "cam")
    assert m["encoding"] == "mono8" and m["data"] == rgb[..., 0].tobytes()


# ---------------------------------------------------------------------------------------------- diagnostics
def snap(**over):
    d = {"running": True, "drops": {"event_queue_full": 0, "image_replaced": 0}, "errors": {"model_error": 0},
         "rates": {"events_per_s": 5e6}, "latency": {"events": {"p50_ms": 10.0, "p95_ms": None}},
         "device": "cpu"}
    d.update(over)
    return d


def test_diagnostic_levels():
    assert convert.diagnostic_level(snap()) == (convert.DIAG_OK, "ok")
    prev = snap()
    now = snap(drops={"event_queue_full": 3, "image_replaced": 50})
    level, msg = convert.diagnostic_level(now, prev)
    assert level == convert.DIAG_WARN and msg == "since last report: event_queue_full +3"
    assert convert.diagnostic_level(now, now)[0] == convert.DIAG_OK  # nothing new since
    assert convert.diagnostic_level(snap(running=False))[0] == convert.DIAG_ERROR
    buf = snap(dropped_events={"event_queue_full": 0, "event_buffer_full": 700})
    level, msg = convert.diagnostic_level(buf, prev)
    assert (level, msg) == (convert.DIAG_WARN, "since last report: event_buffer_full +700 events")


def test_diagnostic_status_fields_flatten_the_snapshot():
    f = convert.diagnostic_status_fields(snap(), name="fer: inference")
    assert f["level"] == 0 and f["hardware_id"] == "cpu" and f["name"] == "fer: inference"
    kv = {v["key"]: v["value"] for v in f["values"]}
    assert kv["rates.events_per_s"] == "5000000.000"
    assert kv["latency.events.p50_ms"] == "10.000" and kv["latency.events.p95_ms"] == "n/a"
    assert kv["drops.event_queue_full"] == "0"
    assert all(isinstance(v["value"], str) for v in f["values"])


def test_diagnostics_from_a_live_runner_snapshot():
    from fer_perception.runtime.live import LiveRunner

    class P:
        config = None

    f = convert.diagnostic_status_fields(LiveRunner(P()).diagnostics())
    keys = {v["key"] for v in f["values"]}
    assert {"rates.events_per_s", "rates.event_messages_per_s", "rates.images_per_s", "processed.windows",
            "processed.frames", "drops.event_queue_full", "malformed", "latency.events.p95_ms",
            "device"} <= keys


# ---------------------------------------------------------------------------------------------- fill_message
class Msg(SimpleNamespace):
    pass


def test_fill_message_nested_arrays_and_item_factories():
    m = Msg(header=Msg(stamp=Msg(sec=0, nanosec=0), frame_id=""), roi=Msg(), labels=[], probabilities=[],
            data=None, values=[])
    f = messages.emotion_fields(emotion())
    convert.fill_message(m, {k: f[k] for k in ("header", "roi", "labels", "probabilities")})
    assert m.header.stamp.sec == 1_700_000_000 and m.header.frame_id == "dvs"
    assert m.roi.width == 30 and m.labels == ["happy", "fear", "surprise"]
    assert isinstance(m.probabilities, array.array) and m.probabilities.typecode == "f"
    convert.fill_message(m, {"data": b"\x01\x02"})
    assert isinstance(m.data, array.array) and m.data.typecode == "B" and list(m.data) == [1, 2]
    convert.fill_message(m, {"values": [{"key": "a", "value": "1"}]}, {"values": Msg})
    assert m.values[0].key == "a" and m.values[0].value == "1"


class CheckedStatus:
    """A DiagnosticStatus-like message whose ``level`` is a `byte` field that, as rclpy with
    ROS_PYTHON_CHECK_FIELDS=1 does, accepts only a 1-byte bytes object."""

    def __init__(self):
        self._level = b"\x00"

    @property
    def level(self):
        return self._level

    @level.setter
    def level(self, value):
        assert isinstance(value, bytes) and len(value) == 1, f"byte field got {value!r}"
        self._level = value


@pytest.mark.parametrize("level", [convert.DIAG_OK, convert.DIAG_WARN, convert.DIAG_ERROR, convert.DIAG_STALE])
def test_fill_message_sets_byte_fields_as_bytes(level):
    m = convert.fill_message(CheckedStatus(), {"level": level})
    assert m.level == bytes([level])


# ---------------------------------------------------------------------------------------------- qos
def test_qos_choices():
    ev = qos.events_qos()
    assert (ev.reliability, ev.depth) == ("best_effort", 1000)
    assert qos.images_qos().depth == 5 and qos.images_qos().reliability == "best_effort"
    assert qos.RESULTS == qos.QosSpec("reliable", 10)
    # the rule behind the event choice: a reliable subscriber never hears a best-effort driver
    assert not qos.compatible(publisher="best_effort", subscriber="reliable")
    assert qos.compatible(publisher="reliable", subscriber="best_effort")
    assert qos.compatible(publisher="best_effort", subscriber="best_effort")
    with pytest.raises(ConfigError, match="depth"):
        qos.QosSpec("reliable", 0)
    with pytest.raises(ConfigError, match="reliability"):
        qos.events_qos(reliability="sometimes")


def test_qos_to_rclpy_when_available():
    pytest.importorskip("rclpy")
    from rclpy.qos import ReliabilityPolicy

    p = qos.events_qos(500).to_rclpy()
    assert p.depth == 500 and p.reliability == ReliabilityPolicy.BEST_EFFORT
