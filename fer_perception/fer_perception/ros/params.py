"""The node's parameters, ROS-free: one table that the node, the YAML, the launch files and the docs all use.

Every parameter has a name, a type, a default, a description, a range or a list of choices, and says whether
it is fixed at start-up (read-only for ROS) or changeable at run time (validated by the node's
``add_on_set_parameters_callback``). The pipeline's parameters are exactly the fields of
:class:`fer_perception.pipeline.PipelineConfig` (defaults taken from it, so they cannot drift); the others
configure topics, QoS, the live scheduler and outputs.

- :func:`validate` checks one value (raises :class:`ConfigError` naming the parameter);
  :func:`check_runtime_changes` answers the set-parameters callback.
- :func:`to_pipeline_config`, :func:`to_live_config` and :func:`node_settings` map values onto the objects.
- :func:`parse_launch_value` turns a launch argument string into a typed value;
  :func:`launch_arguments` lists the launch arguments.
- :func:`yaml_text` renders ``config/fer_perception.yaml``; :func:`markdown_table` the docs' reference table.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from fer_perception.errors import ConfigError
from fer_perception.events.decoders import SUPPORTED_MESSAGE_TYPES
from fer_perception.pipeline import DEVICES, EXPRESSION_KINDS, IMAGE_SOURCES, PipelineConfig
from fer_perception.runtime.live import LiveConfig
from fer_perception.runtime.smoothing import SMOOTHING_METHODS

#: Parameter types: ROS ``bool``, ``integer``, ``double``, ``string``; ``box`` and ``mapping`` are
#: dynamically typed (a keyword string, or a list of numbers / a comma-separated string).
TYPES = ("bool", "int", "float", "str", "box", "mapping")
GROUPS = ("topics", "qos", "live", "output", "events", "frames", "faces", "smoothing", "runtime")
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Param:
    """One node parameter.

    Attributes:
        name, type, default, description: as declared (type one of :data:`TYPES`).
        group: section in the YAML and the docs.
        min, max: inclusive range of numbers (ROS IntegerRange / FloatingPointRange).
        choices: allowed string values.
        dynamic: changeable while the node runs; otherwise read-only after start-up.
        pipeline: a :class:`PipelineConfig` field.
        launch: a launch argument (user-facing).
    """

    name: str
    type: str
    default: Any
    description: str
    group: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: Tuple[str, ...] = ()
    dynamic: bool = False
    pipeline: bool = False
    launch: bool = True

    @property
    def read_only(self) -> bool:
        return not self.dynamic

    @property
    def ros_type(self) -> str:
        """ROS parameter type name (``box``/``mapping`` are declared with dynamic typing)."""
        return {"bool": "bool", "int": "integer", "float": "double", "str": "string"}.get(self.type, "dynamic")

    def constraint_text(self) -> str:
        if self.choices:
            return "one of: " + ", ".join(repr(c) if c == "" else c for c in self.choices)
        if self.min is not None or self.max is not None:
            lo = "-inf" if self.min is None else _num(self.min, self.type)
            hi = "inf" if self.max is None else _num(self.max, self.type)
            return f"[{lo}, {hi}]"
        if self.type == "box":
            return "'sensor', 'none' or [x, y, w, h]"
        if self.type == "mapping":
            return "'identity', 'scale' or 9 floats (row-major 3x3 homography)"
        return ""


def _num(v: float, kind: str) -> str:
    return str(int(v)) if kind == "int" else repr(float(v))


_P = PipelineConfig()


def _pp(name: str, type_: str, description: str, group: str, **kw) -> Param:
    """A pipeline parameter: default from PipelineConfig."""
    return Param(name, type_, getattr(_P, name), description, group, pipeline=True, **kw)


#: Every parameter of the node, in YAML order.
PARAMETERS: Tuple[Param, ...] = (
    # -- topics --------------------------------------------------------------------------------------------
    Param("event_topic", "str", "/dvs/events",
          "Event topic ('' = no event input); the sample recording's and rpg_dvs_ros' name.", "topics"),
    Param("event_msg_type", "str", SUPPORTED_MESSAGE_TYPES[0], "Message type of the event topic.", "topics",
          choices=tuple(SUPPORTED_MESSAGE_TYPES)),
    Param("aps_topic", "str", "/dvs/image_raw",
          "Image topic of the event sensor (APS frames; '' = none). Faces found here give the event windows.",
          "topics"),
    Param("aps_transport", "str", "raw", "aps_topic carries sensor_msgs/Image (raw) or CompressedImage.",
          "topics", choices=("raw", "compressed")),
    Param("rgb_topic", "str", "", "Colour camera topic ('' = none).", "topics"),
    Param("rgb_transport", "str", "raw", "rgb_topic carries sensor_msgs/Image (raw) or CompressedImage.",
          "topics", choices=("raw", "compressed")),
    # -- qos -----------------------------------------------------------------------------------------------
    Param("event_qos_depth", "int", 1000,
          "KEEP_LAST depth of the event subscription (1 kHz messages need hundreds).", "qos", min=1, max=100000),
    Param("event_qos_reliability", "str", "best_effort",
          "Event subscription reliability; best_effort also receives from reliable publishers, reliable never "
          "connects to best-effort drivers (libcaer_driver, metavision_driver).", "qos",
          choices=("best_effort", "reliable")),
    Param("image_qos_reliability", "str", "best_effort",
          "Image subscriptions: best_effort (sensor data profile) or reliable.", "qos",
          choices=("best_effort", "reliable")),
    # -- live scheduler ------------------------------------------------------------------------------------
    Param("event_queue_events", "int", LiveConfig.max_queued_events,
          "Bound of the queue between event callbacks and the worker, in events (oldest dropped).", "live",
          min=1, max=INT_MAX),
    Param("event_queue_messages", "int", LiveConfig.max_queued_messages,
          "Bound of the same queue in messages.", "live", min=1, max=INT_MAX),
    Param("error_log_interval", "float", LiveConfig.error_log_interval_s,
          "Seconds between two log lines about the same kind of error.", "live", min=0.1, max=3600.0),
    # -- outputs -------------------------------------------------------------------------------------------
    Param("min_confidence", "float", LiveConfig.min_confidence,
          "Results below this confidence are not published.", "output", min=0.0, max=1.0, dynamic=True),
    Param("event_frame_hz", "float", LiveConfig.event_frame_hz,
          "Rate of event_frame images (computed only while subscribed; 0 = never).", "output", min=0.0,
          max=200.0, dynamic=True),
    Param("diagnostics_period", "float", 1.0, "Seconds between /diagnostics messages.", "output", min=0.1,
          max=60.0),
    Param("rep155", "bool", False,
          "Also publish the ROS4HRI (REP-155) topics /humans/faces/... (needs hri_msgs).", "output"),
    # -- pipeline: events ----------------------------------------------------------------------------------
    _pp("snn_checkpoint", "str", "Spiking-FER checkpoint: a path, 'demo' (synthetic demo weights) or '' (no "
        "event model).", "events"),
    _pp("events_per_frame", "int", "Events per representation frame (Spiking-FER: 2500).", "events", min=1,
        max=INT_MAX),
    _pp("timesteps", "int", "Frames per window (Spiking-FER: 6).", "events", min=1, max=64),
    _pp("window_stride", "int", "Events between window starts (0 = windows do not overlap).", "events", min=0,
        max=INT_MAX),
    _pp("frame_size", "int", "Side of the representation frames (Spiking-FER: 128).", "events", min=8,
        max=1024),
    _pp("crop_size", "int", "Face crop side the representation emulates (FerDVS: 200).", "events", min=8,
        max=4096),
    _pp("buffer_events", "int", "Per-face event buffer bound, in events (oldest dropped).", "events", min=1,
        max=INT_MAX),
    _pp("buffer_ms", "float", "Per-face event buffer bound, in milliseconds.", "events", min=1.0, max=600000.0),
    _pp("event_width", "int", "Event sensor width when the messages do not say (0 = from the messages).",
        "events", min=0, max=65535),
    _pp("event_height", "int", "Event sensor height when the messages do not say (0 = from the messages).",
        "events", min=0, max=65535),
    _pp("event_fallback_roi", "box", "Event region when no face is tracked.", "events"),
    _pp("event_roi_scale", "float", "Event crop side as a multiple of the face box's larger side.", "events",
        min=0.1, max=10.0),
    _pp("event_roi_offset_y", "float", "Event crop centre shift, fraction of the face box height (down > 0).",
        "events", min=-1.0, max=1.0),
    _pp("event_faces_from", "str", "Image source whose faces give the event windows.", "events",
        choices=("auto", "aps", "rgb", "none")),
    _pp("denoise", "bool", "Background-activity filter on the events.", "events"),
    _pp("denoise_dt_ms", "float", "Background-activity filter support time, milliseconds.", "events", min=0.01,
        max=10000.0),
    _pp("event_frame_ms", "float", "Time span of the event_frame image, milliseconds.", "events", min=1.0,
        max=10000.0, dynamic=True),
    # -- pipeline: frames ----------------------------------------------------------------------------------
    _pp("frame_source", "str", "Image source feeding the frame models.", "frames",
        choices=IMAGE_SOURCES + ("any",)),
    _pp("expression_model", "str", "Frame expression model.", "frames", choices=EXPRESSION_KINDS),
    _pp("expression_checkpoint", "str", "Expression checkpoint path or 'demo'.", "frames"),
    _pp("age_gender_checkpoint", "str", "Age/gender checkpoint path, 'demo' or '' (none).", "frames"),
    _pp("device", "str", "Where the models run.", "frames", choices=DEVICES),
    _pp("threads", "int", "torch CPU threads (0 = torch's default).", "frames", min=0, max=256),
    _pp("annotate", "bool", "Draw the annotated_image (only while subscribed).", "frames", dynamic=True),
    # -- pipeline: faces -----------------------------------------------------------------------------------
    _pp("detector", "str", "Face detector.", "faces", choices=("haar", "yunet")),
    _pp("detector_model", "str", "YuNet ONNX file (detector yunet).", "faces"),
    _pp("detect_min_size", "int", "Smallest face, pixels.", "faces", min=1, max=4096),
    _pp("detect_every", "int", "Run the detector on every n-th image of a source.", "faces", min=1, max=1000,
        dynamic=True),
    _pp("tracker_iou", "float", "Tracker association IoU threshold.", "faces", min=0.0, max=1.0, dynamic=True),
    _pp("tracker_max_missed", "int", "Images a face may go undetected before its track ends.", "faces", min=0,
        max=10000),
    _pp("tracker_min_hits", "int", "Detections before a new face gets an id.", "faces", min=1, max=1000),
    _pp("mapping_aps", "mapping", "APS image -> event sensor box mapping.", "faces"),
    _pp("mapping_rgb", "mapping", "RGB image -> event sensor box mapping.", "faces"),
    # -- pipeline: smoothing -------------------------------------------------------------------------------
    _pp("smoothing", "str", "Temporal smoothing of probabilities per face.", "smoothing",
        choices=SMOOTHING_METHODS),
    _pp("smoothing_alpha", "float", "EMA weight of the newest estimate.", "smoothing", min=0.01, max=1.0,
        dynamic=True),
    _pp("smoothing_window", "int", "Estimates averaged by smoothing 'mean'.", "smoothing", min=1, max=1000),
)

_BY_NAME: Dict[str, Param] = {p.name: p for p in PARAMETERS}
#: Names of the parameters changeable at run time.
DYNAMIC: Tuple[str, ...] = tuple(p.name for p in PARAMETERS if p.dynamic)
#: Run-time parameters that the live runner applies (the node's own ones are handled by the node).
_LIVE_SETTING_NAMES = {"min_confidence": "min_confidence", "event_frame_hz": "event_frame_hz",
                       "smoothing_alpha": "smoothing_alpha", "detect_every": "detect_every",
                       "tracker_iou": "tracker_iou", "event_frame_ms": "event_frame_ms", "annotate": "annotate"}


def get(name: str) -> Param:
    """The parameter called ``name`` (ConfigError listing the known names otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown parameter {name!r}; known: {', '.join(_BY_NAME)}") from None


def defaults() -> Dict[str, Any]:
    """Every parameter's default value."""
    return {p.name: _copy(p.default) for p in PARAMETERS}


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


# ------------------------------------------------------------------------------------------------ validation
def validate(name: str, value: Any) -> Any:
    """Check ``value`` for parameter ``name``; returns it normalised (int for int, list for boxes...).

    Raises :class:`ConfigError` whose message names the parameter and what is allowed.
    """
    p = get(name)
    if p.type == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"parameter {name} must be a bool, not {value!r}")
    if p.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"parameter {name} must be an integer, not {value!r}")
        _check_range(p, value)
        return int(value)
    if p.type == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"parameter {name} must be a number, not {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"parameter {name} must be finite, not {value!r}")
        _check_range(p, value)
        return value
    if p.type == "str":
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ConfigError(f"parameter {name} must be a string, not {value!r}")
        if p.choices and value not in p.choices:
            raise ConfigError(f"parameter {name} must be {p.constraint_text()}, not {value!r}")
        return value
    if p.type == "box":
        return _parse_box(name, value)
    return _parse_mapping(name, value)


