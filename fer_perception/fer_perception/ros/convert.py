"""Field dicts onto rclpy messages, and the node's diagnostics as diagnostic_msgs fields (ROS-free, tested).

The result fields come from :mod:`fer_perception.messages` (shared with replay). :func:`fill_message` copies a
field dict onto a message instance, converting byte strings and float lists to the ``array.array`` forms rclpy
takes without a per-element check.
"""

from __future__ import annotations

import array
from typing import Any, Dict, List, Mapping, Optional

#: diagnostic_msgs/DiagnosticStatus levels.
DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3


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
    arrays (fast paths of rclpy's setters); an int for a ``byte`` field (one whose current value is ``bytes``)
    becomes a 1-byte ``bytes``. ``factories`` maps a field holding a list of dicts (e.g.
    ``values`` of DiagnosticStatus) to the message class of its items.
    """
    factories = factories or {}
    for key, value in values.items():
        if isinstance(getattr(msg, key, None), bytes) and isinstance(value, int):
            # a `byte` field (DiagnosticStatus.level): rclpy takes a 1-byte bytes object; an int is converted
            # from arbitrary memory unless ROS_PYTHON_CHECK_FIELDS=1, which raises instead
            setattr(msg, key, bytes([value]))
        elif isinstance(value, Mapping):
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
