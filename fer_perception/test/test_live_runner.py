"""LiveRunner: cheap callbacks, bounded drop-oldest event queue, latest-wins images, a worker that survives
model errors, rate-limited error logs, run-time settings and the diagnostics snapshot. No ROS needed."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import List

import numpy as np
import pytest

from fer_perception.errors import ConfigError, ImageError
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import encode_event_array
from fer_perception.pipeline import FrameOutputs, Pipeline, PipelineConfig, make_event_buffers
from fer_perception.results import EmotionResult, Roi
from fer_perception.runtime.live import (
    DROP_REASONS, LiveConfig, LiveOutput, LiveRunner, RateLimitedLog, RateMeter, apply_runtime_settings,
    classify_error,
)

W, H = 64, 48


def batch(n: int, t0: int, seed: int = 0, width: int = W, height: int = H) -> EventBatch:
    rng = np.random.default_rng(seed)
    return EventBatch.from_arrays(rng.integers(0, width, n), rng.integers(0, height, n),
                                  t0 + np.arange(n, dtype=np.int64) * 1000, rng.integers(0, 2, n),
                                  width, height, t0 + (n - 1) * 1000, "dvs")


def msg(n: int, t0: int, seed: int = 0) -> bytes:
    return encode_event_array(batch(n, t0, seed))


def result(conf: float, latency: float = 5.0, stamp: int = 0) -> EmotionResult:
    p = np.array([conf, 1.0 - conf])
    return EmotionResult(stamp_ns=stamp, frame_id="dvs", face_id="sensor", roi=Roi(0, 0, W, H), source="events",
                         model="fake", labels=["happy", "sad"], probabilities=p, latency_ms=latency)


class RecordingPipeline:
    """Records what the worker feeds it; poll returns one result per received message."""

    def __init__(self):
        self.batches: List[EventBatch] = []
        self.images = []
        self.pending = 0
        self.poll_error = None
        self.image_error = None
        self.config = PipelineConfig(snn_checkpoint="", expression_model="none", age_gender_checkpoint="",
                                     annotate=False)

    def on_events(self, b, arrival):
        self.batches.append(b)
        self.pending += 1

    def poll(self):
        if self.poll_error is not None:
            err, self.poll_error = self.poll_error, None
            raise err
        out = [result(0.9, latency=float(i + 1), stamp=i) for i in range(self.pending)]
        self.pending = 0
        return out

    def on_image(self, image, stamp_ns, frame_id, source, arrival):
        if self.image_error is not None:
            raise self.image_error
        self.images.append((source, stamp_ns, image.shape))
        return FrameOutputs(emotions=[result(0.6, latency=2.0, stamp=stamp_ns)])


class Sink:
    def __init__(self):
        self.outputs: List[LiveOutput] = []
        self.lock = threading.Lock()

    def __call__(self, out):
        with self.lock:
            self.outputs.append(out)

    def kinds(self, kind):
        return [o for o in self.outputs if o.kind == kind]


def runner_for(pipe, sink=None, **cfg):
    cfg.setdefault("event_frame_hz", 0.0)
    logs: List[str] = []
    r = LiveRunner(pipe, sink or Sink(), LiveConfig(**cfg), logger=logs.append)
    r.logs = logs
    return r


# ---------------------------------------------------------------------------------------------------- queue
def test_callbacks_decode_and_queue_without_running_models():
    pipe = RecordingPipeline()
    r = runner_for(pipe)
    assert r.on_event_message(msg(100, 1_000_000, seed=1))
    assert r.on_event_message(msg(50, 2_000_000, seed=2))
    d = r.diagnostics()
    assert d["queued"] == {"event_messages": 2, "events": 150, "images": 0}
    assert d["received"]["events"] == 150 and d["received"]["event_messages"] == 2
    assert pipe.batches == []  # nothing reaches the pipeline before the worker runs


def test_queue_drops_oldest_messages_and_counts_them():
    pipe = RecordingPipeline()
    r = runner_for(pipe, max_queued_events=250)
    for k in range(5):  # 5 x 100 events into a queue bounded at 250 events
        r.on_event_message(msg(100, 1_000_000 * (k + 1), seed=k))
    d = r.diagnostics()
    assert d["drops"]["event_queue_full"] == 3 and d["dropped_events"]["event_queue_full"] == 300
    r.start()
    assert r.wait_idle()
    r.stop()
    # the two NEWEST messages survived, in order
    assert [int(b.t[0]) for b in pipe.batches] == [4_000_000, 5_000_000]


def test_queue_bound_in_messages():
    pipe = RecordingPipeline()
    r = runner_for(pipe, max_queued_messages=3)
    for k in range(10):
        r.on_event_message(msg(10, 1_000_000 * (k + 1), seed=k))
    assert r.diagnostics()["drops"]["event_queue_full"] == 7
    assert r.diagnostics()["queued"]["event_messages"] == 3


def test_malformed_messages_are_counted_logged_once_and_skipped():
    pipe = RecordingPipeline()
    r = runner_for(pipe, error_log_interval_s=60.0)
    good = msg(20, 1_000_000)
    assert not r.on_event_message(b"\x00\x01\x00\x00garbage")
    assert not r.on_event_message(good[:-20])  # truncated
    assert not r.on_event_message(b"")
    assert r.on_event_message(good)
    d = r.diagnostics()
    assert d["errors"]["malformed_event"] == 3 and d["malformed"] == 3
    assert len(r.logs) == 1 and "malformed_event" in r.logs[0]
    r.start()
    assert r.wait_idle()
    r.stop()
    assert len(pipe.batches) == 1 and len(pipe.batches[0]) == 20


def test_decoder_per_stream_and_event_packet_type():
    from fer_perception.events.event_packet import encode_event_packet

    pipe = RecordingPipeline()
    r = LiveRunner(pipe, Sink(), LiveConfig(event_frame_hz=0), event_type="event_camera_msgs/msg/EventPacket")
    b = batch(64, 5_000_000)
    data = encode_event_packet(b, "mono")
    assert r.on_event_message(data, stream="left")
    assert r.decoder("left") is r.decoder("left")
    assert r.decoder("left") is not r.decoder("right")
    assert r.diagnostics()["queued"]["events"] == 64


# ---------------------------------------------------------------------------------------------------- images
def test_images_are_latest_wins_per_source():
    pipe = RecordingPipeline()
    sink = Sink()
    r = runner_for(pipe, sink)
    img = np.zeros((8, 8, 3), np.uint8)
    for stamp in (1, 2, 3):
        r.on_image("rgb", stamp, "cam", image=img)
    r.on_image("aps", 10, "dvs", image=img[..., 0])
    assert r.diagnostics()["drops"]["image_replaced"] == 2
    r.start()
    assert r.wait_idle()
    r.stop()
    assert sorted((s, t) for s, t, _ in pipe.images) == [("aps", 10), ("rgb", 3)]
    frames = sink.kinds("frame")
    assert {o.source for o in frames} == {"rgb", "aps"}
    assert all(o.image is not None for o in frames)


def test_encoded_images_are_decoded_by_the_worker_only_when_processed():
    pipe = RecordingPipeline()
    r = runner_for(pipe)
    calls = []

    def decoder(stamp):
        def f():
            calls.append(stamp)
            return np.zeros((4, 4, 3), np.uint8)
        return f

    for stamp in range(5):
        r.on_image("rgb", stamp, decode=decoder(stamp))
    r.start()
    assert r.wait_idle()
    r.stop()
    assert calls == [4]  # the four replaced images were never decoded


def test_undecodable_image_is_counted_and_the_worker_goes_on():
    pipe = RecordingPipeline()
    r = runner_for(pipe)

    def bad():
        raise ImageError("unsupported image encoding 'bayer_weird'")

    r.start()
    r.on_image("rgb", 1, decode=bad)
    assert r.wait_idle()
    r.on_image("rgb", 2, image=np.zeros((4, 4), np.uint8))
    assert r.wait_idle()
    r.stop()
    assert r.diagnostics()["errors"]["malformed_image"] == 1
    assert [t for _, t, _ in pipe.images] == [2]


def test_on_image_needs_exactly_one_of_image_and_decode():
    r = runner_for(RecordingPipeline())
    with pytest.raises(ConfigError, match="exactly one"):
        r.on_image("rgb", 0)
    with pytest.raises(ConfigError, match="exactly one"):
        r.on_image("rgb", 0, image=np.zeros((2, 2), np.uint8), decode=lambda: None)


# ---------------------------------------------------------------------------------------------------- errors
def test_model_errors_and_cuda_oom_never_kill_the_worker():
    class OutOfMemoryError(RuntimeError):
        pass

    pipe = RecordingPipeline()
    sink = Sink()
    r = runner_for(pipe, sink, error_log_interval_s=60.0)
    r.start()
    pipe.poll_error = RuntimeError("shape mismatch in conv1")
    r.on_event_message(msg(10, 1_000_000))
    assert r.wait_idle()
    pipe.poll_error = OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    r.on_event_message(msg(10, 2_000_000))
    assert r.wait_idle()
    for k in range(3):
        pipe.poll_error = RuntimeError("again")
        r.on_event_message(msg(10, (3 + k) * 1_000_000))
        assert r.wait_idle()
    r.on_event_message(msg(10, 9_000_000))
    assert r.wait_idle()
    assert r.running
    r.stop()
    d = r.diagnostics()
    assert d["errors"]["model_error"] == 4 and d["errors"]["cuda_oom"] == 1
    # one log line per kind despite 4 model errors
    assert sum("model_error" in line for line in r.logs) == 1
    assert sum("cuda_oom" in line for line in r.logs) == 1
    assert len(sink.kinds("events")) >= 1  # results flow again after the errors


def test_image_model_error_and_failing_output_callback_are_survived():
    pipe = RecordingPipeline()
    calls = []

    def failing_sink(out):
        calls.append(out.kind)
        raise RuntimeError("publisher destroyed")

    r = runner_for(pipe, failing_sink)
    r.start()
    pipe.image_error = ValueError("bad crop")
    r.on_image("rgb", 1, image=np.zeros((4, 4, 3), np.uint8))
    assert r.wait_idle()
    pipe.image_error = None
    r.on_image("rgb", 2, image=np.zeros((4, 4, 3), np.uint8))
    assert r.wait_idle()
    assert r.running
    r.stop()
    d = r.diagnostics()
    assert d["errors"]["model_error"] == 1 and d["errors"]["output_error"] == 1
    assert calls == ["frame"]


def test_classify_error():
    class OutOfMemoryError(Exception):
        pass

    assert classify_error(OutOfMemoryError("x")) == "cuda_oom"
    assert classify_error(RuntimeError("CUDA error: out of memory")) == "cuda_oom"
    assert classify_error(RuntimeError("size mismatch")) == "model_error"


def test_rate_limited_log_reports_suppressed_count():
    now = [0.0]
    lines = []
    rl = RateLimitedLog(lines.append, interval_s=10.0, clock=lambda: now[0])
    assert rl("a", "first")
    for _ in range(4):
        now[0] += 1.0
        assert not rl("a", "again")
    assert rl("b", "other kind")
    now[0] = 20.0
    assert rl("a", "later")
    assert lines == ["a: first", "b: other kind", "a: later (4 more since the last report)"]


# ---------------------------------------------------------------------------------------------------- diagnostics
def test_rate_meter_counts_per_second_over_window():
    m = RateMeter(window_s=2.0, buckets=4)
    t0 = 100 * 10**9
    for k in range(2000):  # 1 kHz for 2 s, 5 events each
        m.add(5, t0 + k * 1_000_000)
    now = t0 + 2_000_000_000
    assert m.rate(now) == pytest.approx(5000, rel=0.3)
    assert m.total == 10_000
    assert m.rate(now + 10 * 10**9) == 0.0


def test_diagnostics_snapshot_has_rates_latencies_drops_and_device():
    pipe = RecordingPipeline()
    r = runner_for(pipe)
    r.start()
    for k in range(20):
        r.on_event_message(msg(100, (k + 1) * 1_000_000, seed=k))
    r.on_image("rgb", 5, image=np.zeros((4, 4, 3), np.uint8))
    assert r.wait_idle()
    d = r.diagnostics()
    r.stop()
    assert set(d["drops"]) == set(DROP_REASONS)
    assert d["rates"]["events_per_s"] > 0 and d["rates"]["event_messages_per_s"] > 0
    assert d["rates"]["images_per_s"] > 0
    assert d["processed"]["event_messages"] == 20 and d["processed"]["events"] == 2000
    assert d["processed"]["windows"] == 20 and d["processed"]["frames"] == 1
    lat = d["latency"]["events"]
    assert lat["samples"] == 20 and lat["p50_ms"] <= lat["p95_ms"]
    assert d["latency"]["frames"]["p50_ms"] == pytest.approx(2.0)
    assert d["device"] in ("cpu", "cuda")  # config "auto" resolved; no model loaded here
    assert d["snn_compute"] == "none"
    assert d["malformed"] == 0


def test_stop_is_clean_and_later_input_counts_as_stopped():
    pipe = RecordingPipeline()
    r = runner_for(pipe).start()
    assert r.running
    assert r.stop(timeout=5)
    assert not r.running
    r.on_event_message(msg(10, 1_000_000))
    r.on_image("rgb", 1, image=np.zeros((2, 2), np.uint8))
    d = r.diagnostics()
    assert d["drops"]["stopped"] == 2 and d["dropped_events"]["stopped"] == 10
    assert pipe.batches == []


# ---------------------------------------------------------------------------------------------------- settings
def test_min_confidence_filters_results_and_is_changeable():
    pipe = RecordingPipeline()
    sink = Sink()
    r = runner_for(pipe, sink, min_confidence=0.95)
    r.start()
    r.on_event_message(msg(10, 1_000_000))  # results have confidence 0.9
    assert r.wait_idle()
    assert sink.kinds("events") == [] and r.diagnostics()["below_confidence"] == 1
    r.update_settings(min_confidence=0.5)
    r.on_event_message(msg(10, 2_000_000))
    assert r.wait_idle()
    r.stop()
    assert len(sink.kinds("events")) == 1
    with pytest.raises(ConfigError, match="not changeable at run time: events_per_frame"):
        r.update_settings(events_per_frame=10)


# ---------------------------------------------------------------------------------------------------- real pipeline
class FakeEventModel:
    labels = ["happy", "fear"]
    name = "fake_snn"

    def predict_proba(self, frames):
        return np.tile([0.8, 0.2], (frames.shape[0], 1))


@dataclass
class Det:
    box: np.ndarray
    score: float = 1.0
    landmarks: object = None


class BoxDetector:
    def detect(self, rgb):
        return [Det(np.array([10.0, 10.0, 20.0, 20.0]))]


class FakeExpression:
    labels = ["happiness", "sadness"]
    name = "fake_frames"

    def predict_proba(self, image, boxes):
        return np.tile([0.3, 0.7], (len(boxes), 1))


def real_pipeline():
    from fer_perception.faces.track import FaceTracker

    cfg = PipelineConfig(events_per_frame=100, timesteps=2, buffer_events=10_000, snn_checkpoint="",
                         expression_model="none", age_gender_checkpoint="", annotate=False, smoothing="ema")
    return Pipeline(cfg, event_model=FakeEventModel(), expression_model=FakeExpression(), detector=BoxDetector(),
                    tracker_factory=lambda: FaceTracker(min_hits=1), event_buffers=make_event_buffers(cfg),
                    representation=lambda b, roi: np.zeros((2, 2, 4, 4), np.float32), load_missing=False,
                    mappings={})


def test_real_pipeline_windows_and_frames_flow_through_the_runner():
    pipe = real_pipeline()
    sink = Sink()
    r = LiveRunner(pipe, sink, LiveConfig(event_frame_hz=1000.0))
    r.start()
    for k in range(8):  # 8 x 100 events = 4 windows of 200
        r.on_event_message(msg(100, (k + 1) * 1_000_000_000, seed=k))
        time.sleep(0.002)
    r.on_image("rgb", 123, "cam", image=np.full((48, 64, 3), 128, np.uint8))
    assert r.wait_idle()
    time.sleep(0.01)
    r.stop()
    ev = [e for o in sink.kinds("events") for e in o.emotions]
    assert len(ev) >= 3 and all(e.source == "events" and e.label == "happy" for e in ev)
    fr = [e for o in sink.kinds("frame") for e in o.emotions]
    assert len(fr) == 1 and fr[0].label == "sadness" and fr[0].face_id == "face_1"
    assert sink.kinds("event_frame") and sink.kinds("event_frame")[0].annotated.ndim == 3
    d = r.diagnostics()
    assert d["processed"]["windows"] == len(ev)


def test_event_frames_only_while_wanted():
    pipe = real_pipeline()
    sink = Sink()
    wanted = {"event_frame": False}
    r = LiveRunner(pipe, sink, LiveConfig(event_frame_hz=1000.0), wants=lambda k: wanted.get(k, True))
    r.start()
    r.on_event_message(msg(50, 1_000_000))
    assert r.wait_idle()
    time.sleep(0.02)
    assert sink.kinds("event_frame") == []
    wanted["event_frame"] = True
    r.on_event_message(msg(50, 2_000_000))
    deadline = time.time() + 5
    while not sink.kinds("event_frame") and time.time() < deadline:
        time.sleep(0.005)
    r.stop()
    assert sink.kinds("event_frame")


def test_apply_runtime_settings_reaches_smoothers_trackers_and_config():
    pipe = real_pipeline()
    pipe.on_image(np.zeros((48, 64, 3), np.uint8), 1, "cam", "rgb")  # creates the rgb tracker
    apply_runtime_settings(pipe, {"smoothing_alpha": 0.25, "tracker_iou": 0.6, "detect_every": 3,
                                  "event_frame_ms": 50.0})
    assert all(sm.config.alpha == 0.25 for sm in pipe._smoothers.values())
    assert pipe._trackers["rgb"].config.iou_threshold == 0.6
    assert pipe.config.detect_every == 3 and pipe.config.event_frame_ms == 50.0


def test_live_config_validation_names_the_setting():
    with pytest.raises(ConfigError, match="max_queued_events"):
        LiveConfig(max_queued_events=0)
    with pytest.raises(ConfigError, match="min_confidence"):
        LiveConfig(min_confidence=1.5)
