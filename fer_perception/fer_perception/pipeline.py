"""The perception pipeline, ROS-free: events and images in, Emotion / Demographics results out.

One :class:`Pipeline` object serves the ROS node (through :mod:`fer_perception.runtime.live`) and offline replay.
Offline it is deterministic and processes every event window and every frame; the only non-deterministic
outputs are latencies (measured with the clock from an input's arrival to its result).

Data flow::

    on_events(batch)  -> [denoise] -> per-face event buffers (face boxes: latest tracks mapped to the event
                                      sensor; event-only fallback ROI when no face is tracked)
    poll()            -> every ready window -> Spiking-FER frames (T,2,S,S) -> SNN (batched over windows)
                      -> per-face smoothing -> EmotionResult(source="events")
    on_image(image)   -> detect + track (one tracker per image source) -> expression model and age/gender
                      (batched over faces) -> smoothing -> EmotionResult(source="frames"), DemographicsResult,
                      annotated image

Every model-like part is injectable (constructor keywords), so tests drive the pipeline with small fakes:

- event model: ``labels``, ``name``, ``predict_proba(frames (B,T,2,S,S) float32) -> (B,C)``
- expression model: ``labels``, ``name``, ``predict_proba(image_rgb, boxes (N,4) xywh) -> (N,C)``
- age/gender model: ``name``, ``predict(image_rgb, boxes) -> (age (N,), age_std (N,), p_female (N,))``
- detector: ``detect(image_rgb) -> [Detection(box xywh, score, ...)]``
- tracker factory: ``() -> tracker`` with ``update(detections, stamp_ns) -> [Track(face_id, box, ...)]``
  and an optional ``removed`` list of ids gone at the last update
- mapping per image source: ``map_box(box) -> box`` on the event sensor
- event buffers: ``update_faces({face_id: Roi})``, ``append(batch)``, ``ready_windows(n, stride)`` yielding
  ``(face_id, Roi, EventBatch)``, ``dropped_events``.

Adapters for the real modules (``runtime.snn.SnnRunner``, ``runtime.frame_models``, ``faces.*``,
``events.*``) are built from :class:`PipelineConfig` by :func:`build_components` when a part is not injected.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from fer_perception.errors import ConfigError, FerPerceptionError
from fer_perception.events.batch import EventBatch
from fer_perception.results import SOURCE_EVENTS, SOURCE_FRAMES, DemographicsResult, EmotionResult, Roi
from fer_perception.runtime.smoothing import SMOOTHING_METHODS, ProbabilitySmoother, SmoothingConfig

log = logging.getLogger(__name__)

IMAGE_SOURCES = ("aps", "rgb")
EXPRESSION_KINDS = ("none", "light", "dan")
DEVICES = ("auto", "cpu", "cuda")
SENSOR_FACE_ID = "sensor"


@dataclass
class PipelineConfig:
    """Every setting of the pipeline; the node's ``config/fer_perception.yaml`` uses the same names.

    Event windows (Spiking-FER representation, docs/facts.md#spiking-fer):
        events_per_frame, timesteps: a window holds ``events_per_frame * timesteps`` events of one face.
        window_stride: events between the starts of consecutive windows (0 = a full window, no overlap).
        frame_size, crop_size: representation output size and the face crop size it emulates.
        buffer_events, buffer_ms: bound of each face's event buffer (oldest events dropped and counted).
        event_width, event_height: event sensor size when the messages do not say (0 = from the messages).
        event_fallback_roi: ROI used when no face is tracked: ``"sensor"`` (whole sensor), ``"none"`` (no event
            results without faces) or ``[x, y, w, h]`` in event pixels.
        event_roi_scale: side of the square event crop as a multiple of the face box's larger side.
        event_roi_offset_y: shift of the crop centre, as a fraction of the face box height (positive = down):
            FerDVS crops are centred on the nose, which sits below the centre of a Haar box. The defaults (1.47,
            0.14) reproduce that crop from OpenCV Haar boxes (measured on the synthetic faces: nose 0.14 box
            heights below the box centre, training crop 1.47 box heights); other detectors may need others.
        event_faces_from: image source whose tracks give the event face boxes: ``auto`` (aps if seen, else rgb),
            ``aps``, ``rgb`` or ``none`` (always the fallback ROI).
        denoise, denoise_dt_ms: background-activity filter on the events.
        snn_checkpoint: Spiking-FER checkpoint path, ``"demo"`` (packaged synthetic demo weights) or ``""``
            (no event model).
    Frames:
        frame_source: image source that feeds the frame models (``rgb``, ``aps`` or ``any``).
        expression_model: ``light``, ``dan`` or ``none``; expression_checkpoint: path or ``"demo"``.
        age_gender_checkpoint: path, ``"demo"`` or ``""`` (no age/gender).
        detector: ``haar`` or ``yunet``; detector_model: YuNet ONNX path; detect_min_size: pixels;
            detect_every: run the detector on every n-th image of a source (the tracks are kept in between).
        tracker_iou, tracker_max_missed, tracker_min_hits: face tracker association and life cycle.
        mapping_aps, mapping_rgb: image -> event sensor box mapping per source: ``identity``, ``scale``
            (image size to event sensor size) or 9 floats (row-major 3x3 homography).
    Output:
        smoothing (``none``/``ema``/``mean``), smoothing_alpha, smoothing_window.
        device: ``auto``, ``cpu`` or ``cuda``; threads: torch CPU threads (0 = torch's default);
        annotate: draw the annotated image; event_frame_ms: time span
        of the event frame image.
    """

    events_per_frame: int = 2500
    timesteps: int = 6
    window_stride: int = 0
    frame_size: int = 128
    crop_size: int = 200
    buffer_events: int = 200_000
    buffer_ms: float = 2000.0
    event_width: int = 0
    event_height: int = 0
    event_fallback_roi: Union[str, List[int]] = "sensor"
    event_roi_scale: float = 1.47
    event_roi_offset_y: float = 0.14
    event_faces_from: str = "auto"
    denoise: bool = False
    denoise_dt_ms: float = 10.0
    snn_checkpoint: str = "demo"
    frame_source: str = "any"
    expression_model: str = "light"
    expression_checkpoint: str = "demo"
    age_gender_checkpoint: str = "demo"
    detector: str = "haar"
    detector_model: str = ""
    detect_min_size: int = 40
    detect_every: int = 1
    tracker_iou: float = 0.3
    tracker_max_missed: int = 5
    tracker_min_hits: int = 1
    mapping_aps: Union[str, List[float]] = "identity"
    mapping_rgb: Union[str, List[float]] = "scale"
    smoothing: str = "ema"
    smoothing_alpha: float = 0.5
    smoothing_window: int = 5
    device: str = "auto"
    threads: int = 0
    annotate: bool = True
    event_frame_ms: float = 33.0

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ----------------------------------------------------------------------------------------
    def validate(self) -> None:
        def positive(name: str) -> None:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, not {getattr(self, name)!r}")

        for name in ("events_per_frame", "timesteps", "frame_size", "crop_size", "buffer_events", "buffer_ms",
                     "event_roi_scale", "denoise_dt_ms", "detect_min_size", "detect_every", "smoothing_window",
                     "event_frame_ms"):
            positive(name)
        for name in ("window_stride", "event_width", "event_height", "tracker_max_missed", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, not {getattr(self, name)!r}")
        if self.tracker_min_hits < 1:
            raise ConfigError(f"tracker_min_hits must be >= 1, not {self.tracker_min_hits}")
        if not 0.0 <= self.tracker_iou <= 1.0:
            raise ConfigError(f"tracker_iou must be in [0, 1], not {self.tracker_iou}")
        if self.buffer_events < self.events_per_window:
            raise ConfigError(
                f"buffer_events ({self.buffer_events}) must hold at least one window "
                f"(events_per_frame*timesteps = {self.events_per_window})"
            )
        choices = {
            "event_faces_from": ("auto", "aps", "rgb", "none"),
            "frame_source": IMAGE_SOURCES + ("any",),
            "expression_model": EXPRESSION_KINDS,
            "detector": ("haar", "yunet"),
            "smoothing": SMOOTHING_METHODS,
            "device": DEVICES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {list(allowed)}, not {getattr(self, name)!r}")
        roi = self.event_fallback_roi
        if isinstance(roi, str):
            if roi not in ("sensor", "none"):
                raise ConfigError(f"event_fallback_roi must be 'sensor', 'none' or [x, y, w, h], not {roi!r}")
        elif len(roi) != 4 or roi[2] <= 0 or roi[3] <= 0:
            raise ConfigError(f"event_fallback_roi must be [x, y, w, h] with w, h > 0, not {roi!r}")
        for name in ("mapping_aps", "mapping_rgb"):
            m = getattr(self, name)
            if isinstance(m, str):
                if m not in ("identity", "scale"):
                    raise ConfigError(f"{name} must be 'identity', 'scale' or 9 floats, not {m!r}")
            elif len(m) != 9:
                raise ConfigError(f"{name} must have 9 floats (3x3 homography), got {len(m)}")
        SmoothingConfig(method=self.smoothing, alpha=self.smoothing_alpha, window=self.smoothing_window)

    @property
    def events_per_window(self) -> int:
        return int(self.events_per_frame) * int(self.timesteps)

    @property
    def stride(self) -> int:
        return int(self.window_stride) or self.events_per_window

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Dict[str, Any], strict: bool = True) -> "PipelineConfig":
        """Build from a flat (or nested, joined with ``_``/``.``) dict of values.

        ``strict``: unknown keys raise :class:`ConfigError` naming them; otherwise they are ignored (the node's
        YAML also holds topic and QoS parameters that are not the pipeline's).
        """
        flat = _flatten(values)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(k for k in flat if k not in known)
        if unknown and strict:
            raise ConfigError(f"unknown pipeline parameter(s): {', '.join(unknown)}; known: {', '.join(known)}")
        kwargs = {}
        defaults = cls()
        for key, value in flat.items():
            if key not in known:
                continue
            kwargs[key] = _coerce(key, value, getattr(defaults, key))
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: Union[str, Path], strict: bool = False) -> "PipelineConfig":
        """Read a ROS 2 parameter file (``<node>: ros__parameters: {...}``) or a plain mapping."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping, not {type(data).__name__}")
        return cls.from_dict(_ros_parameters(data), strict=strict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _ros_parameters(data: Dict[str, Any]) -> Dict[str, Any]:
    """The ``ros__parameters`` mapping wherever it sits (``node:``, ``/ns/node:``, ``/**:``), else ``data``."""
    if "ros__parameters" in data and isinstance(data["ros__parameters"], dict):
        return data["ros__parameters"]
    for value in data.values():
        if isinstance(value, dict):
            found = _ros_parameters(value)
            if found is not value:
                return found
    return data


def _flatten(values: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{str(key).replace('.', '_')}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    if value is None and isinstance(default, str):
        return ""  # YAML "key:" / "--set key=" means empty (e.g. no age/gender model)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(value, (list, tuple)):
            return [float(v) if key.startswith("mapping") else int(v) for v in value]
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"parameter {key}: cannot use {value!r} (expected like {default!r})") from exc


# ----------------------------------------------------------------------------------------------------------
@dataclass
class FrameOutputs:
    """What one image produced."""

    emotions: List[EmotionResult] = field(default_factory=list)
    demographics: List[DemographicsResult] = field(default_factory=list)
    annotated: Optional[np.ndarray] = None
    tracks: list = field(default_factory=list)


@dataclass
class PipelineCounters:
    event_messages: int = 0
    events: int = 0
    events_denoised_out: int = 0
    windows: int = 0
    frames: int = 0
    frames_with_faces: int = 0
    frames_unused: int = 0
    faces: int = 0
    malformed: int = 0
    dropped_events: int = 0
    errors: int = 0


def _as_rgb(image: np.ndarray) -> np.ndarray:
    from fer_perception.errors import ImageError

    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ImageError(f"image must be uint8, not {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ImageError(f"image must be (H, W) mono or (H, W, 3) RGB, not shape {img.shape}")


class Pipeline:
    """Events and images in, results out; see the module docstring. Not thread-safe: one owner thread."""

    def __init__(
        self,
        config: Optional[PipelineConfig] = None,
        *,
        event_model=None,
        expression_model=None,
        age_gender_model=None,
        detector=None,
        tracker_factory: Optional[Callable[[], Any]] = None,
        mappings: Optional[Dict[str, Any]] = None,
        event_buffers=None,
        representation: Optional[Callable[[EventBatch, Roi], np.ndarray]] = None,
        denoiser=None,
        annotator: Optional[Callable] = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        load_missing: bool = True,
    ) -> None:
        self.config = cfg = config or PipelineConfig()
        self.clock = clock
        injected = dict(
            event_model=event_model, expression_model=expression_model, age_gender_model=age_gender_model,
            detector=detector, tracker_factory=tracker_factory, mappings=mappings, event_buffers=event_buffers,
            representation=representation, denoiser=denoiser, annotator=annotator,
        )
        parts = build_components(cfg, injected) if load_missing else injected
        self.config = cfg = parts.get("config", cfg)
        self.event_model = parts["event_model"]
        self.expression_model = parts["expression_model"]
        self.age_gender_model = parts["age_gender_model"]
        self.detector = parts["detector"]
        self._tracker_factory = parts["tracker_factory"]
        self.mappings: Dict[str, Any] = parts["mappings"] or {}
        self.buffers = parts["event_buffers"]
        self.representation = parts["representation"]
        self.denoiser = parts["denoiser"]
        self.annotator = parts["annotator"]
        if self.event_model is not None and (self.buffers is None or self.representation is None):
            raise ConfigError("an event model needs event buffers and a representation")
        smooth = SmoothingConfig(method=cfg.smoothing, alpha=cfg.smoothing_alpha, window=cfg.smoothing_window)
        self._smoothers = {SOURCE_EVENTS: ProbabilitySmoother(smooth), SOURCE_FRAMES: ProbabilitySmoother(smooth)}
        self._trackers: Dict[str, Any] = {}
        self._image_counts: Dict[str, int] = {}
        self._tracks_version = 0
        self._sync_key: Optional[tuple] = None
        self._tracks: Dict[str, list] = {}
        self._image_sizes: Dict[str, Tuple[int, int]] = {}
        self._event_faces: Dict[str, Roi] = {}
        self._faces_synced = False
        self._event_size = (int(cfg.event_width), int(cfg.event_height))
        self._event_frame_id = ""
        self._arrivals: List[Tuple[int, int]] = []  # (last event t_ns of a message, arrival clock ns)
        self._recent: List[EventBatch] = []
        self._last_event_results: Dict[str, EmotionResult] = {}
        self.counters = PipelineCounters()
        self.frame_latencies_ms: List[float] = []
        self.event_latencies_ms: List[float] = []

    # -- events --------------------------------------------------------------------------------------------
    @property
    def event_sensor_size(self) -> Tuple[int, int]:
        return self._event_size

    def on_events(self, batch: EventBatch, arrival_ns: Optional[int] = None) -> None:
        """Append one message's events; windows become ready for :meth:`poll`."""
        arrival = self.clock() if arrival_ns is None else int(arrival_ns)
        c = self.counters
        c.event_messages += 1
        c.events += len(batch)
        if batch.width > 0 and batch.height > 0:
            self._event_size = (int(batch.width), int(batch.height))
        if batch.frame_id:
            self._event_frame_id = batch.frame_id
        if len(batch) == 0:
            return
        if self.denoiser is not None:
            kept = self.denoiser(batch)
            c.events_denoised_out += len(batch) - len(kept)
            batch = kept
            if len(batch) == 0:
                return
        self._keep_recent(batch)
        if self.buffers is None:
            return
        self._sync_event_faces()
        self.buffers.append(batch)
        self._arrivals.append((int(batch.t[-1]), arrival))

    def _keep_recent(self, batch: EventBatch) -> None:
        self._recent.append(batch)
        horizon = int(batch.t[-1]) - int(self.config.event_frame_ms * 1e6)
        while len(self._recent) > 1 and int(self._recent[0].t[-1]) < horizon:
            self._recent.pop(0)

    def _feeds_event_faces(self, source: str) -> bool:
        mode = self.config.event_faces_from
        if mode == "auto":
            return source == "aps" or "aps" not in self._image_sizes
        return mode == source

    def _event_face_source(self) -> Optional[str]:
        mode = self.config.event_faces_from
        if mode == "none":
            return None
        if mode == "auto":
            return "aps" if "aps" in self._tracks else ("rgb" if "rgb" in self._tracks else None)
        return mode

    def _sync_event_faces(self) -> None:
        """Face boxes on the event sensor from the latest tracks; none -> the buffers' event-only fallback."""
        cfg = self.config
        w, h = self._event_size
        src = self._event_face_source()
        key = (self._tracks_version, w, h, src)
        if key == self._sync_key:
            return  # nothing changed since the last message
        self._sync_key = key
        faces: Dict[str, Roi] = {}
        if src is not None:
            mapping = self.mappings.get(src)
            for tr in self._tracks.get(src, []):
                box = np.asarray(tr.box, dtype=np.float64)[:4]
                if mapping is not None:
                    box = np.asarray(mapping.map_box(box), dtype=np.float64)[:4]
                if cfg.event_roi_offset_y:
                    box = box.copy()
                    box[1] += cfg.event_roi_offset_y * box[3]
                roi = Roi.from_xywh(box)
                if roi.width <= 0 or roi.height <= 0:
                    continue
                if w > 0 and h > 0 and roi.clipped(w, h).width * roi.clipped(w, h).height == 0:
                    continue  # entirely outside the event sensor
                faces[str(tr.face_id)] = roi
        if faces != self._event_faces or not self._faces_synced:
            gone = set(self._event_faces) - set(faces)
            self._smoothers[SOURCE_EVENTS].remove(gone)
            for fid in gone | ({SENSOR_FACE_ID} if faces else set()):
                self._last_event_results.pop(fid, None)
            if not faces:
                self._smoothers[SOURCE_EVENTS].remove(
                    [f for f in self._smoothers[SOURCE_EVENTS].face_ids if f != SENSOR_FACE_ID])
            else:
                self._smoothers[SOURCE_EVENTS].remove([SENSOR_FACE_ID])
            self._event_faces = faces
            self._faces_synced = True
            self.buffers.update_faces(dict(faces))

    def poll(self, latest_only: bool = False) -> List[EmotionResult]:
        """Run the event model on every ready window (batched) and return their results in window order.

        ``latest_only`` (live use when lagging): only the newest complete window per face; the skipped ones are
        counted by the buffers as dropped (reason ``stale``). Offline replay leaves it off: every window.
        """
        if self.buffers is None or self.event_model is None:
            return []
        cfg = self.config
        if latest_only:
            windows = list(self.buffers.ready_windows(cfg.events_per_window, cfg.stride, latest_only=True))
        else:
            windows = list(self.buffers.ready_windows(cfg.events_per_window, cfg.stride))
        self.counters.dropped_events = int(getattr(self.buffers, "dropped_events", 0))
        if not windows:
            self._trim_arrivals()
            return []
        frames = np.stack([self.representation(win, roi) for _, roi, win in windows]).astype(np.float32)
        probs = np.asarray(self.event_model.predict_proba(frames), dtype=np.float64)
        labels = list(self.event_model.labels)
        if probs.shape != (len(windows), len(labels)):
            raise FerPerceptionError(
                f"event model returned probabilities of shape {probs.shape}, expected {(len(windows), len(labels))}"
            )
        now = self.clock()
        out = []
        smoother = self._smoothers[SOURCE_EVENTS]
        for (face_id, roi, win), p in zip(windows, probs):
            end_t = int(win.t[-1]) if len(win) else 0
            arrival = self._arrival_of(end_t)
            smoothed = smoother.update(face_id, p, end_t, labels)
            latency = max(0.0, (now - arrival) / 1e6) if arrival is not None else 0.0
            res = EmotionResult(
                stamp_ns=end_t, frame_id=win.frame_id or self._event_frame_id, face_id=str(face_id), roi=roi,
                source=SOURCE_EVENTS, model=str(getattr(self.event_model, "name", "spiking_fer")), labels=labels,
                probabilities=smoothed, window_ns=int(win.t[-1] - win.t[0]) if len(win) else 0,
                latency_ms=latency, extras={"raw_probabilities": p.astype(np.float32), "events": len(win)},
            )
            self._last_event_results[str(face_id)] = res
            out.append(res)
            self.event_latencies_ms.append(latency)
        self.counters.windows += len(windows)
        self._trim_arrivals()
        return out

    def _arrival_of(self, t_ns: int) -> Optional[int]:
        """Arrival clock of the first message whose last event is at or after ``t_ns``."""
        if not self._arrivals:
            return None
        keys = [a[0] for a in self._arrivals]
        i = int(np.searchsorted(np.asarray(keys, dtype=np.int64), t_ns, side="left"))
        return self._arrivals[min(i, len(self._arrivals) - 1)][1]

    def _trim_arrivals(self) -> None:
        horizon_ns = int(self.config.buffer_ms * 1e6)
        if len(self._arrivals) > 1:
            last = self._arrivals[-1][0]
            k = 0
            while k < len(self._arrivals) - 1 and self._arrivals[k][0] < last - horizon_ns:
                k += 1
            if k:
                del self._arrivals[:k]

    def event_frame_image(self) -> Optional[np.ndarray]:
        """RGB image of the recent events with the face windows and their latest event results
        (``event_frame`` topic); ``None`` until the sensor size is known."""
        w, h = self._event_size
        if w <= 0 or h <= 0:
            return None
        batch = EventBatch.concatenate(self._recent) if self._recent else EventBatch.empty(w, h)
        faces = [{"box": roi.as_tuple(), "face_id": fid, "emotion": self._last_event_results.get(fid)}
                 for fid, roi in self.event_faces.items()]
        try:
            from fer_perception.annotate import annotate_events
        except ImportError:  # pragma: no cover - annotate.py ships with the package
            from fer_perception.events.visualize import event_frame_image

            return event_frame_image(batch, w, h, [Roi(*f["box"]) for f in faces])
        return annotate_events(batch, faces, width=w, height=h, min_width=0)

    # -- frames --------------------------------------------------------------------------------------------
    def on_image(
        self,
        image_rgb: np.ndarray,
        stamp_ns: int,
        frame_id: str = "",
        source: str = "rgb",
        arrival_ns: Optional[int] = None,
    ) -> FrameOutputs:
        """Detect, track and (when ``source`` feeds the frame models) classify the faces of one image."""
        if source not in IMAGE_SOURCES:
            raise ConfigError(f"image source must be one of {IMAGE_SOURCES}, not {source!r}")
        arrival = self.clock() if arrival_ns is None else int(arrival_ns)
        rgb = _as_rgb(image_rgb)
        self.counters.frames += 1
        self._image_sizes[source] = (rgb.shape[1], rgb.shape[0])
        out = FrameOutputs()
        feeds_models = self.config.frame_source in ("any", source)
        if not feeds_models and not self._feeds_event_faces(source):
            self.counters.frames_unused += 1  # neither the frame models nor the event face boxes need it
            return out
        tracks: list = []
        if self.detector is not None and self._tracker_factory is not None:
            tracker = self._trackers.get(source)
            if tracker is None:
                tracker = self._trackers[source] = self._tracker_factory()
            n = self._image_counts.get(source, 0)
            self._image_counts[source] = n + 1
            if n % int(self.config.detect_every) == 0 or source not in self._tracks:
                detections = self.detector.detect(rgb)
                tracks = list(tracker.update(detections, int(stamp_ns)))
                removed = list(getattr(tracker, "removed", []) or [])
                if removed:
                    self._smoothers[SOURCE_FRAMES].remove(f"{source}:{r}" for r in removed)
            else:
                tracks = list(self._tracks[source])
        self._tracks[source] = tracks
        self._tracks_version += 1
        self._update_scale_mapping(source, rgb)
        out.tracks = tracks
        if tracks:
            self.counters.frames_with_faces += 1
            self.counters.faces += len(tracks)
        seen = [t for t in tracks if int(getattr(t, "missed", 0)) == 0]
        if seen and feeds_models:
            tracks = seen
            boxes = np.stack([np.asarray(t.box, dtype=np.float32)[:4] for t in tracks])
            h, w = rgb.shape[:2]
            rois = [Roi.from_xywh(b).clipped(w, h) for b in boxes]
            if self.expression_model is not None:
                probs = np.asarray(self.expression_model.predict_proba(rgb, boxes), dtype=np.float64)
                labels = list(self.expression_model.labels)
                if probs.shape != (len(tracks), len(labels)):
                    raise FerPerceptionError(
                        f"expression model returned shape {probs.shape}, expected {(len(tracks), len(labels))}"
                    )
                now = self.clock()
                for tr, roi, p in zip(tracks, rois, probs):
                    sm = self._smoothers[SOURCE_FRAMES].update(f"{source}:{tr.face_id}", p, stamp_ns, labels)
                    out.emotions.append(EmotionResult(
                        stamp_ns=int(stamp_ns), frame_id=frame_id, face_id=str(tr.face_id), roi=roi,
                        source=SOURCE_FRAMES, model=str(getattr(self.expression_model, "name", "expression")),
                        labels=labels, probabilities=sm, window_ns=0, latency_ms=max(0.0, (now - arrival) / 1e6),
                        extras={"raw_probabilities": p.astype(np.float32), "image_source": source},
                    ))
            if self.age_gender_model is not None:
                age, age_std, p_female = (np.asarray(a, dtype=np.float64).reshape(-1)
                                          for a in self.age_gender_model.predict(rgb, boxes))
                now = self.clock()
                for i, (tr, roi) in enumerate(zip(tracks, rois)):
                    pf = float(p_female[i])
                    gender, conf = ("female", pf) if pf >= 0.5 else ("male", 1.0 - pf)
                    out.demographics.append(DemographicsResult(
                        stamp_ns=int(stamp_ns), frame_id=frame_id, face_id=str(tr.face_id), roi=roi,
                        model=str(getattr(self.age_gender_model, "name", "age_gender")), age=float(age[i]),
                        age_std=float(age_std[i]), gender=gender, gender_confidence=conf,
                        latency_ms=max(0.0, (now - arrival) / 1e6),
                    ))
            for e in out.emotions:
                self.frame_latencies_ms.append(e.latency_ms)
        if self.config.annotate and self.annotator is not None and feeds_models:
            out.annotated = self.annotator(rgb, tracks, out.emotions, out.demographics)
        return out

    def _update_scale_mapping(self, source: str, rgb: np.ndarray) -> None:
        m = self.mappings.get(source)
        if isinstance(m, _ScaleMapping):
            m.src_size = (rgb.shape[1], rgb.shape[0])
            m.dst_size = self._event_size

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def note_malformed(self, n: int = 1) -> None:
        self.counters.malformed += int(n)

    @property
    def event_faces(self) -> Dict[str, Roi]:
        """The regions events are routed to now (face boxes, or the event-only fallback region)."""
        if self.buffers is not None and hasattr(self.buffers, "face_ids") and hasattr(self.buffers, "roi"):
            return {fid: self.buffers.roi(fid) for fid in self.buffers.face_ids}
        return dict(self._event_faces)

    def counter_dict(self) -> Dict[str, int]:
        return asdict(self.counters)


# ----------------------------------------------------------------------------------------------------------
# Adapters from the real modules to the small interfaces the pipeline uses.
class _ScaleMapping:
    """Image box -> event sensor box by scaling image size to sensor size (sizes learnt as data arrives)."""

    def __init__(self) -> None:
        self.src_size = (0, 0)
        self.dst_size = (0, 0)

    def map_box(self, box):
        (sw, sh), (dw, dh) = self.src_size, self.dst_size
        if sw > 0 and sh > 0 and dw > 0 and dh > 0:
            from fer_perception.faces.mapping import SensorMapping

            return SensorMapping.from_scale(self.src_size, self.dst_size).map_box(box)
        return np.asarray(box, dtype=np.float64).copy()


def make_mapping(spec: Union[str, Sequence[float]]):
    """A box mapping image -> event sensor: ``identity`` (DAVIS: APS frames and events share the sensor),
    ``scale`` (same field of view, sizes taken from the data) or a 9-float row-major homography
    (:class:`~fer_perception.faces.mapping.SensorMapping`; a malformed one is a ConfigError naming it)."""
    from fer_perception.faces.mapping import SensorMapping

    if isinstance(spec, str):
        if spec == "identity":
            return SensorMapping.identity()
        if spec == "scale":
            return _ScaleMapping()
        raise ConfigError(f"unknown mapping {spec!r}: expected 'identity', 'scale' or 9 homography values")
    return SensorMapping.from_homography(spec)


def _resolve_weight(name: str, demo_file: str) -> Path:
    if name == "demo":
        p = Path(__file__).resolve().parent / "weights" / demo_file
        if not p.is_file():
            raise ConfigError(f"the packaged demo weights {p} are missing (reinstall fer_perception)")
        return p
    p = Path(name).expanduser()
    if not p.is_file():
        raise ConfigError(f"checkpoint {p} does not exist")
    return p


class SnnEventModel:
    """Adapter: a Spiking-FER checkpoint run by :class:`fer_perception.runtime.snn.SnnRunner`.

    ``labels`` and ``representation`` (the event-representation parameters the model was trained with) come
    from the checkpoint, so the pipeline builds exactly the input the model expects.
    """

    def __init__(self, checkpoint: str, device: str = "auto") -> None:
        from fer_perception.runtime.snn import SnnRunner

        path = _resolve_weight(checkpoint, "spiking_fer_synthetic_demo.pt")
        self.runner = SnnRunner(str(path), device=device)
        self.meta = meta = self.runner.meta
        self.labels = list(meta.classes)
        rep = dict(getattr(meta, "representation", {}) or {})
        rep.setdefault("timesteps", int(meta.timesteps))
        rep.setdefault("size", int(meta.input_size))
        self.representation = rep
        self.name = "spiking_fer_synthetic_demo" if checkpoint == "demo" else f"spiking_fer:{path.stem}"

    def predict_proba(self, frames: np.ndarray) -> np.ndarray:
        out = self.runner.predict(frames, stats=False)
        return np.asarray(out.probabilities)


class FrameExpressionAdapter:
    """Adapter: :class:`fer_perception.runtime.frame_models.ExpressionModel` (``"demo"`` = packaged weights)."""

    def __init__(self, kind: str, checkpoint: str, device: str = "auto") -> None:
        from fer_perception.runtime.frame_models import ExpressionModel

        path = None if checkpoint in ("", "demo") else str(_resolve_weight(checkpoint, ""))
        self.model = ExpressionModel(kind=kind, checkpoint=path, device=device)
        self.labels = list(self.model.labels)
        self.name = f"{kind}_synthetic_demo" if path is None else f"{kind}:{Path(path).stem}"

    def predict_proba(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(image, boxes))


class AgeGenderAdapter:
    """Adapter: :class:`fer_perception.runtime.frame_models.AgeGenderModel` (``"demo"`` = packaged weights)."""

    def __init__(self, checkpoint: str, device: str = "auto") -> None:
        from fer_perception.runtime.frame_models import AgeGenderModel

        path = None if checkpoint == "demo" else str(_resolve_weight(checkpoint, ""))
        self.model = AgeGenderModel(checkpoint=path, device=device)
        self.name = "age_gender_synthetic_demo" if path is None else f"age_gender:{Path(path).stem}"

    def predict(self, image: np.ndarray, boxes: np.ndarray):
        out = self.model.predict(image, boxes)
        return (out[0], out[1], out[2])


def make_event_buffers(cfg: PipelineConfig):
    """The per-face event buffers for ``cfg`` (fallback region and crop geometry as the config says)."""
    from fer_perception.events.buffer import FaceEventBuffers

    roi = cfg.event_fallback_roi
    return FaceEventBuffers(
        capacity_events=int(cfg.buffer_events), capacity_ns=int(cfg.buffer_ms * 1e6),
        width=int(cfg.event_width), height=int(cfg.event_height),
        event_only_roi=Roi(*[int(v) for v in roi]) if not isinstance(roi, str) else None,
        fallback=roi != "none", square_roi=True, roi_scale=float(cfg.event_roi_scale),
        # queue appended messages and route them together when windows are asked for (identical windows,
        # a fraction of the per-message cost: bench/bench_event_path.py)
        defer_events=10_000,
    )


def build_components(cfg: PipelineConfig, injected: Dict[str, Any]) -> Dict[str, Any]:
    """Fill every part that was not injected from the real modules, as ``cfg`` says."""
    parts = dict(injected)
    if cfg.threads > 0:
        import torch

        torch.set_num_threads(int(cfg.threads))
    if parts["event_model"] is None and cfg.snn_checkpoint:
        parts["event_model"] = SnnEventModel(cfg.snn_checkpoint, cfg.device)
    if parts["event_model"] is not None:
        if parts["representation"] is None:
            from fer_perception.events.representation import SpikingFerConfig, spiking_fer_frames

            rep = {"events_per_frame": cfg.events_per_frame, "timesteps": cfg.timesteps, "size": cfg.frame_size,
                   "crop_size": cfg.crop_size}
            from_model = dict(getattr(parts["event_model"], "representation", {}) or {})
            known = {f.name for f in fields(SpikingFerConfig)}
            rep.update({k: v for k, v in from_model.items() if k in known and k not in ("square_roi", "roi_scale")})
            rep_cfg = SpikingFerConfig(**rep, square_roi=True, roi_scale=float(cfg.event_roi_scale))
            if (rep_cfg.events_per_frame, rep_cfg.timesteps, rep_cfg.size, rep_cfg.crop_size) != (
                    cfg.events_per_frame, cfg.timesteps, cfg.frame_size, cfg.crop_size):
                log.info("event representation from the checkpoint: %s", rep)
                parts["config_updates"] = {"events_per_frame": rep_cfg.events_per_frame,
                                           "timesteps": rep_cfg.timesteps, "frame_size": rep_cfg.size,
                                           "crop_size": rep_cfg.crop_size}
            parts["representation"] = lambda batch, roi: spiking_fer_frames(batch, roi, rep_cfg)
    if parts.get("config_updates"):
        import dataclasses

        cfg = dataclasses.replace(cfg, **parts["config_updates"])
        parts["config"] = cfg
    if parts["event_model"] is not None and parts["event_buffers"] is None:
        parts["event_buffers"] = make_event_buffers(cfg)
    if parts["denoiser"] is None and cfg.denoise:
        parts["denoiser"] = _Denoiser(cfg)
    needs_faces = cfg.expression_model != "none" or bool(cfg.age_gender_checkpoint) or \
        cfg.event_faces_from != "none"
    if needs_faces and parts["detector"] is None:
        from fer_perception.faces.detect import make_detector

        kw = {"model_path": cfg.detector_model} if cfg.detector == "yunet" else {"min_size": int(cfg.detect_min_size)}
        parts["detector"] = make_detector(cfg.detector, **kw)
    if needs_faces and parts["tracker_factory"] is None:
        from fer_perception.faces.track import FaceTracker

        parts["tracker_factory"] = lambda: FaceTracker(
            iou_threshold=cfg.tracker_iou, max_missed=cfg.tracker_max_missed, min_hits=cfg.tracker_min_hits
        )
    if parts["expression_model"] is None and cfg.expression_model != "none":
        parts["expression_model"] = FrameExpressionAdapter(cfg.expression_model, cfg.expression_checkpoint,
                                                           cfg.device)
    if parts["age_gender_model"] is None and cfg.age_gender_checkpoint:
        parts["age_gender_model"] = AgeGenderAdapter(cfg.age_gender_checkpoint, cfg.device)
    if parts["mappings"] is None:
        parts["mappings"] = {"aps": make_mapping(cfg.mapping_aps), "rgb": make_mapping(cfg.mapping_rgb)}
    if parts["annotator"] is None and cfg.annotate:
        try:
            import fer_perception.annotate  # noqa: F401

            parts["annotator"] = _default_annotator
        except ImportError:  # pragma: no cover - annotate.py ships with the package
            log.warning("fer_perception.annotate is not available: no annotated images")
    return parts


class _Denoiser:
    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.filter = None

    def __call__(self, batch: EventBatch) -> EventBatch:
        if self.filter is None:
            if batch.width <= 0 or batch.height <= 0:
                return batch
            from fer_perception.events.denoise import BackgroundActivityFilter

            self.filter = BackgroundActivityFilter(batch.width, batch.height, dt_ns=int(self.cfg.denoise_dt_ms * 1e6))
        out = self.filter(batch) if callable(self.filter) else self.filter.filter(batch)
        return out


def _default_annotator(rgb, tracks, emotions, demographics):
    from fer_perception.annotate import annotate_frame

    by_face_e = {e.face_id: e for e in emotions}
    by_face_d = {d.face_id: d for d in demographics}
    faces = [{"box": np.asarray(tr.box, dtype=np.float32), "face_id": str(tr.face_id),
              "emotion": by_face_e.get(str(tr.face_id)), "demographics": by_face_d.get(str(tr.face_id))}
             for tr in tracks]
    return annotate_frame(rgb, faces)
