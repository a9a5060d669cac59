"""Pipeline behaviour with small fake models: every window processed, deterministic, face routing, smoothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fer_perception.errors import ConfigError, ImageError
from fer_perception.events.batch import EventBatch
from fer_perception.pipeline import Pipeline, PipelineConfig, SENSOR_FACE_ID, make_event_buffers
from fer_perception.results import Roi
from fer_perception.runtime.smoothing import ProbabilitySmoother, SmoothingConfig

W, H = 64, 48


# ---------------------------------------------------------------------------------------------------- fakes
class FakeEventModel:
    """Class = quadrant of the window's mean event position; deterministic."""

    labels = ["happy", "fear", "surprise", "anger"]
    name = "fake_snn"

    def __init__(self):
        self.calls = []

    def predict_proba(self, frames):
        self.calls.append(frames.shape)
        out = np.zeros((frames.shape[0], 4))
        for i, f in enumerate(frames):
            on = f[:, 1].sum()
            off = f[:, 0].sum()
            out[i, 0 if on >= off else 1] = 1.0
        return out


def fake_representation(batch, roi):
    fr = np.zeros((2, 2, 4, 4), np.float32)
    fr[1, 1, 0, 0] = float((batch.p == 1).sum())
    fr[1, 0, 0, 0] = float((batch.p == 0).sum())
    return fr


@dataclass
class Det:
    box: np.ndarray
    score: float = 1.0
    landmarks: object = None


@dataclass
class Trk:
    face_id: str
    box: np.ndarray


class FakeDetector:
    """Finds bright squares (value 255) in the image: one detection per connected bright blob (by columns)."""

    def detect(self, rgb):
        g = rgb[..., 0]
        ys, xs = np.nonzero(g == 255)
        if len(xs) == 0:
            return []
        return [Det(np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], float))]


class FakeTracker:
    def __init__(self):
        self.n = 0
        self.removed = []
        self.current = None

    def update(self, dets, stamp_ns):
        self.removed = []
        if not dets:
            if self.current is not None:
                self.removed = [self.current]
            self.current = None
            return []
        if self.current is None:
            self.n += 1
            self.current = f"face_{self.n}"
        return [Trk(self.current, dets[0].box)]


class FakeExpression:
    labels = ["happiness", "sadness", "neutral"]
    name = "fake_frames"

    def predict_proba(self, image, boxes):
        out = np.zeros((len(boxes), 3))
        out[:, 0] = 0.7
        out[:, 2] = 0.3
        return out


class FakeAgeGender:
    name = "fake_ag"

    def predict(self, image, boxes):
        n = len(boxes)
        return np.full(n, 30.0), np.full(n, 4.0), np.full(n, 0.8)


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        self.t += 1_000_000  # 1 ms per reading
        return self.t


def make_pipeline(**cfg_kw):
    # event face regions equal the face boxes here (the default crop is scaled and shifted towards the nose)
    cfg_kw.setdefault("event_roi_scale", 1.0)
    cfg_kw.setdefault("event_roi_offset_y", 0.0)
    cfg = PipelineConfig(events_per_frame=100, timesteps=2, buffer_events=10_000, snn_checkpoint="",
                         expression_model="none", age_gender_checkpoint="", annotate=False, **cfg_kw)
    return Pipeline(
        cfg, event_model=FakeEventModel(), expression_model=FakeExpression(), age_gender_model=FakeAgeGender(),
        detector=FakeDetector(), tracker_factory=FakeTracker, event_buffers=make_event_buffers(cfg),
        representation=fake_representation, clock=Clock(), load_missing=False,
        mappings={"aps": _Identity(), "rgb": _Identity()},
    )


class _Identity:
    def map_box(self, box):
        return np.asarray(box, float)


def events(n, t0, seed, polarity=None, box=(0, 0, W, H)):
    rng = np.random.default_rng(seed)
    x = rng.integers(box[0], box[0] + box[2], n)
    y = rng.integers(box[1], box[1] + box[3], n)
    t = t0 + np.arange(n) * 1000
    p = rng.integers(0, 2, n) if polarity is None else np.full(n, polarity)
    return EventBatch.from_arrays(x, y, t, p, W, H, int(t[-1]), "dvs")


def face_image(x, y, s=16):
    img = np.zeros((H, W, 3), np.uint8)
    img[y:y + s, x:x + s] = 255
    return img


# ---------------------------------------------------------------------------------------------------- tests
def test_every_window_processed_in_fallback_mode():
    pl = make_pipeline()
    results = []
    for k in range(10):  # 10 messages of 130 events -> 1300 events -> 6 windows of 200
        pl.on_events(events(130, k * 1_000_000, k, polarity=1))
        results += pl.poll()
    assert len(results) == 1300 // 200
    assert pl.counters.windows == 6
    assert pl.counters.events == 1300
    assert all(r.face_id == SENSOR_FACE_ID for r in results)
    assert all(r.roi == Roi(0, 0, W, H) for r in results)
    assert all(r.label == "happy" and r.source == "events" for r in results)
    # window stamps are the last event's time, window_ns its span, events strictly sequential
    stamps = [r.stamp_ns for r in results]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert results[0].window_ns == 1_000_000 + 69_000  # 130 events of message 0 + 70 of message 1
    assert all(r.latency_ms >= 0 for r in results)


