"""Face crops for the frame models, and the square face window of the event path.

:func:`crop_face` cuts a face box (plus a margin, squared by default) out of a ``uint8`` image and resizes it to
the model input (area averaging when shrinking, bilinear when enlarging). Parts outside the image are padded
(``border``: constant, replicate or reflect), so faces at the image border keep their place in the crop.
With ``align=True`` and landmarks, the crop is rotated about its centre so that the eyes are level.

Coordinates: a box ``(x, y, w, h)`` covers the pixels ``x .. x + w - 1``; cropping an in-image box with no
margin to its own size returns exactly those pixels.

:func:`nose_centred_square` gives the event path's face window: a square centred on the nose tip (a landmark
when the detector gives one, else a fixed point of the box), sized like the FerDVS crops (faces were
cropped centred on the nose, then resized to 200x200: docs/facts.md#spiking-fer).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from fer_perception.errors import ConfigError, ImageError
from fer_perception.images import check_image

__all__ = [
    "expand_box",
    "crop_face",
    "crop_faces",
    "eye_angle",
    "nose_centred_square",
    "ferdvs_landmark_box",
    "NOSE_Y",
    "FERDVS_SIDE_SCALE",
]

_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}

#: Nose tip height inside a frontal Haar face box, as a fraction of the box height (the box spans brows to
#: chin; measured 0.62 +- 0.02 on the synthetic faces, about 0.6 on real frontal faces).
NOSE_Y = 0.6
#: Side of the event-path square relative to the Haar box height: the synthetic FerDVS-style crops (and the
#: demo weights trained on them) show the full face at 0.72-0.82 of the side; the Haar box is about 0.89 of
#: that face height, so side = 1.45 box heights.
FERDVS_SIDE_SCALE = 1.45


def _box(box: Sequence[float]) -> np.ndarray:
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.size != 4 or not np.all(np.isfinite(b)) or b[2] <= 0 or b[3] <= 0:
        raise ConfigError(f"a face box must be finite (x, y, w, h) with w, h > 0, got {np.asarray(box).tolist()}")
    return b


def expand_box(box: Sequence[float], margin: float = 0.2, square: bool = True) -> np.ndarray:
    """The box grown by ``margin`` of its size on every side (after squaring it around its centre if asked)."""
    x, y, w, h = _box(box)
    if margin <= -0.5:
        raise ConfigError(f"margin must be > -0.5, got {margin}")
    cx, cy = x + w / 2.0, y + h / 2.0
    if square:
        w = h = max(w, h)
    w, h = w * (1 + 2 * margin), h * (1 + 2 * margin)
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h])


def eye_angle(landmarks: np.ndarray) -> float:
    """Roll angle in degrees of the line through the eyes (landmarks 0 and 1), positive = clockwise on screen."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if lm.shape[0] < 2 or not np.all(np.isfinite(lm[:2])):
        raise ConfigError(f"eye alignment needs two finite eye landmarks, got shape {lm.shape}")
    a, b = lm[0], lm[1]
    if a[0] > b[0]:
        a, b = b, a  # left-to-right in the image
    return math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))


def _pad_region(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, border: int, value: int) -> np.ndarray:
    """``img[y0:y1, x0:x1]`` with out-of-image parts filled by the border rule (a view when inside)."""
    h, w = img.shape[:2]
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return img[y0:y1, x0:x1]
    ys = np.arange(y0, y1)
    xs = np.arange(x0, x1)
    if border == cv2.BORDER_REFLECT_101:
        def refl(i, n):
            if n == 1:
                return np.zeros_like(i)
            period = 2 * (n - 1)
            i = np.abs(i) % period
            return np.where(i >= n, period - i, i)
        out = img[refl(ys, h)][:, refl(xs, w)]
    else:
        out = img[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)]
        if border == cv2.BORDER_CONSTANT:
            out[(ys < 0) | (ys >= h)] = value
            out[:, (xs < 0) | (xs >= w)] = value
    return out


