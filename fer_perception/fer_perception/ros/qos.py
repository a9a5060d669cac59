"""The node's QoS choices, described ROS-free and turned into rclpy profiles on demand.

- Events: BEST_EFFORT, KEEP_LAST with a deep queue (default 1000). The ros-event-camera drivers
  (libcaer_driver, metavision_driver) publish BEST_EFFORT, and a RELIABLE subscriber never connects to a
  best-effort publisher; a best-effort subscriber also receives from RELIABLE publishers (dv-ros2). Depth 5
  (qos_profile_sensor_data) is far too shallow for ~1 kHz event messages (docs/facts.md#event-messages).
- Images: the sensor-data profile (BEST_EFFORT, KEEP_LAST 5, VOLATILE); images are latest-wins anyway.
- Results (emotion/*, demographics, REP-155): RELIABLE, KEEP_LAST 10, so consumers get every estimate.
- Annotated and event-frame images: RELIABLE, KEEP_LAST 2. A RELIABLE publisher serves both best-effort and
  reliable subscribers (RViz image displays subscribe RELIABLE by default), a best-effort one only the former.
- /diagnostics: the default profile (RELIABLE, KEEP_LAST 10), as diagnostic_aggregator expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fer_perception.errors import ConfigError

RELIABILITIES = ("best_effort", "reliable")


@dataclass(frozen=True)
class QosSpec:
    """A KEEP_LAST, VOLATILE QoS profile: reliability and depth."""

    reliability: str
    depth: int

    def __post_init__(self) -> None:
        if self.reliability not in RELIABILITIES:
            raise ConfigError(f"QoS reliability must be one of {RELIABILITIES}, not {self.reliability!r}")
        if int(self.depth) < 1:
            raise ConfigError(f"QoS depth must be >= 1, not {self.depth!r}")

    def to_rclpy(self) -> Any:
        """The rclpy ``QoSProfile`` (imports rclpy)."""
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        rel = ReliabilityPolicy.BEST_EFFORT if self.reliability == "best_effort" else ReliabilityPolicy.RELIABLE
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(self.depth), reliability=rel,
                          durability=DurabilityPolicy.VOLATILE)


def events_qos(depth: int = 1000, reliability: str = "best_effort") -> QosSpec:
    return QosSpec(reliability, int(depth))


def images_qos(reliability: str = "best_effort") -> QosSpec:
    """Sensor-data profile (depth 5); ``reliable`` for publishers that only offer RELIABLE and care."""
    return QosSpec(reliability, 5)


RESULTS = QosSpec("reliable", 10)
IMAGES_OUT = QosSpec("reliable", 2)
DIAGNOSTICS = QosSpec("reliable", 10)


def compatible(publisher: str, subscriber: str) -> bool:
    """Whether a subscriber with reliability ``subscriber`` receives from a publisher offering ``publisher``
    (DDS request/offer rule: a RELIABLE request needs a RELIABLE offer)."""
    for r in (publisher, subscriber):
        if r not in RELIABILITIES:
            raise ConfigError(f"QoS reliability must be one of {RELIABILITIES}, not {r!r}")
    return not (subscriber == "reliable" and publisher == "best_effort")
