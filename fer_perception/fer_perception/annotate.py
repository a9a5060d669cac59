"""Annotated views of the results: camera frames with faces, expressions, probabilities, age and gender, and the
event frame with each face's event window.

:func:`annotate_frame` draws, per face: the box in the colour of its expression, a tag above it
(``face_1  happy 87%``), a small probability bar chart beside the box (all classes, the winner highlighted),
and below it the apparent age and gender (``age 31 +/-4  female 92%``), plus the event path's expression when
given. :func:`annotate_events` renders an :class:`~fer_perception.events.batch.EventBatch` (or takes an event
image), enlarges small sensors for legibility, and draws the face windows the same way.

Faces are :class:`FaceAnnotation` records, or dicts / objects with the same fields (``box``, ``face_id``,
``emotion``, ``demographics``, ``event_emotion``); an emotion is an
:class:`~fer_perception.results.EmotionResult` or anything with ``label``/``confidence`` and/or
``labels``/``probabilities``; demographics a :class:`~fer_perception.results.DemographicsResult` or anything with
``age``, ``age_std``, ``gender``, ``gender_confidence``. Everything is drawn with OpenCV into an RGB copy
(about 0.5 ms per face at 640x480).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from fer_perception.errors import ConfigError
from fer_perception.images import check_image, to_rgb
from fer_perception.labels import canonical

__all__ = ["FaceAnnotation", "EXPRESSION_COLORS", "expression_color", "annotate_frame", "annotate_events"]

Color = Tuple[int, int, int]

#: RGB colour of each canonical expression.
EXPRESSION_COLORS: Dict[str, Color] = {
    "happy": (255, 205, 40),
    "sad": (70, 130, 255),
    "angry": (235, 50, 45),
    "fear": (175, 90, 235),
    "surprise": (255, 140, 30),
    "disgust": (60, 190, 75),
    "neutral": (190, 190, 190),
    "contempt": (40, 190, 190),
}
_UNKNOWN: Color = (230, 230, 230)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_DARK: Color = (20, 20, 20)


def expression_color(label: str) -> Color:
    """The RGB colour of an expression label of any model (``"happiness"`` and ``"happy"`` share one)."""
    return EXPRESSION_COLORS.get(canonical(label), _UNKNOWN) if label else _UNKNOWN


@dataclass
class FaceAnnotation:
    """What to draw for one face (``box`` in pixels of the image being annotated)."""

    box: Sequence[float]
    face_id: str = ""
    emotion: Any = None
    demographics: Any = None
    event_emotion: Any = None


@dataclass
class _Emotion:
    label: str
    confidence: float
    labels: List[str]
    probabilities: np.ndarray


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _emotion(obj: Any) -> Optional[_Emotion]:
    if obj is None:
        return None
    labels = [str(v) for v in (_get(obj, "labels") or [])]
    probs = _get(obj, "probabilities")
    probs = np.asarray(probs if probs is not None else [], dtype=np.float64).reshape(-1)
    if len(labels) != len(probs):
        raise ConfigError(f"emotion has {len(labels)} labels but {len(probs)} probabilities")
    label = _get(obj, "label")
    conf = _get(obj, "confidence")
    if (label is None or conf is None) and len(probs):
        i = int(np.argmax(probs))
        label = labels[i] if label is None else label
        conf = float(probs[i]) if conf is None else conf
    if label is None:
        return None
    return _Emotion(str(label), float(conf) if conf is not None else float("nan"), labels, probs)


def _face(obj: Any) -> FaceAnnotation:
    if isinstance(obj, FaceAnnotation):
        return obj
    box = _get(obj, "box")
    if box is None:
        roi = _get(obj, "roi")
        if roi is not None:
            box = (roi.x, roi.y, roi.width, roi.height)
    if box is None:
        raise ConfigError(f"a face to annotate needs a box (or roi), got {type(obj).__name__}")
    return FaceAnnotation(box, str(_get(obj, "face_id", "") or ""), _get(obj, "emotion"),
                          _get(obj, "demographics"), _get(obj, "event_emotion"))


def _text_size(text: str, scale: float, thick: int) -> Tuple[int, int, int]:
    (w, h), base = cv2.getTextSize(text, _FONT, scale, thick)
    return w, h, base


def _shade(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    """Darken a rectangle (in place, clipped) so text on it stays readable over any background."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        roi[...] = (roi.astype(np.uint16) * int(round((1 - alpha) * 256)) >> 8).astype(np.uint8)


