"""The pipeline built from the real modules (demo weights, Haar, tracker, buffers, denoise) on a synthetic scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_perception.events.batch import EventBatch
from fer_perception.pipeline import Pipeline, PipelineConfig

WEIGHTS = Path(__file__).resolve().parents[1] / "fer_perception" / "weights"
pytestmark = pytest.mark.skipif(not (WEIGHTS / "spiking_fer_synthetic_demo.pt").is_file(),
                                reason="demo SNN weights not built yet")


def test_real_components_route_events_of_the_detected_face_and_denoise():
    from fer_perception.synth.emulator import DvsEmulator, EmulatorConfig
    from fer_perception.synth.faces import SyntheticFaceConfig, render_clip

    clip = render_clip("surprise", seed=4242, config=SyntheticFaceConfig.scene(
        width=346, height=260, n_frames=40, face_size=(0.5, 0.6), translation=0.02, rotation_deg=2.0, clutter=0))
    ev = DvsEmulator(EmulatorConfig.paper(width=346, height=260), seed=1).emulate(clip.frames, clip.times_s)
    # sprinkle isolated noise events that the background-activity filter must remove
    rng = np.random.default_rng(0)
    n_noise = 300
    noise = EventBatch.from_arrays(rng.integers(0, 346, n_noise), rng.integers(0, 260, n_noise),
                                   np.sort(rng.integers(int(ev.t[0]), int(ev.t[-1]), n_noise)),
                                   rng.integers(0, 2, n_noise), 346, 260)
    allb = EventBatch.concatenate([ev, noise])
    order = np.argsort(allb.t, kind="stable")
    allb = allb.select(order)
    cfg = PipelineConfig(denoise=True, expression_model="none", age_gender_checkpoint="", event_faces_from="aps",
                         event_roi_scale=1.47, event_roi_offset_y=0.14, threads=1, annotate=False)
    pl = Pipeline(cfg)
    assert pl.config.frame_size == 64  # representation taken from the demo checkpoint
    results, track_ids = [], set()
    edges = np.searchsorted(allb.t, (clip.times_s * 1e9).astype(np.int64))
    for i in range(len(clip.frames)):
        out = pl.on_image(clip.frames[i], int(clip.times_s[i] * 1e9), "dvs", source="aps")
        track_ids |= {t.face_id for t in out.tracks}
        lo, hi = edges[i], edges[i + 1] if i + 1 < len(edges) else len(allb)
        if hi > lo:
            pl.on_events(EventBatch(allb.x[lo:hi], allb.y[lo:hi], allb.t[lo:hi], allb.p[lo:hi], 346, 260,
                                    int(allb.t[hi - 1]), "dvs"))
        results += pl.poll()
    assert "face_1" in track_ids and set(pl.event_faces) <= track_ids  # events follow the tracked faces
    assert pl.counters.events_denoised_out >= n_noise // 2
    assert results and {r.face_id for r in results} <= track_ids
    assert sum(r.face_id == "face_1" for r in results) >= 2
    assert all(len(r.labels) == 6 and np.isclose(r.probabilities.sum(), 1.0, atol=1e-5) for r in results)
    img = pl.event_frame_image()
    assert img.shape == (260, 346, 3)