def test_deterministic_outputs():
    def run():
        pl = make_pipeline()
        out = []
        for k in range(8):
            pl.on_events(events(150, k * 1_000_000, 100 + k))
            out += [(r.face_id, r.stamp_ns, tuple(np.round(r.probabilities, 6))) for r in pl.poll()]
        return out

    assert run() == run()


def test_face_routing_from_tracks_and_smoothing_freed():
    pl = make_pipeline()
    out = pl.on_image(face_image(10, 10), stamp_ns=0, frame_id="cam", source="aps")
    assert [t.face_id for t in out.tracks] == ["face_1"]
    pl.on_events(events(500, 0, 1, polarity=0, box=(10, 10, 16, 16)))
    res = pl.poll()
    assert len(res) == 2 and all(r.face_id == "face_1" for r in res)
    assert all(r.label == "fear" for r in res)
    assert pl.event_faces == {"face_1": Roi(10, 10, 16, 16)}
    # the face leaves: fallback ROI replaces it and the event smoothing state of face_1 is freed
    pl.on_image(np.zeros((H, W, 3), np.uint8), stamp_ns=1, source="aps")
    pl.on_events(events(200, 2_000_000, 2, polarity=1))
    res = pl.poll()
    assert [r.face_id for r in res] == [SENSOR_FACE_ID]
    assert "face_1" not in pl._smoothers["events"].face_ids


def test_event_faces_none_disables_face_rois_and_none_fallback_gives_nothing():
    pl = make_pipeline(event_faces_from="none", event_fallback_roi="none")
    pl.on_image(face_image(10, 10), 0, source="aps")
    pl.on_events(events(1000, 0, 3))
    assert pl.poll() == []


def test_fixed_fallback_roi():
    pl = make_pipeline(event_fallback_roi=[0, 0, 32, 24])
    pl.on_events(events(2000, 0, 4))
    res = pl.poll()
    assert res and all(r.roi == Roi(0, 0, 32, 24) for r in res)


def test_frame_outputs_emotions_demographics_and_labels():
    pl = make_pipeline()
    out = pl.on_image(face_image(20, 5), stamp_ns=123, frame_id="cam", source="rgb")
    assert len(out.emotions) == 1 and len(out.demographics) == 1
    e, d = out.emotions[0], out.demographics[0]
    assert e.source == "frames" and e.label == "happiness" and e.stamp_ns == 123 and e.frame_id == "cam"
    assert e.roi == Roi(20, 5, 16, 16)
    assert np.isclose(e.probabilities.sum(), 1.0)
    assert d.gender == "female" and d.gender_confidence == pytest.approx(0.8) and d.age == 30.0
    assert pl.counters.frames == 1 and pl.counters.faces == 1


def test_frame_source_selects_which_images_feed_models():
    pl = make_pipeline(frame_source="rgb")
    out = pl.on_image(face_image(20, 5), stamp_ns=1, source="aps")
    assert out.emotions == [] and len(out.tracks) == 1
    out = pl.on_image(face_image(20, 5), stamp_ns=2, source="rgb")
    assert len(out.emotions) == 1


def test_mono_image_accepted_and_bad_images_rejected():
    pl = make_pipeline()
    mono = face_image(1, 1)[..., 0]
    assert len(pl.on_image(mono, 0, source="aps").tracks) == 1
    with pytest.raises(ImageError):
        pl.on_image(np.zeros((4, 4, 3), np.float32), 0)
    with pytest.raises(ConfigError):
        pl.on_image(mono, 0, source="thermal")


def test_latency_from_arrival():
    pl = make_pipeline()
    pl.on_events(events(200, 0, 5), arrival_ns=0)
    (r,) = pl.poll()
    # the fake clock reads 1 ms, ... ; arrival given as 0 -> latency is the clock's reading at the result
    assert r.latency_ms == pytest.approx(1.0)


def test_config_from_yaml_ros_parameters(tmp_path: Path):
    p = tmp_path / "fer.yaml"
    p.write_text(
        "/**:\n  ros__parameters:\n    events_per_frame: 1000\n    timesteps: 4\n    denoise: true\n"
        "    smoothing: mean\n    event_fallback_roi: [1, 2, 30, 40]\n    events_topic: /dvs/events\n"
    )
    cfg = PipelineConfig.from_yaml(p)
    assert cfg.events_per_window == 4000 and cfg.denoise is True and cfg.smoothing == "mean"
    assert cfg.event_fallback_roi == [1, 2, 30, 40]
    with pytest.raises(ConfigError, match="events_topic"):
        PipelineConfig.from_dict({"events_topic": "x"}, strict=True)