def _check_range(p: Param, value: float) -> None:
    if (p.min is not None and value < p.min) or (p.max is not None and value > p.max):
        raise ConfigError(f"parameter {p.name} must be within {p.constraint_text()}, not {value!r}")


def _numbers(name: str, value: Any) -> Optional[List[float]]:
    """Numbers of a comma-separated string or any sequence (list, tuple, array.array from rclpy); None when
    ``value`` is neither."""
    if isinstance(value, (bool, int, float)) or value is None:
        return None
    try:
        items = value.split(",") if isinstance(value, str) else list(value)
        return [float(v) for v in items]
    except (TypeError, ValueError):
        return None


def _parse_box(name: str, value: Any) -> Any:
    if isinstance(value, str) and value.strip() in ("sensor", "none"):
        return value.strip()
    nums = _numbers(name, value)
    if nums is not None:
        if len(nums) == 4 and nums[2] > 0 and nums[3] > 0 and all(v.is_integer() for v in nums):
            return [int(v) for v in nums]
    raise ConfigError(f"parameter {name} must be 'sensor', 'none' or [x, y, w, h] integers with w, h > 0, "
                      f"not {value!r}")


def _parse_mapping(name: str, value: Any) -> Any:
    if isinstance(value, str) and value.strip() in ("identity", "scale"):
        return value.strip()
    nums = _numbers(name, value)
    if nums is not None:
        if len(nums) == 9 and all(math.isfinite(v) for v in nums):
            return nums
    raise ConfigError(f"parameter {name} must be 'identity', 'scale' or 9 floats (row-major 3x3 homography), "
                      f"not {value!r}")


