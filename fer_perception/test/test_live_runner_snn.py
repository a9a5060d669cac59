"""LiveRunner with the real pipeline and a real (small, randomly initialised) Spiking-FER checkpoint: raw
EventArray bytes in, EmotionResults of the six FerDVS classes out, through the worker thread."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import encode_event_array
from fer_perception.labels import FERDVS_CLASSES
from fer_perception.runtime.live import LiveConfig, LiveRunner

torch = pytest.importorskip("torch")
pytest.importorskip("spikingjelly")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from fer_perception.models.checkpoint import save_checkpoint
    from fer_perception.models.spiking_fer import SpikingFER

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("snn") / "small.pt"
    save_checkpoint(path, SpikingFER(width=0.25, input_size=64))
    return path


def messages(n, seed=0):
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000 * 10**9
    out = []
    for k in range(n):
        ts = t0 + k * 10**6 + np.arange(2500, dtype=np.int64) * 400
        b = EventBatch.from_arrays(rng.integers(0, 200, 2500), rng.integers(0, 200, 2500), ts,
                                   rng.integers(0, 2, 2500), 200, 200, int(ts[-1]), "dvs")
        out.append(encode_event_array(b))
    return out


def test_raw_events_through_the_worker_and_the_snn(checkpoint):
    from fer_perception.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline(PipelineConfig(snn_checkpoint=str(checkpoint), expression_model="none",
                                   age_gender_checkpoint="", event_faces_from="none", device="cpu"))
    assert pipe.config.frame_size == 64  # the representation follows the checkpoint
    outs = []
    r = LiveRunner(pipe, outs.append, LiveConfig(event_frame_hz=0.0)).start()
    for data in messages(13):  # 32,500 events: two windows of 15,000
        assert r.on_event_message(data)
    assert r.wait_idle(60.0)
    r.stop()
    results = [e for o in outs for e in o.emotions]
    assert len(results) == 2
    for e in results:
        assert e.source == "events" and tuple(e.labels) == FERDVS_CLASSES and e.face_id == "sensor"
        assert np.isclose(float(np.sum(e.probabilities)), 1.0, atol=1e-5)
        assert e.frame_id == "dvs" and e.window_ns > 0 and e.latency_ms > 0
    d = r.diagnostics()
    assert d["processed"]["windows"] == 2 and d["device"] == "cpu"
    assert d["snn_compute"] == "float32"  # the demo-size network: int8 digits would not pay, the runner says so
    assert d["latency"]["events"]["samples"] == 2 and sum(d["errors"].values()) == 0
