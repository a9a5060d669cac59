"""Live scheduling of the pipeline, ROS-free: cheap input callbacks, one inference worker, counted drops.

The ROS node (:mod:`fer_perception.ros.node`) hands every raw event message and every image to a
:class:`LiveRunner`; the benchmark and the tests do the same without ROS. The rules:

- Event callbacks only decode (one decoder per stream, :func:`fer_perception.events.decoders.make_decoder`)
  and append to a bounded queue. When the queue is full the OLDEST messages are dropped and counted.
- Images are latest-wins per source (``aps``, ``rgb``): an image that arrives before the worker took the
  previous one of the same source replaces it, and the replaced one counts as dropped. Images may be handed
  over still encoded, with a ``decode`` function: the worker decodes only the ones it processes.
- One worker thread owns the pipeline (and so the models and the GPU): it feeds queued events to
  ``pipeline.on_events``, runs ``pipeline.poll()`` and ``pipeline.on_image`` and delivers the results through
  the ``on_output`` callback.
- Nothing kills the worker: a model exception, a CUDA out-of-memory error or a malformed message is counted by
  kind, logged once per kind (then at most once per ``error_log_interval_s`` with the number suppressed),
  and the worker goes on.
- :meth:`LiveRunner.diagnostics` returns a snapshot: input rates, windows and frames processed, drops by
  reason, malformed count, latency percentiles, device.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from fer_perception.errors import ConfigError, FerPerceptionError
from fer_perception.events.batch import EventBatch
from fer_perception.results import SOURCE_EVENTS, SOURCE_FRAMES, DemographicsResult, EmotionResult

log = logging.getLogger(__name__)

#: Drop reasons reported by :meth:`LiveRunner.diagnostics` (always present, zero when nothing was dropped).
DROP_REASONS = ("event_queue_full", "event_buffer_full", "image_replaced", "stopped")
#: Error kinds counted (and rate-limit logged) by the worker and the callbacks.
ERROR_KINDS = ("malformed_event", "malformed_image", "model_error", "cuda_oom", "output_error")
#: Pipeline settings that :meth:`LiveRunner.update_settings` may change while running.
RUNTIME_SETTINGS = ("smoothing_alpha", "detect_every", "tracker_iou", "event_frame_ms", "event_frame_hz",
                    "min_confidence", "annotate")


@dataclass
class LiveConfig:
    """How the live runner queues and schedules.

    Attributes:
        max_queued_events: bound of the event queue in events (oldest messages dropped beyond it).
        max_queued_messages: bound of the event queue in messages.
        event_frame_hz: rate of event-frame images (0 = none); only computed while ``wants("event_frame")``.
        min_confidence: results below this confidence are not delivered (counted as ``below_confidence``).
        error_log_interval_s: after the first log of an error kind, at most one log per interval.
        latency_samples: number of recent latencies kept per source for the percentiles.
        rate_window_s: input rates are averaged over this trailing window.
        idle_wait_s: the worker's longest sleep when there is nothing to do.
        strict_order, check_sensor_bounds: passed to EventArray decoders.
    """

    max_queued_events: int = 2_000_000
    max_queued_messages: int = 4000
    event_frame_hz: float = 10.0
    min_confidence: float = 0.0
    error_log_interval_s: float = 10.0
    latency_samples: int = 512
    rate_window_s: float = 2.0
    idle_wait_s: float = 0.05
    strict_order: bool = False
    check_sensor_bounds: bool = True

    def __post_init__(self) -> None:
        for name in ("max_queued_events", "max_queued_messages", "latency_samples"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, not {getattr(self, name)!r}")
        for name in ("error_log_interval_s", "rate_window_s", "idle_wait_s"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be > 0, not {getattr(self, name)!r}")
        if float(self.event_frame_hz) < 0:
            raise ConfigError(f"event_frame_hz must be >= 0, not {self.event_frame_hz!r}")
        if not 0.0 <= float(self.min_confidence) <= 1.0:
            raise ConfigError(f"min_confidence must be in [0, 1], not {self.min_confidence!r}")


@dataclass
class LiveOutput:
    """What the worker delivers through ``on_output``: results of one poll, one image, or an event frame.

    kind: ``"events"`` (event-window results), ``"frame"`` (one processed image) or ``"event_frame"``.
    image: the RGB image the frame results refer to (kind ``"frame"``), for crops (REP-155).
    annotated: annotated RGB image (frames) or the event-frame image (kind ``"event_frame"``), else None.
    tracks: the image's face tracks (kind ``"frame"``).
    """

    kind: str
    stamp_ns: int = 0
    frame_id: str = ""
    source: str = ""
    emotions: List[EmotionResult] = field(default_factory=list)
    demographics: List[DemographicsResult] = field(default_factory=list)
    annotated: Optional[np.ndarray] = None
    image: Optional[np.ndarray] = None
    tracks: list = field(default_factory=list)


class RateMeter:
    """Counts in time buckets; ``rate()`` is the count per second over the trailing window. Thread-safe enough
    for one writer (a callback) and one reader (diagnostics): both hold the runner's lock."""

    def __init__(self, window_s: float = 2.0, buckets: int = 8) -> None:
        self.bucket_ns = max(1, int(window_s * 1e9 / buckets))
        self.n_buckets = int(buckets)
        self._buckets: Deque[List[int]] = deque()  # [bucket index, count]
        self.total = 0

    def add(self, n: int, now_ns: int) -> None:
        self.total += n
        b = now_ns // self.bucket_ns
        if self._buckets and self._buckets[-1][0] == b:
            self._buckets[-1][1] += n
            return
        self._buckets.append([b, n])
        while len(self._buckets) > self.n_buckets + 1:
            self._buckets.popleft()

    def rate(self, now_ns: int) -> float:
        b_now = now_ns // self.bucket_ns
        first = b_now - self.n_buckets + 1
        count = sum(c for b, c in self._buckets if first <= b <= b_now)
        span_s = (now_ns - first * self.bucket_ns) / 1e9
        return count / span_s if span_s > 0 else 0.0