def validate_all(values: Dict[str, Any]) -> Dict[str, Any]:
    """Defaults overlaid with ``values``, each validated (unknown names raise ConfigError)."""
    out = defaults()
    for name, value in values.items():
        out[name] = validate(name, value)
    return out


def check_runtime_changes(changes: Dict[str, Any]) -> Tuple[bool, str]:
    """The set-parameters callback's answer for ``{name: new value}``: (successful, reason)."""
    for name, value in changes.items():
        if name not in _BY_NAME:
            continue  # not ours (e.g. use_sim_time): ROS handles it
        p = _BY_NAME[name]
        if not p.dynamic:
            return False, f"parameter {name} can only be set at start-up (changeable now: {', '.join(DYNAMIC)})"
        try:
            validate(name, value)
        except ConfigError as exc:
            return False, str(exc)
    return True, ""


def live_settings(changes: Dict[str, Any]) -> Dict[str, Any]:
    """The subset of accepted run-time changes the live runner applies (:meth:`LiveRunner.update_settings`)."""
    return {_LIVE_SETTING_NAMES[k]: validate(k, v) for k, v in changes.items() if k in _LIVE_SETTING_NAMES}


# ------------------------------------------------------------------------------------------------ mapping
def to_pipeline_config(values: Dict[str, Any]) -> PipelineConfig:
    """The :class:`PipelineConfig` for node parameter ``values`` (missing ones take their defaults)."""
    v = validate_all({k: val for k, val in values.items() if k in _BY_NAME})
    kwargs = {f.name: v[f.name] for f in fields(PipelineConfig) if f.name in v}
    return PipelineConfig(**kwargs)


