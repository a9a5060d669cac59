"""The one in-memory type for a run of DVS events: structure-of-arrays numpy data plus sensor metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from fer_perception.errors import EventOutOfBoundsError


@dataclass(frozen=True)
class EventBatch:
    """Events as parallel numpy arrays.

    Attributes:
        x, y: pixel coordinates, ``uint16``.
        t: timestamps in nanoseconds (ROS time), ``int64``.
        p: polarity, ``uint8``: 1 = ON (brighter), 0 = OFF.
        width, height: sensor size in pixels (0 when the message does not say).
        stamp_ns: header stamp of the message the events came from, in nanoseconds.
        frame_id: header frame_id of that message.
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    width: int = 0
    height: int = 0
    stamp_ns: int = 0
    frame_id: str = ""
    meta: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.x)
        if not (len(self.y) == len(self.t) == len(self.p) == n):
            raise ValueError(
                f"EventBatch arrays differ in length: x={len(self.x)} y={len(self.y)} t={len(self.t)} p={len(self.p)}"
            )

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def empty(cls, width: int = 0, height: int = 0, stamp_ns: int = 0, frame_id: str = "") -> "EventBatch":
        return cls(
            np.zeros(0, np.uint16), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.uint8),
            width, height, stamp_ns, frame_id,
        )

    @classmethod
    def from_arrays(
        cls, x, y, t, p, width: int = 0, height: int = 0, stamp_ns: int = 0, frame_id: str = ""
    ) -> "EventBatch":
        """Build a batch from array-likes, converting to the canonical dtypes."""
        return cls(
            np.ascontiguousarray(x, dtype=np.uint16),
            np.ascontiguousarray(y, dtype=np.uint16),
            np.ascontiguousarray(t, dtype=np.int64),
            (np.asarray(p) > 0).astype(np.uint8),
            int(width), int(height), int(stamp_ns), str(frame_id),
        )

    @classmethod
    def concatenate(cls, batches: Sequence["EventBatch"]) -> "EventBatch":
        """Join batches in order; sensor size and frame_id come from the last batch that has them."""
        if not batches:
            return cls.empty()
        last = batches[-1]
        width = max((b.width for b in batches), default=0)
        height = max((b.height for b in batches), default=0)
        return cls(
            np.concatenate([b.x for b in batches]),
            np.concatenate([b.y for b in batches]),
            np.concatenate([b.t for b in batches]),
            np.concatenate([b.p for b in batches]),
            width, height, last.stamp_ns, last.frame_id,
        )

    def select(self, index) -> "EventBatch":
        """A new batch with the events picked by a boolean mask, slice or index array."""
        return EventBatch(
            self.x[index], self.y[index], self.t[index], self.p[index],
            self.width, self.height, self.stamp_ns, self.frame_id,
        )

    @property
    def duration_ns(self) -> int:
        return int(self.t[-1] - self.t[0]) if len(self) else 0

    def check_bounds(self) -> None:
        """Raise :class:`EventOutOfBoundsError` if an event lies outside the announced sensor size."""
        if len(self) == 0 or self.width <= 0 or self.height <= 0:
            return
        bad = (self.x >= self.width) | (self.y >= self.height)
        if bad.any():
            i = int(np.argmax(bad))
            raise EventOutOfBoundsError(
                f"{int(bad.sum())} event(s) outside the {self.width}x{self.height} sensor, "
                f"first at index {i}: x={int(self.x[i])}, y={int(self.y[i])}"
            )
