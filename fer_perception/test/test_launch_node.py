"""launch_testing: start fer_perception_node as the launch files do, publish serialized EventArray bytes and
receive fer_perception_msgs/Emotion on /fer/emotion/events (demo Spiking-FER weights on the CPU).

Runs under ``colcon test`` (or ``launch_test``) on a ROS 2 machine with an EventArray message package
(dv_ros2_msgs, dvs_msgs or prophesee_event_msgs); skipped without launch_testing.
"""

from __future__ import annotations

import importlib
import time
import unittest

import pytest

pytest.importorskip("launch_testing")
pytest.importorskip("rclpy")
pytest.importorskip("fer_perception_msgs.msg")

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402

from fer_perception.events.batch import EventBatch  # noqa: E402
from fer_perception.events.cdr import encode_event_array  # noqa: E402
from fer_perception.ros import qos  # noqa: E402
from fer_perception.ros.launch_common import share_file  # noqa: E402


def _event_type():
    for pkg in ("dv_ros2_msgs", "dvs_msgs", "prophesee_event_msgs"):
        try:
            return f"{pkg}/msg/EventArray", importlib.import_module(f"{pkg}.msg").EventArray
        except ImportError:
            continue
    pytest.skip("no EventArray message package installed")


EVENT_TYPE, EVENT_CLASS = _event_type()


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.Node(
        package="fer_perception", executable="fer_perception_node", name="fer_perception", namespace="fer",
        parameters=[share_file("config", "fer_perception.yaml"), {
            "event_topic": "/fer_launch_test/events", "event_msg_type": EVENT_TYPE, "aps_topic": "",
            "rgb_topic": "", "expression_model": "none", "age_gender_checkpoint": "", "event_faces_from": "none",
            "device": "cpu", "smoothing": "none"}],
        output="screen")
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"fer": node}


class TestEventsToEmotion(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("fer_launch_test_helper")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_serialized_events_give_emotion_messages(self):
        from fer_perception_msgs.msg import Emotion

        got = []
        self.node.create_subscription(Emotion, "/fer/emotion/events", got.append, qos.RESULTS.to_rclpy())
        pub = self.node.create_publisher(EVENT_CLASS, "/fer_launch_test/events", qos.events_qos().to_rclpy())
        rng = np.random.default_rng(0)
        t = 1_700_000_000 * 10**9
        end = time.monotonic() + 120.0  # model loading on a CPU
        k = 0
        while time.monotonic() < end and not got:
            ts = t + k * 1_000_000 + np.arange(2500, dtype=np.int64) * 400
            b = EventBatch.from_arrays(rng.integers(0, 200, 2500), rng.integers(0, 200, 2500), ts,
                                       rng.integers(0, 2, 2500), 200, 200, int(ts[-1]), "dvs")
            pub.publish(encode_event_array(b))  # serialized bytes, like a driver's message on the wire
            k += 1
            rclpy.spin_once(self.node, timeout_sec=0.01)
        self.assertTrue(got, "no Emotion on /fer/emotion/events")
        e = got[0]
        self.assertEqual(e.source, "events")
        self.assertEqual(len(e.labels), len(e.probabilities))
        self.assertIn(e.label, list(e.labels))
        self.assertAlmostEqual(sum(e.probabilities), 1.0, places=4)
        self.assertEqual(e.header.frame_id, "dvs")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
