"""ros/node.py: the ROS-free helpers always; the rclpy node itself (raw event subscription, image input,
Emotion output, run-time parameters, missing packages) when rclpy is importable (``colcon test``)."""

from __future__ import annotations

import importlib
import time

import numpy as np
import pytest

from fer_perception.errors import ConfigError, DependencyError
from fer_perception.ros import node as fer_node


def test_split_type_accepts_both_forms():
    assert fer_node.split_type("dv_ros2_msgs/msg/EventArray") == ("dv_ros2_msgs", "EventArray")
    assert fer_node.split_type("event_camera_msgs/EventPacket") == ("event_camera_msgs", "EventPacket")
    with pytest.raises(ConfigError, match="pkg/msg/Type"):
        fer_node.split_type("EventArray")


def test_install_hints_say_where_each_package_comes_from():
    assert "apt install ros-$ROS_DISTRO-event-camera-msgs" in fer_node.install_hint("event_camera_msgs")
    assert "dv-ros2" in fer_node.install_hint("dv_ros2_msgs") and "from source" in fer_node.install_hint(
        "dv_ros2_msgs")
    assert "hri-msgs" in fer_node.install_hint("hri_msgs")
    assert "colcon" in fer_node.install_hint("fer_perception_msgs")
    assert "some_pkg" in fer_node.install_hint("some_pkg")


def test_missing_message_package_raises_dependency_error_with_the_hint(monkeypatch):
    import sys
    import types

    with pytest.raises(DependencyError, match="'fer_nonexistent_msgs' is not available"):
        fer_node.import_message_class("fer_nonexistent_msgs/msg/Thing")
    monkeypatch.setitem(sys.modules, "fer_fake_msgs", types.ModuleType("fer_fake_msgs"))
    monkeypatch.setitem(sys.modules, "fer_fake_msgs.msg", types.ModuleType("fer_fake_msgs.msg"))
    with pytest.raises(DependencyError, match="has no message 'NoSuchThing'"):
        fer_node.import_message_class("fer_fake_msgs/msg/NoSuchThing")
    sys.modules["fer_fake_msgs.msg"].Thing = object
    assert fer_node.import_message_class("fer_fake_msgs/Thing") is object


def test_main_without_ros_exits_with_a_message(capsys):
    try:
        import rclpy  # noqa: F401
        pytest.skip("rclpy is installed: main() would start the node")
    except ImportError:
        pass
    assert fer_node.main([]) == 2
    assert "needs ROS 2 (rclpy)" in capsys.readouterr().err


def test_stamp_ns():
    class T:
        sec, nanosec = 3, 5

    class Hd:
        stamp = T()

    assert fer_node.stamp_ns(Hd()) == 3_000_000_005


# ====================================================================================== with rclpy
EVENT_TYPES = ("dv_ros2_msgs/msg/EventArray", "dvs_msgs/msg/EventArray", "prophesee_event_msgs/msg/EventArray")


def _event_type():
    for t in EVENT_TYPES:
        try:
            fer_node.import_message_class(t)
            return t
        except DependencyError:
            continue
    pytest.skip("no EventArray message package (dv_ros2_msgs, dvs_msgs, prophesee_event_msgs) installed")


class FakePipeline:
    """Answers every event message with one 'happy' window result and every image with one face."""

    def __init__(self):
        from fer_perception.pipeline import PipelineConfig

        self.config = PipelineConfig(snn_checkpoint="", expression_model="none", age_gender_checkpoint="",
                                     annotate=False)
        self.pending = []

    def on_events(self, batch, arrival):
        self.pending.append(batch)

    def poll(self):
        from fer_perception.results import EmotionResult, Roi

        out = [EmotionResult(stamp_ns=int(b.t[-1]), frame_id=b.frame_id, face_id="sensor", roi=Roi(0, 0, 8, 8),
                             source="events", model="fake", labels=["happy", "fear"],
                             probabilities=np.array([0.9, 0.1]), window_ns=int(b.t[-1] - b.t[0]))
               for b in self.pending if len(b)]
        self.pending = []
        return out

    def on_image(self, image, stamp_ns, frame_id, source, arrival):
        from fer_perception.pipeline import FrameOutputs
        from fer_perception.results import DemographicsResult, EmotionResult, Roi

        e = EmotionResult(stamp_ns=stamp_ns, frame_id=frame_id, face_id="face_1", roi=Roi(1, 1, 4, 4),
                          source="frames", model="fake", labels=["happiness", "sadness"],
                          probabilities=np.array([0.2, 0.8]))
        d = DemographicsResult(stamp_ns=stamp_ns, frame_id=frame_id, face_id="face_1", roi=Roi(1, 1, 4, 4),
                               model="fake", age=30.0, age_std=3.0, gender="male", gender_confidence=0.7)
        return FrameOutputs(emotions=[e], demographics=[d])


