"""Results to message fields, ROS-free: the one mapping the node, replay and the REP-155 output share.

``emotion_fields(result)`` and friends return nested dicts whose keys are the fields of
fer_perception_msgs/Emotion and Demographics, sensor_msgs/Image and their sub-messages. The node copies them
onto rclpy messages (:func:`fer_perception.ros.convert.fill_message`), replay onto rosbags messages
(:meth:`fer_perception.bag.writer.BagWriter.message`), and ``replay``'s ``results.jsonl`` records are made from
the same dicts, so a result reads the same everywhere:

- a box reaching outside the image is clipped at 0 (uint32 fields): the size shrinks by what lies outside;
- a gender other than ``female`` / ``male`` is ``""`` with confidence 0;
- non-finite numbers become 0; probabilities and labels must have the same length.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from fer_perception.errors import FerPerceptionError
from fer_perception.images import image_to_ros_fields
from fer_perception.results import DemographicsResult, EmotionResult, Roi

NS = 1_000_000_000
UINT32_MAX = 2**32 - 1
GENDERS = ("female", "male")


def time_fields(stamp_ns: int) -> Dict[str, int]:
    """builtin_interfaces/Time (or Duration) of a nanosecond count (floor division, nanosec in [0, 1e9))."""
    sec, nsec = divmod(int(stamp_ns), NS)
    return {"sec": int(sec), "nanosec": int(nsec)}


def header_fields(stamp_ns: int, frame_id: str) -> Dict[str, Any]:
    """std_msgs/Header."""
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
    gender = d.gender if d.gender in GENDERS else ""
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


def _record_base(kind: str, t_ns: int, stamp_ns: int, f: Dict[str, Any]) -> Dict[str, Any]:
    roi = f["roi"]
    return {"kind": kind, "t_ns": int(t_ns), "stamp_ns": int(stamp_ns), "frame_id": f["header"]["frame_id"],
            "face_id": f["face_id"], "roi": [roi["x_offset"], roi["y_offset"], roi["width"], roi["height"]],
            "model": f["model"]}


def emotion_record(r: EmotionResult, t_ns: int) -> Dict[str, Any]:
    """One line of replay's ``results.jsonl`` for an Emotion: the message's fields, flattened and rounded."""
    f = emotion_fields(r)
    rec = _record_base("emotion", t_ns, r.stamp_ns, f)
    rec.update({
        "source": f["source"], "label": f["label"], "confidence": round(f["confidence"], 6),
        "labels": f["labels"], "probabilities": [round(p, 6) for p in f["probabilities"]],
        "window_ns": f["window"]["sec"] * NS + f["window"]["nanosec"], "latency_ms": round(f["latency_ms"], 3),
    })
    return rec


def demographics_record(d: DemographicsResult, t_ns: int) -> Dict[str, Any]:
    """One line of replay's ``results.jsonl`` for a Demographics message."""
    f = demographics_fields(d)
    rec = _record_base("demographics", t_ns, d.stamp_ns, f)
    rec.update({
        "age": round(f["age"], 3), "age_std": round(f["age_std"], 3), "gender": f["gender"],
        "gender_confidence": round(f["gender_confidence"], 6), "latency_ms": round(f["latency_ms"], 3),
    })
    return rec