def _label(img: np.ndarray, text: str, x: int, y: int, fg: Color, bg: Optional[Color], scale: float,
           thick: int = 1, pad: int = 3) -> Tuple[int, int]:
    """Text with its top-left corner at (x, y) on a filled (or shaded) box, kept inside the image; returns size."""
    h, w = img.shape[:2]
    tw, th, base = _text_size(text, scale, thick)
    bw, bh = tw + 2 * pad, th + base + 2 * pad
    x = int(min(max(0, x), max(0, w - bw)))
    y = int(min(max(0, y), max(0, h - bh)))
    if bg is None:
        _shade(img, x, y, x + bw, y + bh, 0.55)
    else:
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), bg, -1)
    cv2.putText(img, text, (x + pad, y + pad + th), _FONT, scale, fg, thick, cv2.LINE_AA)
    return bw, bh


def _ink(color: Color) -> Color:
    """Black or white, whichever reads better on ``color``."""
    r, g, b = color
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _bars(img: np.ndarray, emo: _Emotion, box: np.ndarray, scale: float) -> None:
    """The probability chart beside the box (right if there is room, else left), clipped to the image."""
    n = len(emo.labels)
    if n == 0:
        return
    h, w = img.shape[:2]
    fs = 0.38 * scale
    row = max(10, int(round(13 * scale)))
    names = [canonical(lbl)[:8] for lbl in emo.labels]
    name_w = max(_text_size(s, fs, 1)[0] for s in names)
    bar_w = int(round(60 * scale))
    pw, ph = name_w + bar_w + 18, n * row + 6
    x0 = int(box[0] + box[2]) + 6
    if x0 + pw > w:
        x0 = int(box[0]) - 6 - pw
    if x0 < 0:
        x0 = max(0, min(w - pw, int(box[0] + box[2]) + 6))
    y0 = int(min(max(0, box[1]), max(0, h - ph)))
    _shade(img, x0, y0, x0 + pw, y0 + ph, 0.6)
    best = int(np.argmax(emo.probabilities))
    for i, (name, p) in enumerate(zip(names, emo.probabilities)):
        yt = y0 + 3 + i * row
        col = expression_color(emo.labels[i])
        text_col = (255, 255, 255) if i == best else (200, 200, 200)
        cv2.putText(img, name, (x0 + 4, yt + row - 3), _FONT, fs, text_col, 1, cv2.LINE_AA)
        bx = x0 + 12 + name_w
        length = int(round(bar_w * float(np.clip(p, 0.0, 1.0))))
        cv2.rectangle(img, (bx, yt + 2), (bx + bar_w, yt + row - 2), (70, 70, 70), 1)
        if length > 0:
            cv2.rectangle(img, (bx, yt + 2), (bx + length, yt + row - 2), col, -1)


def _draw_face(img: np.ndarray, face: FaceAnnotation, scale: float, bars: bool, thickness: int) -> None:
    box = np.asarray(face.box, dtype=np.float64).reshape(-1)[:4]
    if box.size != 4 or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        return
    emo = _emotion(face.emotion)
    ev = _emotion(face.event_emotion)
    main = emo or ev
    color = expression_color(main.label) if main else _UNKNOWN
    x0, y0 = int(round(box[0])), int(round(box[1]))
    x1, y1 = int(round(box[0] + box[2])), int(round(box[1] + box[3]))
    cv2.rectangle(img, (x0, y0), (x1, y1), color, thickness, cv2.LINE_AA)
    fs = 0.5 * scale
    # tag above the box: id and expression
    parts = [face.face_id] if face.face_id else []
    if main:
        parts.append(f"{main.label} {_pct(main.confidence)}".strip())
    if parts:
        tw, th, base = _text_size("  ".join(parts), fs, 1)
        _label(img, "  ".join(parts), x0, y0 - (th + base + 6) - 1, _ink(color), color, fs)
    # lines under the box: the event path's expression (when the frame path is shown above) and demographics
    y = y1 + thickness + 1
    lines = []
    if emo and ev:
        lines.append(f"events: {ev.label} {_pct(ev.confidence)}".strip())
    demo = face.demographics
    if demo is not None:
        lines.append(_demographics_text(demo))
    for text in lines:
        if text:
            _, bh = _label(img, text, x0, y, (255, 255, 255), None, 0.45 * scale)
            y += bh + 1
    if bars and main is not None and len(main.labels):
        _bars(img, main, box, scale)