@pytest.fixture
def ros():
    rclpy = pytest.importorskip("rclpy")
    pytest.importorskip("fer_perception_msgs.msg")
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


def _spin_until(rclpy, nodes, predicate, timeout=10.0):
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor()
    for n in nodes:
        ex.add_node(n)
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        ex.spin_once(timeout_sec=0.05)
    for n in nodes:
        ex.remove_node(n)
    return predicate()


def test_node_raw_events_and_images_to_emotion_and_demographics(ros):
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from fer_perception.events.batch import EventBatch
    from fer_perception.events.cdr import encode_event_array
    from fer_perception.ros import qos
    from fer_perception_msgs.msg import Demographics, Emotion

    etype = _event_type()
    fer = fer_node.FerPerceptionNode.create(namespace="fer_test", pipeline=FakePipeline(), parameter_overrides=[
        Parameter("event_topic", value="/fer_test_in/events"), Parameter("event_msg_type", value=etype),
        Parameter("aps_topic", value=""), Parameter("rgb_topic", value="/fer_test_in/image")])
    assert fer is not None
    try:
        helper = ros.create_node("fer_test_helper")
        got = {"events": [], "frames": [], "demographics": []}
        helper.create_subscription(Emotion, "/fer_test/emotion/events", got["events"].append, qos.RESULTS.to_rclpy())
        helper.create_subscription(Emotion, "/fer_test/emotion/frames", got["frames"].append, qos.RESULTS.to_rclpy())
        helper.create_subscription(Demographics, "/fer_test/demographics", got["demographics"].append,
                                   qos.RESULTS.to_rclpy())
        ev_pub = helper.create_publisher(fer_node.import_message_class(etype), "/fer_test_in/events",
                                         qos.events_qos().to_rclpy())
        im_pub = helper.create_publisher(Image, "/fer_test_in/image", qos.images_qos().to_rclpy())
        rng = np.random.default_rng(0)
        b = EventBatch.from_arrays(rng.integers(0, 32, 100), rng.integers(0, 24, 100),
                                   10**9 + np.arange(100) * 1000, rng.integers(0, 2, 100), 32, 24, 10**9, "dvs")
        data = encode_event_array(b)

        def send():
            ev_pub.publish(data)  # serialized bytes, as a driver's raw message
            img = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(48))
            img.header.frame_id = "cam"
            im_pub.publish(img)
            return all(got.values())

        assert _spin_until(ros, [fer.node, helper], lambda: send() or all(got.values()))
        e = got["events"][0]
        assert e.source == "events" and e.label == "happy" and list(e.labels) == ["happy", "fear"]
        assert abs(e.confidence - 0.9) < 1e-6 and e.window.nanosec == 99_000
        f = got["frames"][0]
        assert f.label == "sadness" and f.header.frame_id == "cam"
        assert got["demographics"][0].gender == "male"
        # run-time parameters: dynamic ones change, start-up ones are refused
        res = fer.node.set_parameters([Parameter("min_confidence", value=0.95)])
        assert res[0].successful
        res = fer.node.set_parameters([Parameter("timesteps", value=3)])
        assert not res[0].successful
        assert fer.runner.diagnostics()["processed"]["event_messages"] >= 1
    finally:
        fer.destroy()


def test_node_refuses_bad_parameters_and_missing_packages_cleanly(ros):
    from rclpy.parameter import Parameter

    assert fer_node.FerPerceptionNode.create(pipeline=FakePipeline(), parameter_overrides=[
        Parameter("smoothing_alpha", value=5.0)]) is None
    assert fer_node.FerPerceptionNode.create(pipeline=FakePipeline(), parameter_overrides=[
        Parameter("device", value="tpu")]) is None
    if not _has("event_camera_msgs"):
        assert fer_node.FerPerceptionNode.create(pipeline=FakePipeline(), parameter_overrides=[
            Parameter("event_msg_type", value="event_camera_msgs/msg/EventPacket")]) is None


def _has(pkg):
    try:
        importlib.import_module(pkg + ".msg")
        return True
    except ImportError:
        return False
