"""Results to ROS messages: the field values as plain dicts (ROS-free, tested), and one function that assigns
such a dict onto an rclpy message object.

``emotion_fields(result)`` and friends return nested dicts whose keys are the message fields
(fer_perception_msgs/Emotion and Demographics, sensor_msgs/Image, diagnostic_msgs/DiagnosticStatus);
:func:`fill_message` copies them onto a message instance, converting byte strings and float lists to the
``array.array`` forms rclpy takes without a per-element check.
"""

from __future__ import annotations

import array
import math
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from fer_perception.images import image_to_ros_fields
from fer_perception.results import DemographicsResult, EmotionResult, Roi

NS = 1_000_000_000
UINT32_MAX = 2**32 - 1

#: diagnostic_msgs/DiagnosticStatus levels.
DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3


def time_fields(stamp_ns: int) -> Dict[str, int]:
    """builtin_interfaces/Time (or Duration) of a nanosecond count (floor division, nanosec in [0, 1e9))."""
    sec, nsec = divmod(int(stamp_ns), NS)
    return {"sec": int(sec), "nanosec": int(nsec)}


def header_fields(stamp_ns: int, frame_id: str) -> Dict[str, Any]:
    return {"stamp": time_fields(stamp_ns), "frame_id": str(frame_id)}


def roi_fields(roi: Roi) -> Dict[str, Any]:
    """sensor_msgs/RegionOfInterest (uint32 fields: negative corners are clipped to 0, the size shrinks)."""
    x0, y0 = max(0, int(roi.x)), max(0, int(roi.y))
    w = max(0, int(roi.width) - (x0 - int(roi.x)))
    h = max(0, int(roi.height) - (y0 - int(roi.y)))
    return {"x_offset": min(x0, UINT32_MAX), "y_offset": min(y0, UINT32_MAX), "height": min(h, UINT32_MAX),
            "width": min(w, UINT32_MAX), "do_rectify": False}


def _f32(v: float) -> float:
    v = float(v)
    return v if math.isfinite(v) else 0.0


def emotion_fields(r: EmotionResult, latency_ms: Optional[float] = None) -> Dict[str, Any]:
    """fer_perception_msgs/Emotion for one result (``latency_ms`` overrides the result's, e.g. measured at
    publication)."""
    probs = np.asarray(r.probabilities, dtype=np.float64).reshape(-1)
    if len(probs) != len(r.labels):
        from fer_perception.errors import FerPerceptionError

        raise FerPerceptionError(
            f"Emotion for face {r.face_id!r}: {len(probs)} probabilities for {len(r.labels)} labels")
    return {
        "header": header_fields(r.stamp_ns, r.frame_id),
        "face_id": str(r.face_id),
        "roi": roi_fields(r.roi),
        "source": str(r.source),
        "model": str(r.model),
        "label": str(r.label),
        "confidence": _f32(r.confidence),
        "labels": [str(s) for s in r.labels],
        "probabilities": [_f32(p) for p in probs],
        "window": time_fields(max(0, int(r.window_ns))),
        "latency_ms": _f32(r.latency_ms if latency_ms is None else latency_ms),
    }


def demographics_fields(d: DemographicsResult, latency_ms: Optional[float] = None) -> Dict[str, Any]:
    """fer_perception_msgs/Demographics for one result (gender ``female``, ``male`` or ``""``)."""
    gender = d.gender if d.gender in ("female", "male") else ""
    return {
        "header": header_fields(d.stamp_ns, d.frame_id),
        "face_id": str(d.face_id),
        "roi": roi_fields(d.roi),
        "model": str(d.model),
        "age": _f32(d.age),
        "age_std": _f32(d.age_std),
        "gender": gender,
        "gender_confidence": _f32(d.gender_confidence) if gender else 0.0,
        "latency_ms": _f32(d.latency_ms if latency_ms is None else latency_ms),
    }


def image_fields(image: np.ndarray, stamp_ns: int, frame_id: str) -> Dict[str, Any]:
    """sensor_msgs/Image (rgb8 or mono8) of a core image."""
    f = image_to_ros_fields(image)
    f["header"] = header_fields(stamp_ns, frame_id)
    return f


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if v is None:
        return "n/a"
    return str(v)


def diagnostic_level(diag: Mapping[str, Any], previous: Optional[Mapping[str, Any]] = None) -> tuple:
    """(level, message) of a :meth:`LiveRunner.diagnostics` snapshot, judged against the previous one:
    ERROR when the worker is not running, WARN when something was dropped or failed since then, else OK."""
    if not diag.get("running", True):
        return DIAG_ERROR, "inference worker not running"
    prev = previous or {}
    news = []
    for key in ("drops", "errors", "dropped_events"):
        now = diag.get(key, {}) or {}
        before = prev.get(key, {}) or {}
        for k, v in now.items():
            if (key == "drops" and k == "image_replaced") or (key == "dropped_events" and k != "event_buffer_full"):
                continue  # latest-wins images are by design; queue drops are already counted in messages
            dv = int(v) - int(before.get(k, 0))
            if dv > 0:
                news.append(f"{k} +{dv}" + (" events" if key == "dropped_events" else ""))
    if news:
        return DIAG_WARN, "since last report: " + ", ".join(news)
    return DIAG_OK, "ok"


def flatten(values: Mapping[str, Any], prefix: str = "") -> List[tuple]:
    """Nested dict -> [(\"a.b\", \"text\")] key/value pairs in a stable order."""
    out = []
    for k in values:
        v = values[k]
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(flatten(v, key + "."))
        else:
            out.append((key, _fmt(v)))
    return out


def diagnostic_status_fields(diag: Mapping[str, Any], previous: Optional[Mapping[str, Any]] = None,
                             name: str = "fer_perception: inference", hardware_id: str = "") -> Dict[str, Any]:
    """diagnostic_msgs/DiagnosticStatus of a LiveRunner snapshot (values flattened as ``key: text``)."""
    level, message = diagnostic_level(diag, previous)
    return {
        "level": level,
        "name": name,
        "message": message,
        "hardware_id": hardware_id or str(diag.get("device", "")),
        "values": [{"key": k, "value": v} for k, v in flatten(diag)],
    }


# ---------------------------------------------------------------------------------------------- rclpy side
def fill_message(msg: Any, values: Mapping[str, Any], factories: Optional[Mapping[str, Any]] = None) -> Any:
    """Assign ``values`` (as built above) onto a message object; nested dicts fill nested messages.

    Byte strings become ``array.array('B')`` and lists of floats ``array.array('f')`` for fields that hold
    arrays (fast paths of rclpy's setters). ``factories`` maps a field holding a list of dicts (e.g.
    ``values`` of DiagnosticStatus) to the message class of its items.
    """
    factories = factories or {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            fill_message(getattr(msg, key), value, factories)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            setattr(msg, key, array.array("B", bytes(value)))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            cls = factories[key]
            setattr(msg, key, [fill_message(cls(), item, factories) for item in value])
        elif isinstance(value, list) and value and all(isinstance(v, float) for v in value):
            setattr(msg, key, array.array("f", value))
        else:
            setattr(msg, key, value)
    return msg