def _size(size) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        ow, oh = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"crop size must be (width, height) or an int, got {size!r}") from exc
    if ow < 1 or oh < 1 or ow > 8192 or oh > 8192:
        raise ConfigError(f"crop size must be within 1..8192 pixels per side, got {ow}x{oh}")
    return ow, oh


def crop_face(
    image: np.ndarray,
    box: Sequence[float],
    margin: float = 0.2,
    size=(224, 224),
    align: bool = False,
    landmarks: Optional[np.ndarray] = None,
    square: bool = True,
    border: str = "constant",
    border_value: int = 0,
) -> np.ndarray:
    """Cut one face out of ``image`` and resize it to ``size`` = (width, height).

    Args:
        image: ``uint8`` RGB/RGBA/mono image (RGBA loses its alpha).
        box: face box ``(x, y, w, h)`` in image pixels.
        margin: fraction of the (squared) box size added on every side.
        size: output (width, height), or one int for a square.
        align: rotate so the eyes (``landmarks[0:2]``) are level; ignored without landmarks.
        landmarks: ``(5, 2)`` landmarks (YuNet order) or None.
        square: make the box square (side = max(w, h)) around its centre before adding the margin.
        border: how to fill outside the image: ``"constant"`` (``border_value``), ``"replicate"``, ``"reflect"``.

    Returns:
        ``(height, width, 3)`` RGB or ``(height, width)`` mono ``uint8``.
    """
    img = check_image(image)
    if border not in _BORDERS:
        raise ConfigError(f"unknown border {border!r}; choose one of {', '.join(_BORDERS)}")
    mode = _BORDERS[border]
    ow, oh = _size(size)
    region = expand_box(box, margin, square)
    angle = eye_angle(landmarks) if align and landmarks is not None else 0.0
    if abs(angle) < 1e-3:
        x0 = int(math.floor(region[0] + 0.5))
        y0 = int(math.floor(region[1] + 0.5))
        x1 = max(x0 + 1, int(math.floor(region[0] + region[2] + 0.5)))
        y1 = max(y0 + 1, int(math.floor(region[1] + region[3] + 0.5)))
        if x1 - x0 > 16 * 8192 or y1 - y0 > 16 * 8192:
            raise ImageError(f"face box {np.asarray(box).tolist()} is absurdly large")
        sub = _pad_region(img, x0, y0, x1, y1, mode, int(border_value))
        if sub.shape[1] == ow and sub.shape[0] == oh:
            return np.ascontiguousarray(sub).copy()
        shrink = sub.shape[1] > ow or sub.shape[0] > oh
        return cv2.resize(np.ascontiguousarray(sub), (ow, oh),
                          interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return _rotated_crop(img, region, angle, ow, oh, mode, int(border_value))


def _rotated_crop(img: np.ndarray, region: np.ndarray, angle: float, ow: int, oh: int, mode: int, value: int):
    x, y, w, h = region
    cx, cy = x + w / 2.0 - 0.5, y + h / 2.0 - 0.5  # centre in pixel-centre coordinates
    scale = min(ow / w, oh / h)
    # Cut the axis-aligned bounding region of the rotated rectangle (plus 2 px), pre-shrunk with area averaging
    # when the crop reduces more than 2x, then one warpAffine does rotation, scaling and the final placement.
    rad = math.radians(angle)
    c, s = abs(math.cos(rad)), abs(math.sin(rad))
    half_w = (w * c + h * s) / 2.0 + 2
    half_h = (w * s + h * c) / 2.0 + 2
    bx0, by0 = int(math.floor(cx - half_w)), int(math.floor(cy - half_h))
    bx1, by1 = int(math.ceil(cx + half_w)) + 1, int(math.ceil(cy + half_h)) + 1
    sub = np.ascontiguousarray(_pad_region(img, bx0, by0, bx1, by1, mode, value))
    f = 1.0
    if scale < 0.5:
        f = scale * 1.25
        nw, nh = max(1, int(round(sub.shape[1] * f))), max(1, int(round(sub.shape[0] * f)))
        fx, fy = nw / sub.shape[1], nh / sub.shape[0]
        sub = cv2.resize(sub, (nw, nh), interpolation=cv2.INTER_AREA)
    else:
        fx = fy = 1.0
    # centre of the crop in the (shrunk) sub-image, pixel-centre coordinates
    scx = (cx - bx0 + 0.5) * fx - 0.5
    scy = (cy - by0 + 0.5) * fy - 0.5
    sx, sy = ow / (w * fx), oh / (h * fy)
    cr, sr = math.cos(rad), math.sin(rad)
    # dest = S * R(-angle) * (src - centre) + dest_centre
    m = np.array([[sx * cr, sx * sr, 0.0], [-sy * sr, sy * cr, 0.0]])
    m[:, 2] = np.array([(ow - 1) / 2.0, (oh - 1) / 2.0]) - m[:, :2] @ np.array([scx, scy])
    border_val = (value, value, value) if sub.ndim == 3 else value
    return cv2.warpAffine(sub, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=border_val)


def crop_faces(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    margin: float = 0.2,
    size=(224, 224),
    align: bool = False,
    landmarks: Optional[Sequence[Optional[np.ndarray]]] = None,
    square: bool = True,
    border: str = "constant",
    border_value: int = 0,
) -> np.ndarray:
    """:func:`crop_face` for every box; returns ``(N, height, width, 3)`` (or ``(N, height, width)`` mono)."""
    img = check_image(image)
    ow, oh = _size(size)
    boxes = list(boxes)
    if landmarks is not None and len(landmarks) != len(boxes):
        raise ConfigError(f"got {len(boxes)} boxes but {len(landmarks)} landmark sets")
    shape = (len(boxes), oh, ow) + (() if img.ndim == 2 else (3,))
    out = np.empty(shape, np.uint8)
    for i, b in enumerate(boxes):
        out[i] = crop_face(img, b, margin, (ow, oh), align, None if landmarks is None else landmarks[i],
                           square, border, border_value)
    return out


def nose_centred_square(
    box: Sequence[float],
    landmarks: Optional[np.ndarray] = None,
    scale: float = FERDVS_SIDE_SCALE,
    nose_y: float = NOSE_Y,
) -> np.ndarray:
    """The event path's face window: a square ``(x, y, side, side)`` centred on the nose tip.

    The nose tip is ``landmarks[2]`` when given (YuNet), else ``(x + w/2, y + nose_y * h)`` of the box. The
    side is ``scale * max(w, h)``. Map the result to the event sensor (:mod:`fer_perception.faces.mapping`)
    and hand it to the representation as the face ``roi``.
    """
    x, y, w, h = _box(box)
    if not scale > 0 or not 0.0 <= nose_y <= 1.0:
        raise ConfigError(f"nose_centred_square needs scale > 0 and 0 <= nose_y <= 1, got {scale}, {nose_y}")
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
        if lm.shape[0] < 3 or not np.all(np.isfinite(lm[2])):
            raise ConfigError(f"landmarks must hold the nose tip at index 2, got shape {lm.shape}")
        nx, ny = lm[2]
    else:
        nx, ny = x + w / 2.0, y + nose_y * h
    side = scale * max(w, h)
    return np.array([nx - side / 2.0, ny - side / 2.0, side, side])


def ferdvs_landmark_box(eye_distance: float, nose_length: float, nose_tip: Sequence[float]) -> np.ndarray:
    """The crop of the Spiking-FER data preparation from 68-point landmark measures (official README).

    Centred on the nose tip; width ``2 * 2/3 * eye_distance``, height ``2 * 2/3 * nose_length``; the crop was
    then resized to 200x200 (so the aspect ratio changes). Returns ``(x, y, w, h)``.
    """
    if not eye_distance > 0 or not nose_length > 0:
        raise ConfigError(f"eye_distance and nose_length must be > 0, got {eye_distance}, {nose_length}")
    nx, ny = (float(v) for v in nose_tip)
    w = 2.0 * 2.0 / 3.0 * float(eye_distance)
    h = 2.0 * 2.0 / 3.0 * float(nose_length)
    return np.array([nx - w / 2.0, ny - h / 2.0, w, h])
