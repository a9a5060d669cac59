"""Render events as an RGB image: ON events one colour, OFF another, on a dark background; optional ROI boxes."""

from __future__ import annotations

from typing import Iterable, Sequence, Tuple, Union

import numpy as np

from fer_perception.errors import ConfigError
from fer_perception.events.batch import EventBatch
from fer_perception.results import Roi

Color = Tuple[int, int, int]

ON_COLOR: Color = (64, 200, 255)     # light blue: brighter
OFF_COLOR: Color = (255, 80, 48)     # orange-red: darker
BOTH_COLOR: Color = (235, 235, 235)  # pixel with as many ON as OFF events
BACKGROUND: Color = (16, 16, 16)
ROI_COLOR: Color = (80, 255, 80)


def _color(name: str, value: Sequence[int]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (3,) or arr.min() < 0 or arr.max() > 255:
        raise ConfigError(f"{name} must be three integers 0-255 (R, G, B), got {value!r}")
    return arr.astype(np.uint8)


def draw_roi(image: np.ndarray, roi: Roi, color: Color = ROI_COLOR, thickness: int = 1) -> np.ndarray:
    """Draw the outline of ``roi`` into ``image`` (in place, clipped to the image); returns ``image``."""
    h, w = image.shape[:2]
    c = _color("color", color)
    x0, y0 = roi.x, roi.y
    x1, y1 = roi.x + roi.width - 1, roi.y + roi.height - 1
    for k in range(max(1, int(thickness))):
        xa, xb = max(x0 + k, 0), min(x1 - k, w - 1)
        ya, yb = max(y0 + k, 0), min(y1 - k, h - 1)
        if xa > xb or ya > yb:
            break
        for yy in (y0 + k, y1 - k):
            if 0 <= yy < h:
                image[yy, xa:xb + 1] = c
        for xx in (x0 + k, x1 - k):
            if 0 <= xx < w:
                image[ya:yb + 1, xx] = c
    return image


def event_frame_image(
    batch: EventBatch,
    width: int,
    height: int,
    roi: Union[Roi, Iterable[Roi], None] = None,
    *,
    on_color: Color = ON_COLOR,
    off_color: Color = OFF_COLOR,
    both_color: Color = BOTH_COLOR,
    background: Color = BACKGROUND,
    roi_color: Color = ROI_COLOR,
) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 RGB picture of ``batch``.

    A pixel takes ``on_color`` where it saw more ON than OFF events, ``off_color`` where more OFF, and
    ``both_color`` on a tie; pixels without events show ``background``. Events outside the image are
    ignored. ``roi`` (one ``Roi`` or several) is outlined in ``roi_color``.
    """
    if int(width) <= 0 or int(height) <= 0:
        raise ConfigError(f"event_frame_image: width and height must be positive, got {width}x{height}")
    width, height = int(width), int(height)
    image = np.empty((height, width, 3), np.uint8)
    image[...] = _color("background", background)
    if len(batch):
        inside = (batch.x < width) & (batch.y < height)
        pix = batch.y[inside].astype(np.int64) * width + batch.x[inside]
        on = batch.p[inside].astype(bool)
        n = width * height
        balance = np.bincount(pix, weights=np.where(on, 1.0, -1.0), minlength=n)
        any_event = np.bincount(pix, minlength=n) > 0
        flat = image.reshape(n, 3)
        flat[any_event & (balance > 0)] = _color("on_color", on_color)
        flat[any_event & (balance < 0)] = _color("off_color", off_color)
        flat[any_event & (balance == 0)] = _color("both_color", both_color)
    if roi is not None:
        for r in [roi] if isinstance(roi, Roi) else roi:
            draw_roi(image, r, roi_color)
    return image


__all__ = ["event_frame_image", "draw_roi", "ON_COLOR", "OFF_COLOR", "BOTH_COLOR", "BACKGROUND"]