def to_live_config(values: Dict[str, Any]) -> LiveConfig:
    v = validate_all({k: val for k, val in values.items() if k in _BY_NAME})
    return LiveConfig(max_queued_events=v["event_queue_events"], max_queued_messages=v["event_queue_messages"],
                      event_frame_hz=v["event_frame_hz"], min_confidence=v["min_confidence"],
                      error_log_interval_s=v["error_log_interval"])


@dataclass(frozen=True)
class NodeSettings:
    """The node's own (non-pipeline) settings."""

    event_topic: str
    event_msg_type: str
    aps_topic: str
    aps_transport: str
    rgb_topic: str
    rgb_transport: str
    event_qos_depth: int
    event_qos_reliability: str
    image_qos_reliability: str
    diagnostics_period: float
    rep155: bool

    def image_inputs(self) -> List[Tuple[str, str, bool]]:
        """``(source, topic, compressed)`` for every configured image topic."""
        out = []
        for source, topic, transport in (("aps", self.aps_topic, self.aps_transport),
                                         ("rgb", self.rgb_topic, self.rgb_transport)):
            if topic:
                out.append((source, topic, transport == "compressed"))
        return out


def node_settings(values: Dict[str, Any]) -> NodeSettings:
    v = validate_all({k: val for k, val in values.items() if k in _BY_NAME})
    return NodeSettings(**{f.name: v[f.name] for f in dataclasses.fields(NodeSettings)})