class RateLimitedLog:
    """Logs the first occurrence of each kind, then at most once per ``interval_s`` with the suppressed count."""

    def __init__(self, logger: Callable[[str], Any], interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = float(interval_s)
        self.clock = clock
        self._last: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}

    def __call__(self, kind: str, message: str) -> bool:
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        n = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        self.logger(f"{kind}: {message}" + (f" ({n} more since the last report)" if n else ""))
        return True


def classify_error(exc: BaseException) -> str:
    """``cuda_oom`` for CUDA out-of-memory errors, ``model_error`` otherwise."""
    name = type(exc).__name__
    if name == "OutOfMemoryError" or ("out of memory" in str(exc).lower() and "cuda" in str(exc).lower()):
        return "cuda_oom"
    return "model_error"


def _free_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def apply_runtime_settings(pipeline: Any, changes: Dict[str, Any]) -> None:
    """Apply changeable pipeline settings to a live pipeline (worker thread only).

    ``smoothing_alpha`` goes to both smoothers, ``tracker_iou`` to every existing tracker (new trackers read the
    config), ``detect_every``, ``event_frame_ms`` and ``annotate`` to the pipeline config.
    """
    cfg = getattr(pipeline, "config", None)
    for key, value in changes.items():
        if key == "smoothing_alpha":
            for sm in getattr(pipeline, "_smoothers", {}).values():
                sm.config = replace(sm.config, alpha=float(value))
        elif key == "tracker_iou":
            for tr in getattr(pipeline, "_trackers", {}).values():
                if hasattr(tr, "config"):
                    tr.config = replace(tr.config, iou_threshold=float(value))
        if cfg is not None and hasattr(cfg, key):
            setattr(cfg, key, type(getattr(cfg, key))(value))


