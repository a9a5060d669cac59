"""Mapping face boxes from the camera image to the event sensor.

On a DAVIS the APS frames and the events come from the same pixel array: :meth:`SensorMapping.identity`. With a
separate camera beside the event sensor, a 3x3 homography (from a calibration, valid for faces at roughly one
distance, or a plane) maps image pixels to event pixels: :meth:`SensorMapping.from_homography`; when both
sensors see the same field of view at different resolutions: :meth:`SensorMapping.from_scale`. In the config the
homography is a list of 9 floats, row-major (:meth:`SensorMapping.from_list`).

Pixel convention: a box ``(x, y, w, h)`` has its corners at ``x`` and ``x + w`` (pixel edges), so a pure scale
maps a full-image box onto the full sensor. :meth:`SensorMapping.map_box` transforms the four corners, takes
their bounding box and clips it to the destination sensor; a box that lands outside comes back with zero width
or height (check ``box[2] > 0 and box[3] > 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from fer_perception.errors import ConfigError
from fer_perception.results import Roi

__all__ = ["SensorMapping"]

Size = Optional[Tuple[int, int]]


def _size(size, name: str) -> Size:
    if size is None:
        return None
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be (width, height), got {size!r}") from exc
    if w <= 0 or h <= 0:
        raise ConfigError(f"{name} must be positive, got {w}x{h}")
    return (w, h)


def _matrix(h) -> np.ndarray:
    m = np.asarray(h, dtype=np.float64)
    if m.size != 9:
        raise ConfigError(f"a homography needs 9 values (3x3, row-major), got {m.size}")
    m = m.reshape(3, 3)
    if not np.all(np.isfinite(m)):
        raise ConfigError(f"homography has non-finite values: {m.ravel().tolist()}")
    if abs(np.linalg.det(m)) < 1e-12:
        raise ConfigError(f"homography is singular (determinant ~0): {m.ravel().tolist()}")
    return m / m[2, 2] if abs(m[2, 2]) > 1e-12 else m


@dataclass(frozen=True)
class SensorMapping:
    """A projective map from image pixels (``src``) to event-sensor pixels (``dst``).

    Attributes:
        matrix: 3x3 homography (normalised so ``matrix[2, 2] == 1`` where possible).
        src_size, dst_size: ``(width, height)`` of the image and of the event sensor, or None (then no clipping).
    """

    matrix: np.ndarray
    src_size: Size = None
    dst_size: Size = None

    @classmethod
    def identity(cls, size: Size = None) -> "SensorMapping":
        """Frames and events share the sensor (DAVIS APS + DVS); boxes are only clipped to ``size``."""
        s = _size(size, "size")
        return cls(np.eye(3), s, s)

    @classmethod
    def from_homography(cls, matrix, src_size: Size = None, dst_size: Size = None) -> "SensorMapping":
        """From a 3x3 homography mapping image pixel coordinates to event pixel coordinates."""
        return cls(_matrix(matrix), _size(src_size, "src_size"), _size(dst_size, "dst_size"))

    @classmethod
    def from_scale(cls, src_size, dst_size) -> "SensorMapping":
        """Same field of view, different resolution: ``x * dst_w / src_w``, ``y * dst_h / src_h``."""
        s, d = _size(src_size, "src_size"), _size(dst_size, "dst_size")
        if s is None or d is None:
            raise ConfigError("from_scale needs both src_size and dst_size")
        return cls(np.diag([d[0] / s[0], d[1] / s[1], 1.0]), s, d)

    @classmethod
    def from_list(cls, values: Sequence[float], src_size: Size = None, dst_size: Size = None) -> "SensorMapping":
        """From a config value: 9 floats (row-major homography); an empty list means identity, or a pure scale
        when both sizes are given and differ."""
        vals = [] if values is None else list(values)
        if not vals:
            s, d = _size(src_size, "src_size"), _size(dst_size, "dst_size")
            if s is not None and d is not None and s != d:
                return cls.from_scale(s, d)
            return cls(np.eye(3), s, d)
        try:
            floats = [float(v) for v in vals]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"homography values must be numbers, got {vals!r}") from exc
        if len(floats) != 9:
            raise ConfigError(f"a homography needs 9 values (3x3, row-major), got {len(floats)}")
        return cls.from_homography(floats, src_size, dst_size)

    @property
    def is_identity(self) -> bool:
        return bool(np.allclose(self.matrix, np.eye(3)))

    def to_list(self) -> list:
        return [float(v) for v in self.matrix.ravel()]

    def inverse(self) -> "SensorMapping":
        """The map from event pixels back to image pixels."""
        return SensorMapping(_matrix(np.linalg.inv(self.matrix)), self.dst_size, self.src_size)

    def map_points(self, points) -> np.ndarray:
        """``(N, 2)`` image points to ``(N, 2)`` sensor points (no clipping); NaN for points at infinity."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        q = np.c_[p, np.ones(len(p))] @ self.matrix.T
        w = q[:, 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(w > 1e-12, q[:, :2] / np.where(w > 1e-12, w, 1.0), np.nan)
        return out

    def map_box(self, box: Sequence[float]) -> np.ndarray:
        """A float ``(x, y, w, h)`` box on the event sensor: bounding box of the mapped corners, clipped."""
        x, y, w, h = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)[:4])
        corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]])
        q = corners if self.is_identity else self.map_points(corners)
        if not np.all(np.isfinite(q)):
            return np.array([0.0, 0.0, 0.0, 0.0])
        x0, y0 = q.min(axis=0)
        x1, y1 = q.max(axis=0)
        if self.dst_size is not None:
            dw, dh = self.dst_size
            x0, x1 = np.clip([x0, x1], 0.0, dw)
            y0, y1 = np.clip([y0, y1], 0.0, dh)
        return np.array([x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)])

    def map_roi(self, roi: Roi) -> Roi:
        """:meth:`map_box` for an integer :class:`Roi`."""
        return Roi.from_xywh(self.map_box(roi.as_tuple()))