@pytest.mark.parametrize("kw,name", [
    ({"timesteps": 0}, "timesteps"),
    ({"smoothing": "median"}, "smoothing"),
    ({"expression_model": "vgg"}, "expression_model"),
    ({"event_fallback_roi": [0, 0, 0, 5]}, "event_fallback_roi"),
    ({"mapping_rgb": [1.0, 2.0]}, "mapping_rgb"),
    ({"buffer_events": 10}, "buffer_events"),
])
def test_config_validation_names_parameter(kw, name):
    with pytest.raises(ConfigError, match=name):
        PipelineConfig(**kw)


def test_config_coercion_error_names_parameter():
    with pytest.raises(ConfigError, match="timesteps"):
        PipelineConfig.from_dict({"timesteps": "many"})
    assert PipelineConfig.from_dict({"smoothing": {"alpha": "0.25"}}).smoothing_alpha == 0.25


# ---------------------------------------------------------------------------------------------------- smoothing
def test_ema_smoothing_hand_computed():
    s = ProbabilitySmoother(SmoothingConfig(method="ema", alpha=0.5))
    a = s.update("f", [1.0, 0.0], 0, ["a", "b"])
    b = s.update("f", [0.0, 1.0], 1, ["a", "b"])
    np.testing.assert_allclose(a, [1.0, 0.0])
    np.testing.assert_allclose(b, [0.5, 0.5])
    c = s.update("g", [0.0, 1.0], 1, ["a", "b"])  # other face: independent
    np.testing.assert_allclose(c, [0.0, 1.0])


def test_mean_smoothing_window_and_removal():
    s = ProbabilitySmoother(SmoothingConfig(method="mean", window=2))
    s.update("f", [1.0, 0.0, 0.0])
    s.update("f", [0.0, 1.0, 0.0])
    np.testing.assert_allclose(s.update("f", [0.0, 0.0, 1.0]), [0.0, 0.5, 0.5])
    s.remove(["f"])
    assert len(s) == 0
    np.testing.assert_allclose(s.update("f", [0.0, 0.0, 1.0]), [0.0, 0.0, 1.0])


def test_smoothing_prune_and_label_change_resets():
    s = ProbabilitySmoother(SmoothingConfig(method="ema", alpha=0.5, max_age_ns=10))
    s.update("f", [1.0, 0.0], 0, ["a", "b"])
    np.testing.assert_allclose(s.update("f", [0.0, 1.0], 5, ["x", "y"]), [0.0, 1.0])  # other model: fresh state
    assert s.prune(100) == ["f"] and len(s) == 0
    with pytest.raises(ValueError):
        s.update("f", [np.nan, 1.0])
    with pytest.raises(ConfigError):
        SmoothingConfig(alpha=0.0)


def test_event_frame_image_and_annotated_frames():
    from fer_perception.pipeline import _default_annotator

    pl = make_pipeline()
    assert pl.event_frame_image() is None  # sensor size unknown yet
    pl.on_events(events(400, 0, 9))
    pl.poll()
    img = pl.event_frame_image()
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1
    pl.annotator = _default_annotator
    pl.config.annotate = True
    frame = face_image(20, 10)
    out = pl.on_image(frame, 5, source="rgb")
    assert out.annotated.shape == frame.shape and not np.array_equal(out.annotated, frame)


def test_detect_every_keeps_tracks_between_detections():
    class CountingDetector(FakeDetector):
        calls = 0

        def detect(self, rgb):
            CountingDetector.calls += 1
            return super().detect(rgb)

    pl = make_pipeline(detect_every=3)
    pl.detector = CountingDetector()
    outs = [pl.on_image(face_image(20, 5), stamp_ns=i, source="rgb") for i in range(7)]
    assert CountingDetector.calls == 3  # images 0, 3, 6
    assert all(len(o.tracks) == 1 and len(o.emotions) == 1 for o in outs)


def test_poll_latest_only_skips_stale_windows_and_counts_them():
    pl = make_pipeline()
    pl.on_events(events(1000, 0, 11))  # 5 windows of 200 ready
    res = pl.poll(latest_only=True)
    assert len(res) == 1 and res[0].stamp_ns == 999 * 1000
    assert pl.counters.dropped_events == 800


def test_images_nobody_needs_are_not_processed():
    pl = make_pipeline(frame_source="rgb", event_faces_from="rgb")
    out = pl.on_image(face_image(20, 5), stamp_ns=1, source="aps")
    assert out.tracks == [] and pl.counters.frames_unused == 1
    pl.on_image(face_image(20, 5), stamp_ns=2, source="rgb")
    pl.on_events(events(200, 0, 3))
    assert list(pl.event_faces) == ["face_1"]  # rgb tracks route the events


def test_mapping_specs_are_validated_with_named_errors():
    from fer_perception.pipeline import make_mapping

    assert make_mapping("identity").map_box([1, 2, 3, 4]).tolist() == [1, 2, 3, 4]
    h = make_mapping([2, 0, 0, 0, 2, 0, 0, 0, 1])
    assert h.map_box([1, 2, 3, 4]).tolist() == [2, 4, 6, 8]
    with pytest.raises(ConfigError, match="9 values"):
        make_mapping([1, 2, 3])
    with pytest.raises(ConfigError, match="singular"):
        make_mapping([0] * 9)
    with pytest.raises(ConfigError, match="unknown mapping"):
        make_mapping("affine")