class LiveRunner:
    """Runs a :class:`fer_perception.pipeline.Pipeline` live; see the module docstring.

    Args:
        pipeline: the pipeline (owned by the worker thread from :meth:`start` on).
        on_output: called from the worker with every :class:`LiveOutput` (the node publishes them).
        config: queue bounds and scheduling (:class:`LiveConfig`).
        event_type: message type of the default event stream (``pkg/msg/Type``).
        wants: ``wants(kind) -> bool`` for ``"annotated"``, ``"event_frame"`` and ``"image"``: whether someone
            consumes that output now (the node checks subscription counts); default: always.
        clock: nanosecond clock; must match the pipeline's (default: ``pipeline.clock`` or perf_counter_ns).
        logger: where rate-limited error reports go (default: this module's logger at warning level).
    """

    def __init__(
        self,
        pipeline: Any,
        on_output: Optional[Callable[[LiveOutput], None]] = None,
        config: Optional[LiveConfig] = None,
        *,
        event_type: str = "dv_ros2_msgs/msg/EventArray",
        wants: Optional[Callable[[str], bool]] = None,
        clock: Optional[Callable[[], int]] = None,
        logger: Optional[Callable[[str], Any]] = None,
    ) -> None:
        self.pipeline = pipeline
        self.on_output = on_output or (lambda out: None)
        self.config = config or LiveConfig()
        self.event_type = event_type
        self.wants = wants or (lambda kind: True)
        self.clock = clock or getattr(pipeline, "clock", None) or time.perf_counter_ns
        self._report = RateLimitedLog(logger or log.warning, self.config.error_log_interval_s)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._events: Deque[Tuple[EventBatch, int]] = deque()
        self._queued_events = 0
        self._images: Dict[str, tuple] = {}
        self._decoders: Dict[str, Any] = {}
        self._settings: Dict[str, Any] = {}
        self._thread: Optional[threading.Thread] = None
        self._stop = False
        self._busy = False
        self.drops: Dict[str, int] = {r: 0 for r in DROP_REASONS}
        self.dropped_events: Dict[str, int] = {r: 0 for r in DROP_REASONS}
        self.errors: Dict[str, int] = {k: 0 for k in ERROR_KINDS}
        self.below_confidence = 0
        rw = self.config.rate_window_s
        self._rates = {"event_messages": RateMeter(rw), "events": RateMeter(rw), "images": RateMeter(rw)}
        self.processed = {"event_messages": 0, "events": 0, "windows": 0, "frames": 0, "event_frames": 0,
                          "outputs": 0}
        n = int(self.config.latency_samples)
        self._latency: Dict[str, Deque[float]] = {SOURCE_EVENTS: deque(maxlen=n), SOURCE_FRAMES: deque(maxlen=n)}
        self._next_event_frame_ns = 0
        self._started_ns = self.clock()
        cfg = getattr(pipeline, "config", None)
        #: annotated images wanted (the pipeline's ``annotate`` setting; then only while someone listens)
        self._annotate = bool(getattr(cfg, "annotate", False))

    # ---------------------------------------------------------------------------------------- callbacks
    def decoder(self, stream: str = "events", msg_type: Optional[str] = None):
        """The decoder of ``stream`` (created on first use from ``msg_type`` or the runner's event type)."""
        dec = self._decoders.get(stream)
        if dec is None:
            from fer_perception.events.decoders import make_decoder

            mtype = msg_type or self.event_type
            opts = {"strict_order": self.config.strict_order}
            if not mtype.startswith("event_camera_msgs"):
                opts["check_sensor_bounds"] = self.config.check_sensor_bounds
            dec = self._decoders[stream] = make_decoder(mtype, **opts)
        return dec

    def on_event_message(self, data: Any, stream: str = "events", arrival_ns: Optional[int] = None) -> bool:
        """Decode one serialized event message and queue its events; False when it was malformed."""
        arrival = self.clock() if arrival_ns is None else int(arrival_ns)
        try:
            batch = self.decoder(stream).decode(data)
        except FerPerceptionError as exc:
            with self._lock:
                self.errors["malformed_event"] += 1
                self._rates["event_messages"].add(1, arrival)
            self._report("malformed_event", f"skipped a malformed event message on {stream}: {exc}")
            return False
        self.push_events(batch, arrival)
        return True

    def push_events(self, batch: EventBatch, arrival_ns: Optional[int] = None) -> None:
        """Queue an already decoded batch (oldest queued messages dropped beyond the bounds)."""
        arrival = self.clock() if arrival_ns is None else int(arrival_ns)
        n = len(batch)
        cfg = self.config
        with self._lock:
            self._rates["event_messages"].add(1, arrival)
            self._rates["events"].add(n, arrival)
            if self._stop:
                self.drops["stopped"] += 1
                self.dropped_events["stopped"] += n
                return
            self._events.append((batch, arrival))
            self._queued_events += n
            while len(self._events) > 1 and (self._queued_events > cfg.max_queued_events
                                             or len(self._events) > cfg.max_queued_messages):
                old, _ = self._events.popleft()
                self._queued_events -= len(old)
                self.drops["event_queue_full"] += 1
                self.dropped_events["event_queue_full"] += len(old)
            self._wake.notify()

    def on_image(
        self,
        source: str,
        stamp_ns: int,
        frame_id: str = "",
        image: Optional[np.ndarray] = None,
        decode: Optional[Callable[[], np.ndarray]] = None,
        arrival_ns: Optional[int] = None,
    ) -> None:
        """Offer the newest image of ``source``: an RGB/mono array, or ``decode()`` run by the worker."""
        if (image is None) == (decode is None):
            raise ConfigError("on_image needs exactly one of image= and decode=")
        arrival = self.clock() if arrival_ns is None else int(arrival_ns)
        with self._lock:
            self._rates["images"].add(1, arrival)
            if self._stop:
                self.drops["stopped"] += 1
                return
            if source in self._images:
                self.drops["image_replaced"] += 1
            self._images[source] = (int(stamp_ns), str(frame_id), image, decode, arrival)
            self._wake.notify()

    def update_settings(self, **changes: Any) -> None:
        """Change run-time settings (:data:`RUNTIME_SETTINGS`); applied by the worker before its next step."""
        unknown = sorted(set(changes) - set(RUNTIME_SETTINGS))
        if unknown:
            raise ConfigError(f"not changeable at run time: {', '.join(unknown)}; "
                              f"changeable: {', '.join(RUNTIME_SETTINGS)}")
        with self._lock:
            self._settings.update(changes)
            self._wake.notify()

    # ---------------------------------------------------------------------------------------- worker
    def start(self) -> "LiveRunner":
        if self._thread is not None:
            return self
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="fer-live-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the worker after its current step; queued input is dropped (reason ``stopped``). True when the
        thread ended within ``timeout``."""
        with self._lock:
            self._stop = True
            while self._events:
                b, _ = self._events.popleft()
                self.drops["stopped"] += 1
                self.dropped_events["stopped"] += len(b)
            self._queued_events = 0
            self.drops["stopped"] += len(self._images)
            self._images.clear()
            self._wake.notify_all()
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        alive = t.is_alive()
        if not alive:
            self._thread = None
        return not alive

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the queue is empty, no image is pending and the worker is between steps (tests)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._events and not self._images and not self._settings and not self._busy:
                    return True
            time.sleep(0.002)
        return False

    def _take_work(self):
        with self._lock:
            while not self._stop and not self._events and not self._images and not self._settings:
                if not self._wake.wait(self._idle_wait()):
                    break
            if self._stop:
                return None
            events = list(self._events)
            self._events.clear()
            self._queued_events = 0
            images = sorted(self._images.items(), key=lambda kv: kv[1][4])
            self._images.clear()
            settings, self._settings = self._settings, {}
            self._busy = True
            return events, images, settings

    def _idle_wait(self) -> float:
        wait = self.config.idle_wait_s
        if self.config.event_frame_hz > 0:
            wait = min(wait, max(0.0, (self._next_event_frame_ns - self.clock()) / 1e9) + 1e-3)
        return wait

    def _run(self) -> None:
        while True:
            work = self._take_work()
            if work is None:
                return
            try:
                self.step(*work)
            finally:
                with self._lock:
                    self._busy = False

    def step(self, events, images, settings) -> None:
        """One worker step: settings, events, poll, images, event frame. Public for single-threaded tests."""
        if settings:
            self._apply_settings(settings)
        for batch, arrival in events:
            try:
                self.pipeline.on_events(batch, arrival)
                self.processed["event_messages"] += 1
                self.processed["events"] += len(batch)
            except FerPerceptionError as exc:
                self._error("malformed_event", f"events rejected by the pipeline: {exc}")
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything a model raises
                self._model_error(exc, "event input")
        if events:
            self._poll()
        for source, (stamp, frame_id, image, decode, arrival) in images:
            self._process_image(source, stamp, frame_id, image, decode, arrival)
        self._maybe_event_frame()

    def _apply_settings(self, settings: Dict[str, Any]) -> None:
        for key in ("event_frame_hz", "min_confidence"):
            if key in settings:
                self.config = replace(self.config, **{key: settings[key]})
        if "annotate" in settings:
            self._annotate = bool(settings["annotate"])
        pipe = {k: v for k, v in settings.items() if k not in ("event_frame_hz", "min_confidence", "annotate")}
        if pipe:
            try:
                apply_runtime_settings(self.pipeline, pipe)
            except (FerPerceptionError, TypeError, ValueError) as exc:
                self._error("model_error", f"could not apply settings {pipe}: {exc}")

    def _poll(self) -> None:
        try:
            results = self.pipeline.poll()
        except Exception as exc:  # noqa: BLE001
            self._model_error(exc, "event model")
            return
        finally:
            self._sync_buffer_drops()
        if not results:
            return
        self.processed["windows"] += len(results)
        for r in results:
            self._latency[SOURCE_EVENTS].append(float(r.latency_ms))
        kept = self._confident(results)
        if kept:
            last = kept[-1]
            self._deliver(LiveOutput(kind="events", stamp_ns=int(last.stamp_ns), frame_id=last.frame_id,
                                     source=SOURCE_EVENTS, emotions=kept))

    def _sync_buffer_drops(self) -> None:
        buffers = getattr(self.pipeline, "buffers", None)
        n = int(getattr(buffers, "dropped_events", 0) or 0) if buffers is not None else 0
        with self._lock:
            self.dropped_events["event_buffer_full"] = n

    def _process_image(self, source, stamp, frame_id, image, decode, arrival) -> None:
        if image is None:
            try:
                image = decode()
            except FerPerceptionError as exc:
                self._error("malformed_image", f"skipped an undecodable {source} image: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - a decoder bug must not kill the worker either
                self._error("malformed_image", f"{source} image decoding failed: {type(exc).__name__}: {exc}")
                return
        cfg = getattr(self.pipeline, "config", None)
        if cfg is not None and hasattr(cfg, "annotate"):
            cfg.annotate = self._annotate and self.wants("annotated")
        try:
            out = self.pipeline.on_image(image, stamp, frame_id, source, arrival)
        except FerPerceptionError as exc:
            self._error("malformed_image", f"{source} image rejected: {exc}")
            return
        except Exception as exc:  # noqa: BLE001
            self._model_error(exc, "frame models")
            return
        self.processed["frames"] += 1
        for e in out.emotions:
            self._latency[SOURCE_FRAMES].append(float(e.latency_ms))
        emotions = self._confident(out.emotions)
        self._deliver(LiveOutput(
            kind="frame", stamp_ns=int(stamp), frame_id=frame_id, source=source, emotions=emotions,
            demographics=list(out.demographics), annotated=out.annotated,
            image=image if self.wants("image") else None, tracks=list(out.tracks),
        ))

    def _maybe_event_frame(self) -> None:
        hz = float(self.config.event_frame_hz)
        if hz <= 0 or not hasattr(self.pipeline, "event_frame_image"):
            return
        now = self.clock()
        if now < self._next_event_frame_ns:
            return
        self._next_event_frame_ns = now + int(1e9 / hz)
        if not self.wants("event_frame"):
            return
        try:
            img = self.pipeline.event_frame_image()
        except Exception as exc:  # noqa: BLE001
            self._error("output_error", f"event frame image failed: {type(exc).__name__}: {exc}")
            return
        if img is None:
            return
        self.processed["event_frames"] += 1
        recent = getattr(self.pipeline, "_recent", None)
        stamp = int(recent[-1].t[-1]) if recent else 0
        self._deliver(LiveOutput(kind="event_frame", stamp_ns=stamp, frame_id=getattr(
            self.pipeline, "_event_frame_id", ""), source=SOURCE_EVENTS, annotated=img))

    def _confident(self, results: List[EmotionResult]) -> List[EmotionResult]:
        th = float(self.config.min_confidence)
        if th <= 0:
            return list(results)
        kept = [r for r in results if r.confidence >= th]
        self.below_confidence += len(results) - len(kept)
        return kept

    def _deliver(self, out: LiveOutput) -> None:
        try:
            self.on_output(out)
            self.processed["outputs"] += 1
        except Exception as exc:  # noqa: BLE001 - a publishing error must not stop inference
            self._error("output_error", f"delivering {out.kind} output failed: {type(exc).__name__}: {exc}")

    def _error(self, kind: str, message: str) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
        self._report(kind, message)

    def _model_error(self, exc: BaseException, where: str) -> None:
        kind = classify_error(exc)
        if kind == "cuda_oom":
            try:
                _free_cuda_cache()
            except Exception:  # noqa: BLE001 - best effort
                pass
        self._error(kind, f"{where}: {type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------------------------------- diagnostics
    def snn_compute(self) -> str:
        """How the Spiking-FER convolutions compute: ``int8-digits`` (fp32-accurate, CPU), ``float32``,
        ``float16`` / ``bfloat16`` (half precision), or ``none`` without an event model; ``+cuda-graphs`` when
        windows replay captured CUDA graphs."""
        runner = getattr(getattr(self.pipeline, "event_model", None), "runner", None)
        if runner is None:
            return "none"
        if getattr(runner, "int8", False):
            return "int8-digits"
        compute = str(getattr(runner, "compute_dtype", "float32")).replace("torch.", "")
        return compute + ("+cuda-graphs" if getattr(runner, "cuda_graphs", False) else "")

    def device(self) -> str:
        """The device the models run on (``cpu``, ``cuda:0``, ...), as far as the pipeline tells."""
        p = self.pipeline
        for obj in (getattr(getattr(p, "event_model", None), "runner", None),
                    getattr(getattr(p, "expression_model", None), "model", None),
                    getattr(p, "event_model", None), getattr(p, "expression_model", None)):
            dev = getattr(obj, "device", None)
            if dev is not None:
                return str(dev)
        cfg = getattr(p, "config", None)
        dev = str(getattr(cfg, "device", "cpu")) if cfg is not None else "cpu"
        if dev == "auto":  # no model told us: what "auto" resolves to (without importing torch for it)
            import sys

            torch = sys.modules.get("torch")
            dev = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
        return dev

    def diagnostics(self) -> Dict[str, Any]:
        """A snapshot of rates, counts, drops, errors and latencies (plain values, for /diagnostics)."""
        now = self.clock()
        with self._lock:
            rates = {f"{k}_per_s": round(m.rate(now), 3) for k, m in self._rates.items()}
            received = {k: m.total for k, m in self._rates.items()}
            drops = dict(self.drops)
            dropped_events = dict(self.dropped_events)
            errors = dict(self.errors)
            queued = {"event_messages": len(self._events), "events": self._queued_events,
                      "images": len(self._images)}
            lat = {k: list(v) for k, v in self._latency.items()}
        latency = {}
        for src, values in lat.items():
            if values:
                p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
                latency[src] = {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3),
                                "samples": len(values)}
            else:
                latency[src] = {"p50_ms": None, "p95_ms": None, "samples": 0}
        return {
            "rates": rates,
            "received": received,
            "processed": dict(self.processed),
            "queued": queued,
            "drops": drops,
            "dropped_events": dropped_events,
            "errors": errors,
            "malformed": errors.get("malformed_event", 0) + errors.get("malformed_image", 0),
            "below_confidence": self.below_confidence,
            "latency": latency,
            "device": self.device(),
            "snn_compute": self.snn_compute(),
            "running": self.running,
            "uptime_s": round((now - self._started_ns) / 1e9, 3),
        }
