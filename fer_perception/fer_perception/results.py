"""Plain result records of the pipeline, mirroring the fer_perception_msgs messages field for field.

The ROS node turns them into messages (:mod:`fer_perception.ros`), replay serializes them into a bag with
rosbags, evaluation reads them back. Nothing here depends on ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

SOURCE_EVENTS = "events"
SOURCE_FRAMES = "frames"


@dataclass(frozen=True)
class Roi:
    """A face box in integer pixels: top-left corner and size (sensor_msgs/RegionOfInterest)."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def from_xywh(cls, box: Sequence[float]) -> "Roi":
        x, y, w, h = (float(v) for v in box[:4])
        return cls(int(round(x)), int(round(y)), max(0, int(round(w))), max(0, int(round(h))))

    def as_tuple(self) -> Tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)

    def clipped(self, width: int, height: int) -> "Roi":
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(width, self.x + self.width), min(height, self.y + self.height)
        return Roi(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


@dataclass
class EmotionResult:
    """One expression estimate for one face (fer_perception_msgs/Emotion)."""

    stamp_ns: int
    frame_id: str
    face_id: str
    roi: Roi
    source: str
    model: str
    labels: List[str]
    probabilities: np.ndarray
    window_ns: int = 0
    latency_ms: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probabilities))] if len(self.labels) else ""

    @property
    def confidence(self) -> float:
        return float(np.max(self.probabilities)) if len(self.probabilities) else 0.0


@dataclass
class DemographicsResult:
    """One apparent age / gender estimate for one face (fer_perception_msgs/Demographics)."""

    stamp_ns: int
    frame_id: str
    face_id: str
    roi: Roi
    model: str
    age: float
    age_std: float
    gender: str
    gender_confidence: float
    latency_ms: float = 0.0