def _pct(conf: float) -> str:
    return "" if not np.isfinite(conf) else f"{int(round(100 * conf))}%"


def _demographics_text(demo: Any) -> str:
    age = _get(demo, "age")
    age_std = _get(demo, "age_std")
    gender = str(_get(demo, "gender", "") or "")
    gconf = _get(demo, "gender_confidence")
    parts = []
    if age is not None and np.isfinite(float(age)):
        std = f" +/-{float(age_std):.0f}" if age_std is not None and np.isfinite(float(age_std)) and age_std > 0 else ""
        parts.append(f"age {float(age):.0f}{std}")
    if gender:
        gc = f" {int(round(100 * float(gconf)))}%" if gconf is not None and np.isfinite(float(gconf)) else ""
        parts.append(f"{gender}{gc}")
    return "  ".join(parts)


def annotate_frame(
    rgb: np.ndarray,
    faces: Sequence[Any],
    *,
    bars: bool = True,
    header: str = "",
    copy: bool = True,
    thickness: int = 2,
) -> np.ndarray:
    """Draw ``faces`` on a camera frame; returns a ``uint8`` RGB image (a copy unless ``copy=False`` and the
    input is already contiguous RGB). ``header`` (e.g. rates and latency) goes to the top-left corner."""
    img = check_image(rgb, "frame")
    if img.ndim == 2:
        out = to_rgb(img)
    elif copy or not (img.flags.c_contiguous and img.flags.writeable):
        out = np.array(img, dtype=np.uint8, order="C", copy=True)
    else:
        out = img
    scale = float(np.clip(min(out.shape[0] / 480.0, out.shape[1] / 640.0), 0.6, 3.0))
    for f in faces:
        _draw_face(out, _face(f), scale, bars, max(1, int(round(thickness * scale))))
    if header:
        _label(out, header, 0, 0, (255, 255, 255), None, 0.45 * scale)
    return out


def annotate_events(
    events: Any,
    faces: Sequence[Any] = (),
    *,
    width: int = 0,
    height: int = 0,
    min_width: int = 480,
    bars: bool = True,
    header: str = "",
) -> np.ndarray:
    """The event frame with each face's event window.

    Args:
        events: an :class:`~fer_perception.events.batch.EventBatch` (rendered with
            :func:`fer_perception.events.visualize.event_frame_image`) or an RGB/mono event image.
        faces: face windows in sensor pixels (``box``, ``face_id``, ``emotion`` = the event path's result).
        width, height: sensor size when the batch does not carry it.
        min_width: small sensors are enlarged by an integer factor (nearest) to at least this width.
    """
    if isinstance(events, np.ndarray):
        img = to_rgb(events)
    else:
        from fer_perception.events.visualize import event_frame_image

        w = int(width or getattr(events, "width", 0) or 0)
        h = int(height or getattr(events, "height", 0) or 0)
        if w <= 0 or h <= 0:
            raise ConfigError("annotate_events needs the sensor size: the batch has none, pass width= and height=")
        img = event_frame_image(events, w, h)
    k = max(1, int(np.ceil(min_width / float(img.shape[1])))) if min_width else 1
    if k > 1:
        img = cv2.resize(img, (img.shape[1] * k, img.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    scaled = []
    for f in faces:
        fa = _face(f)
        box = np.asarray(fa.box, dtype=np.float64).reshape(-1)[:4] * k
        # on the event view the face's expression is the event path's
        scaled.append(FaceAnnotation(box, fa.face_id, fa.event_emotion or fa.emotion, fa.demographics, None))
    return annotate_frame(img, scaled, bars=bars, header=header, copy=False, thickness=2)
