"""ros/node.py driven through small stand-ins of rclpy and the message packages (installed into sys.modules
for the test only), so the node's logic runs without ROS: parameter declaration (descriptors, ranges, types),
raw event and image callbacks, published Emotion / Demographics / Image / DiagnosticArray fields, run-time
parameter changes, subscriber-count gating, REP-155 publishers, and clean refusal on a missing package."""

from __future__ import annotations

import sys
import time
import types
from typing import Any, Dict, List

import numpy as np
import pytest

from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import encode_event_array
from fer_perception.pipeline import FrameOutputs, PipelineConfig
from fer_perception.results import DemographicsResult, EmotionResult, Roi


# ------------------------------------------------------------------------------------------ stand-ins
class Msg:
    """A message: attributes given at construction; unknown attributes are nested messages made on access."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = Msg()
        self.__dict__[name] = value
        return value


def msg_class(name: str, **defaults):
    return type(name, (Msg,), {"__init__": lambda self, **kw: Msg.__init__(self, **{**defaults, **kw})})


class FakeLogger:
    def __init__(self):
        self.lines: List[tuple] = []

    def info(self, m):
        self.lines.append(("info", m))

    def warning(self, m):
        self.lines.append(("warning", m))

    def error(self, m):
        self.lines.append(("error", m))


class FakePub:
    def __init__(self, cls, topic, qos):
        self.cls, self.topic, self.qos = cls, topic, qos
        self.sent: List[Any] = []
        self.subscribers = 0

    def publish(self, m):
        self.sent.append(m)

    def get_subscription_count(self):
        return self.subscribers


class InvalidParameterTypeException(Exception):
    pass


class InvalidParameterValueException(Exception):
    pass


class FakeNode:
    instances: List["FakeNode"] = []

    def __init__(self, name, namespace="", parameter_overrides=()):
        self.name, self.namespace = name, namespace
        self.overrides = {p.name: p.value for p in parameter_overrides}
        self.logger = FakeLogger()
        self.params: Dict[str, Any] = {}
        self.descriptors: Dict[str, Any] = {}
        self.pubs: Dict[str, FakePub] = {}
        self.subs: Dict[str, tuple] = {}
        self.timers: List[tuple] = []
        self.callbacks = []
        self.destroyed = False
        FakeNode.instances.append(self)

    def get_logger(self):
        return self.logger

    def declare_parameter(self, name, default, descriptor):
        value = self.overrides.get(name, default)
        t = getattr(descriptor, "type", None)
        if t == 3 and not isinstance(value, float):  # ROS is strict: an integer is no double
            raise InvalidParameterTypeException(f"{name}: expected double, got {type(value).__name__}")
        for r in getattr(descriptor, "floating_point_range", []) + getattr(descriptor, "integer_range", []):
            if not r.from_value <= value <= r.to_value:
                raise InvalidParameterValueException(f"{name}: {value} out of range")
        self.params[name] = value
        self.descriptors[name] = descriptor
        return Msg(name=name, value=value)

    def add_on_set_parameters_callback(self, cb):
        self.callbacks.append(cb)

    def create_publisher(self, cls, topic, qos):
        pub = self.pubs[topic] = FakePub(cls, topic, qos)
        return pub

    def destroy_publisher(self, pub):
        self.pubs.pop(pub.topic, None)

    def create_subscription(self, cls, topic, cb, qos, raw=False):
        self.subs[topic] = (cls, cb, qos, raw)
        return topic

    def create_timer(self, period, cb):
        self.timers.append((period, cb))
        return cb

    def get_fully_qualified_name(self):
        return f"/{self.namespace}/{self.name}"

    def get_clock(self):
        return Msg(now=lambda: Msg(to_msg=lambda: Msg(sec=1, nanosec=2)))

    def destroy_node(self):
        self.destroyed = True


def fake_modules(with_events: bool = True, with_hri: bool = False) -> Dict[str, types.ModuleType]:
    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    enum = types.SimpleNamespace
    mods = {
        "rclpy": mod("rclpy"),
        "rclpy.node": mod("rclpy.node", Node=FakeNode),
        "rclpy.qos": mod("rclpy.qos", QoSProfile=msg_class("QoSProfile"),
                         ReliabilityPolicy=enum(BEST_EFFORT="best_effort", RELIABLE="reliable"),
                         HistoryPolicy=enum(KEEP_LAST="keep_last"), DurabilityPolicy=enum(VOLATILE="volatile")),
        "rclpy.exceptions": mod("rclpy.exceptions", InvalidParameterTypeException=InvalidParameterTypeException,
                                InvalidParameterValueException=InvalidParameterValueException),
        "rcl_interfaces": mod("rcl_interfaces"),
        "rcl_interfaces.msg": mod(
            "rcl_interfaces.msg",
            ParameterDescriptor=msg_class("ParameterDescriptor", type=0, dynamic_typing=False, integer_range=[],
                                          floating_point_range=[]),
            IntegerRange=msg_class("IntegerRange"), FloatingPointRange=msg_class("FloatingPointRange"),
            ParameterType=enum(PARAMETER_BOOL=1, PARAMETER_INTEGER=2, PARAMETER_DOUBLE=3, PARAMETER_STRING=4),
            SetParametersResult=msg_class("SetParametersResult")),
        "sensor_msgs": mod("sensor_msgs"),
        "sensor_msgs.msg": mod("sensor_msgs.msg", Image=msg_class("Image"),
                               CompressedImage=msg_class("CompressedImage"),
                               RegionOfInterest=msg_class("RegionOfInterest")),
        "diagnostic_msgs": mod("diagnostic_msgs"),
        "diagnostic_msgs.msg": mod("diagnostic_msgs.msg", DiagnosticArray=msg_class("DiagnosticArray"),
                                   DiagnosticStatus=msg_class("DiagnosticStatus"), KeyValue=msg_class("KeyValue")),
        "fer_perception_msgs": mod("fer_perception_msgs"),
        "fer_perception_msgs.msg": mod("fer_perception_msgs.msg", Emotion=msg_class("Emotion"),
                                       Demographics=msg_class("Demographics")),
    }
    if with_events:
        mods["dv_ros2_msgs"] = mod("dv_ros2_msgs")
        mods["dv_ros2_msgs.msg"] = mod("dv_ros2_msgs.msg", EventArray=msg_class("EventArray"))
    if with_hri:
        mods["hri_msgs"] = mod("hri_msgs")
        mods["hri_msgs.msg"] = mod("hri_msgs.msg", Expression=msg_class("Expression"), IdsList=msg_class("IdsList"),
                                   SoftBiometrics=msg_class("SoftBiometrics"))
    return mods


class FakePipeline:
    def __init__(self):
        self.config = PipelineConfig(snn_checkpoint="", expression_model="none", age_gender_checkpoint="",
                                     annotate=True)
        self.pending = []
        self.annotator = object()

    def on_events(self, b, arrival):
        self.pending.append(b)

    def poll(self):
        out = [EmotionResult(stamp_ns=int(b.t[-1]), frame_id=b.frame_id, face_id="sensor", roi=Roi(0, 0, 8, 8),
                             source="events", model="fake", labels=["happy", "fear"],
                             probabilities=np.array([0.9, 0.1]), window_ns=int(b.t[-1] - b.t[0]))
               for b in self.pending]
        self.pending = []
        return out

    def on_image(self, image, stamp_ns, frame_id, source, arrival):
        from dataclasses import dataclass

        @dataclass
        class T:
            face_id: str
            box: np.ndarray
            missed: int = 0

        e = EmotionResult(stamp_ns=stamp_ns, frame_id=frame_id, face_id="face_1", roi=Roi(1, 1, 2, 2),
                          source="frames", model="fake", labels=["happiness", "sadness"],
                          probabilities=np.array([0.2, 0.8]))
        d = DemographicsResult(stamp_ns=stamp_ns, frame_id=frame_id, face_id="face_1", roi=Roi(1, 1, 2, 2),
                               model="fake", age=30.0, age_std=3.0, gender="female", gender_confidence=0.7)
        ann = image.copy() if self.config.annotate else None
        return FrameOutputs(emotions=[e], demographics=[d], annotated=ann,
                            tracks=[T("face_1", np.array([1.0, 1.0, 2.0, 2.0]))])

    def event_frame_image(self):
        return np.zeros((4, 4, 3), np.uint8)


@pytest.fixture
def fake_ros(monkeypatch):
    def install(**kw):
        for name, m in fake_modules(**kw).items():
            monkeypatch.setitem(sys.modules, name, m)
        FakeNode.instances.clear()
    yield install


def P(name, value):
    return Msg(name=name, value=value)


def wait(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        time.sleep(0.005)
    return pred()


def image_msg(stamp_s=5, frame_id="cam"):
    return Msg(header=Msg(stamp=Msg(sec=stamp_s, nanosec=0), frame_id=frame_id), encoding="rgb8", height=4,
               width=4, step=12, data=bytes(range(48)), is_bigendian=0)


# ------------------------------------------------------------------------------------------ tests
def test_parameters_are_declared_with_descriptors(fake_ros):
    from fer_perception.ros import params
    from fer_perception.ros.node import FerPerceptionNode

    fake_ros()
    fer = FerPerceptionNode.create(pipeline=FakePipeline())
    try:
        n = fer.node
        assert n.name == "fer_perception" and n.namespace == "fer"
        assert set(n.params) == {p.name for p in params.PARAMETERS}
        d = n.descriptors
        assert d["timesteps"].read_only and not d["smoothing_alpha"].read_only
        assert (d["timesteps"].integer_range[0].from_value, d["timesteps"].integer_range[0].to_value) == (1, 64)
        assert d["smoothing_alpha"].floating_point_range[0].to_value == 1.0
        assert d["event_fallback_roi"].dynamic_typing and d["mapping_rgb"].dynamic_typing
        assert d["device"].additional_constraints.startswith("one of")
        assert n.callbacks, "no set-parameters callback"
    finally:
        fer.destroy()


def test_subscriptions_qos_raw_events_and_outputs(fake_ros):
    from fer_perception.ros.node import FerPerceptionNode

    fake_ros()
    fer = FerPerceptionNode.create(pipeline=FakePipeline(), parameter_overrides=[
        P("rgb_topic", "/cam/image"), P("event_qos_depth", 500)])
    n = fer.node
    try:
        cls, ev_cb, ev_qos, raw = n.subs["/dvs/events"]
        assert raw and cls.__name__ == "EventArray"
        assert (ev_qos.reliability, ev_qos.depth) == ("best_effort", 500)
        assert set(n.subs) == {"/dvs/events", "/dvs/image_raw", "/cam/image"}
        assert n.subs["/cam/image"][2].depth == 5 and not n.subs["/cam/image"][3]
        pubs = n.pubs
        assert {"emotion/events", "emotion/frames", "demographics", "annotated_image", "event_frame",
                "/diagnostics"} <= set(pubs)
        assert pubs["emotion/events"].qos.reliability == "reliable" and pubs["emotion/events"].qos.depth == 10
        # raw CDR bytes in -> Emotion out
        b = EventBatch.from_arrays([1, 2, 3], [4, 5, 6], [10**9, 10**9 + 1000, 10**9 + 5000], [1, 0, 1], 32, 24,
                                   10**9 + 5000, "dvs")
        ev_cb(encode_event_array(b))
        ev_cb(b"\x00\x01\x00\x00junk")  # malformed: counted, nothing published
        assert wait(lambda: pubs["emotion/events"].sent)
        e = pubs["emotion/events"].sent[0]
        assert e.label == "happy" and e.source == "events" and list(e.labels) == ["happy", "fear"]
        assert e.header.frame_id == "dvs" and e.header.stamp.sec == 1 and e.header.stamp.nanosec == 5000
        assert e.window.nanosec == 5000 and e.probabilities.typecode == "f"
        # image in (decoded by the worker) -> Emotion + Demographics; annotated only while subscribed
        n.subs["/cam/image"][1](image_msg())
        assert wait(lambda: pubs["emotion/frames"].sent and pubs["demographics"].sent)
        assert pubs["emotion/frames"].sent[0].label == "sadness"
        assert pubs["demographics"].sent[0].gender == "female"
        assert pubs["annotated_image"].sent == []
        pubs["annotated_image"].subscribers = 1
        n.subs["/cam/image"][1](image_msg(6))
        assert wait(lambda: pubs["annotated_image"].sent)
        img = pubs["annotated_image"].sent[0]
        assert (img.encoding, img.width, img.height, img.header.stamp.sec) == ("rgb8", 4, 4, 6)
        assert bytes(img.data) == bytes(range(48))
        # event frames only while subscribed
        assert pubs["event_frame"].sent == []
        pubs["event_frame"].subscribers = 1
        ev_cb(encode_event_array(b))
        assert wait(lambda: pubs["event_frame"].sent)
        # diagnostics timer
        period, diag_cb = n.timers[0]
        assert period == 1.0
        diag_cb()
        arr = pubs["/diagnostics"].sent[-1]
        st = arr.status[0]
        kv = {v.key: v.value for v in st.values}
        assert st.level == 1 and "malformed_event +1" in st.message  # the junk message
        assert kv["errors.malformed_event"] == "1" and kv["device"] == st.hardware_id
        diag_cb()
        assert pubs["/diagnostics"].sent[-1].status[0].level == 0
    finally:
        fer.destroy()
    assert n.destroyed and not fer.runner.running


def test_set_parameters_callback(fake_ros):
    from fer_perception.ros.node import FerPerceptionNode

    fake_ros()
    pipe = FakePipeline()
    fer = FerPerceptionNode.create(pipeline=pipe)
    try:
        cb = fer.node.callbacks[0]
        r = cb([P("smoothing_alpha", 0.3), P("min_confidence", 0.5)])
        assert r.successful and r.reason == ""
        r = cb([P("timesteps", 3)])
        assert not r.successful and "start-up" in r.reason
        r = cb([P("tracker_iou", 1.5)])
        assert not r.successful and "tracker_iou" in r.reason
        assert wait(lambda: fer.runner.config.min_confidence == 0.5)
    finally:
        fer.destroy()


def test_refuses_cleanly(fake_ros):
    from fer_perception.ros.node import FerPerceptionNode

    fake_ros(with_events=False)
    assert FerPerceptionNode.create(pipeline=FakePipeline()) is None
    node = FakeNode.instances[-1]
    errors = [m for lvl, m in node.logger.lines if lvl == "error"]
    assert errors and "dv_ros2_msgs" in errors[0] and "dv-ros2" in errors[0] and node.destroyed
    fake_ros()
    assert FerPerceptionNode.create(pipeline=FakePipeline(), parameter_overrides=[P("buffer_ms", 2000)]) is None
    assert "parameter buffer_ms" in [m for lvl, m in FakeNode.instances[-1].logger.lines if lvl == "error"][0]
    assert FerPerceptionNode.create(pipeline=FakePipeline(), parameter_overrides=[
        P("event_topic", ""), P("aps_topic", "")]) is None
    assert "no input" in [m for lvl, m in FakeNode.instances[-1].logger.lines if lvl == "error"][0]
    assert FerPerceptionNode.create(pipeline=FakePipeline(), parameter_overrides=[P("rep155", True)]) is None
    assert "hri_msgs" in [m for lvl, m in FakeNode.instances[-1].logger.lines if lvl == "error"][0]


def test_rep155_publishers_follow_the_faces(fake_ros):
    from fer_perception.ros.node import FerPerceptionNode

    fake_ros(with_hri=True)
    fer = FerPerceptionNode.create(pipeline=FakePipeline(), parameter_overrides=[
        P("rep155", True), P("rgb_topic", "/cam/image")])
    n = fer.node
    try:
        n.subs["/cam/image"][1](image_msg())
        assert wait(lambda: "/humans/faces/face_1/expression" in n.pubs
                    and n.pubs["/humans/faces/face_1/expression"].sent)
        ex = n.pubs["/humans/faces/face_1/expression"].sent[0]
        assert ex.expression == "sad" and ex.valence < 0
        sb = n.pubs["/humans/faces/face_1/softbiometrics"].sent[0]
        assert sb.gender == 1 and sb.age == 30
        assert list(n.pubs["/humans/faces/tracked"].sent[0].ids) == ["face_1"]
        assert n.pubs["/humans/faces/face_1/roi"].sent[0].width == 2
        assert n.pubs["/humans/faces/face_1/cropped"].sent == []  # nobody subscribed
        assert n.pubs["/humans/faces/face_1/roi"].qos.reliability == "reliable"
    finally:
        fer.destroy()
    assert "/humans/faces/face_1/roi" not in n.pubs and "/humans/faces/tracked" not in n.pubs