# ------------------------------------------------------------------------------------------------ launch
def parse_launch_value(name: str, text: str) -> Any:
    """A launch argument's string as the parameter's typed value (ConfigError naming it when invalid)."""
    p = get(name)
    s = str(text).strip()
    if p.type == "bool":
        low = s.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"launch argument {name} must be true or false, not {text!r}")
    if p.type == "int":
        try:
            return validate(name, int(s))
        except ValueError:
            raise ConfigError(f"launch argument {name} must be an integer, not {text!r}") from None
    if p.type == "float":
        try:
            return validate(name, float(s))
        except ValueError:
            raise ConfigError(f"launch argument {name} must be a number, not {text!r}") from None
    if p.type in ("box", "mapping"):
        return validate(name, s.strip("[]"))
    return validate(name, str(text))


def format_value(value: Any) -> str:
    """A value as a launch argument default / command-line string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def launch_arguments() -> List[Tuple[str, str, str]]:
    """``(name, default string, description)`` of every user-facing parameter (one launch argument each)."""
    out = []
    for p in PARAMETERS:
        if p.launch:
            extra = p.constraint_text()
            desc = p.description + (f" ({extra})" if extra else "")
            out.append((p.name, format_value(p.default), desc))
    return out


def launch_overrides(given: Dict[str, str]) -> Dict[str, Any]:
    """Typed parameter overrides from launch argument strings: only those that differ from the default, so
    the parameter file's values stay in force unless the user passed a different value."""
    out: Dict[str, Any] = {}
    for name, text in given.items():
        if name not in _BY_NAME:
            continue
        value = parse_launch_value(name, text)
        if value != _BY_NAME[name].default:
            out[name] = value
    return out


# ------------------------------------------------------------------------------------------------ rendering
_GROUP_TITLES = {
    "topics": "Input topics", "qos": "Quality of service", "live": "Live scheduling (queue bounds, logging)",
    "output": "Outputs", "events": "Event path (Spiking-FER windows)", "frames": "Frame models",
    "faces": "Face detection, tracking and sensor mapping", "smoothing": "Temporal smoothing",
}


def _yaml_value(p: Param, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(p, v) for v in value) + "]"
    if p.type == "float" or isinstance(value, float):
        return repr(float(value))
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def yaml_text(values: Optional[Dict[str, Any]] = None, node_key: str = "/**/fer_perception") -> str:
    """The ROS 2 parameter file (``node_key: ros__parameters: ...``) with comments, defaults unless ``values``."""
    v = validate_all(values or {})
    lines = [
        "# Parameters of the fer_perception node (generated from fer_perception/ros/params.py; keep in sync with",
        "# `python -m fer_perception.ros.params --yaml`). Also read by `fer-perception replay --config`.",
        "# [dynamic] = changeable at run time with `ros2 param set`; all others are read at start-up.",
        f"{node_key}:",
        "  ros__parameters:",
    ]
    for group in GROUPS:
        members = [p for p in PARAMETERS if p.group == group]
        if not members:
            continue
        lines.append(f"    # -- {_GROUP_TITLES.get(group, group)}")
        for p in members:
            note = p.constraint_text()
            comment = p.description + (f" {note}." if note else "") + (" [dynamic]" if p.dynamic else "")
            lines.append(f"    # {comment}")
            lines.append(f"    {p.name}: {_yaml_value(p, v[p.name])}")
    return "\n".join(lines) + "\n"


def markdown_table(groups: Iterable[str] = GROUPS) -> str:
    """The parameter reference as a Markdown table (docs/ros.md)."""
    rows = ["| parameter | type | default | allowed | changeable | description |",
            "|---|---|---|---|---|---|"]
    for group in groups:
        for p in (q for q in PARAMETERS if q.group == group):
            default = format_value(p.default)
            rows.append(f"| `{p.name}` | {p.ros_type} | `{default}` | {p.constraint_text().replace('|', '/')} | "
                        f"{'run time' if p.dynamic else 'start-up'} | {p.description} |")
    return "\n".join(rows) + "\n"


def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Print the node's parameter file or reference table.")
    ap.add_argument("--yaml", action="store_true", help="print config/fer_perception.yaml")
    ap.add_argument("--markdown", action="store_true", help="print the Markdown reference table")
    args = ap.parse_args(argv)
    print(markdown_table() if args.markdown else yaml_text(), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
