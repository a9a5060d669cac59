"""The node's topics in one table (ROS-free): names the node uses, message types, QoS, what they carry.

Relative names resolve in the node's namespace (``fer`` by default: ``/fer/emotion/events``).
:func:`markdown_table` renders the reference in docs/ros.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

#: The node's namespace unless the launch file sets another; replay writes its outputs under it too.
DEFAULT_NAMESPACE = "fer"

EMOTION_EVENTS = "emotion/events"
EMOTION_FRAMES = "emotion/frames"
DEMOGRAPHICS = "demographics"
ANNOTATED_IMAGE = "annotated_image"
EVENT_FRAME = "event_frame"
DIAGNOSTICS = "/diagnostics"

EMOTION_TYPE = "fer_perception_msgs/msg/Emotion"
DEMOGRAPHICS_TYPE = "fer_perception_msgs/msg/Demographics"
IMAGE_TYPE = "sensor_msgs/msg/Image"

#: The result outputs of the node (and of replay): key -> (relative name, message type).
OUTPUTS: Dict[str, Tuple[str, str]] = {
    "emotion_events": (EMOTION_EVENTS, EMOTION_TYPE),
    "emotion_frames": (EMOTION_FRAMES, EMOTION_TYPE),
    "demographics": (DEMOGRAPHICS, DEMOGRAPHICS_TYPE),
    "annotated": (ANNOTATED_IMAGE, IMAGE_TYPE),
    "event_frame": (EVENT_FRAME, IMAGE_TYPE),
}


def resolve(name: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The absolute topic name of ``name`` in ``namespace`` (absolute names stay as they are)."""
    if name.startswith("/"):
        return name
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


@dataclass(frozen=True)
class Topic:
    name: str
    msg_type: str
    direction: str  # "in" or "out"
    qos: str
    description: str


TOPICS: Tuple[Topic, ...] = (
    Topic("`event_topic` (parameter)", "dv_ros2_msgs / dvs_msgs / prophesee_event_msgs EventArray, "
          "event_camera_msgs/EventPacket", "in", "best effort, keep last 1000",
          "Events, received raw (serialized) and decoded with numpy."),
    Topic("`aps_topic`, `rgb_topic` (parameters)", "sensor_msgs/Image or CompressedImage", "in",
          "sensor data (best effort, 5)", "Frames of the event sensor and of a colour camera (latest wins)."),
    Topic(EMOTION_EVENTS, "fer_perception_msgs/Emotion", "out", "reliable, 10",
          "Expression per face and event window (Spiking-FER)."),
    Topic(EMOTION_FRAMES, "fer_perception_msgs/Emotion", "out", "reliable, 10",
          "Expression per face and processed image (DAN / light model)."),
    Topic(DEMOGRAPHICS, "fer_perception_msgs/Demographics", "out", "reliable, 10",
          "Apparent age and gender per face and processed image."),
    Topic(ANNOTATED_IMAGE, "sensor_msgs/Image (rgb8)", "out", "reliable, 2",
          "Image with boxes, ids, expression, age/gender; drawn only while subscribed."),
    Topic(EVENT_FRAME, "sensor_msgs/Image (rgb8)", "out", "reliable, 2",
          "Recent events with the face windows, at `event_frame_hz`, only while subscribed."),
    Topic(DIAGNOSTICS, "diagnostic_msgs/DiagnosticArray", "out", "reliable, 10",
          "Every `diagnostics_period`: input rates, windows/frames processed, drops by reason, malformed "
          "messages, latency p50/p95, device."),
    Topic("/humans/faces/tracked", "hri_msgs/IdsList", "out", "reliable, 10", "REP-155 (`rep155:=true`)."),
    Topic("/humans/faces/<id>/roi, cropped, expression, softbiometrics",
          "sensor_msgs/RegionOfInterest, sensor_msgs/Image, hri_msgs/Expression, hri_msgs/SoftBiometrics", "out",
          "reliable, 10", "REP-155 per face; created and destroyed as faces come and go."),
)


def markdown_table() -> str:
    rows = ["| topic | type | direction | QoS | content |", "|---|---|---|---|---|"]
    for t in TOPICS:
        name = t.name if t.name.startswith("`") else f"`{t.name}`"
        rows.append(f"| {name} | {t.msg_type} | {t.direction} | {t.qos} | {t.description} |")
    return "\n".join(rows) + "\n"
