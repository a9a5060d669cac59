"""faces/track.py: stable ids through motion, misses, crossings and new faces; smoothing; removal reports."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.errors import ConfigError
from fer_perception.faces.detect import Detection
from fer_perception.faces.track import FaceTracker, TrackerConfig, box_iou

FRAME_NS = 33_333_333  # 30 fps


def det(x, y, w=80.0, h=80.0, score=0.9):
    return Detection(np.array([x, y, w, h], float), score)


def ids(tracks):
    return [t.face_id for t in tracks]


def test_box_iou_pairwise():
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float)
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [50, 50, 1, 1]], float)
    got = box_iou(a, b)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got[0], [50 / 150, 1.0, 0.0])
    np.testing.assert_allclose(got[1], [0.0, 0.0, 0.0])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_min_hits_then_stable_id_through_fast_motion():
    tr = FaceTracker(min_hits=2)
    assert tr.update([det(100, 100)], 0) == []  # tentative
    assert len(tr.tracks) == 1 and tr.tracks[0].face_id == ""
    seen = []
    for k in range(1, 40):
        # 25 px per frame: consecutive boxes overlap by IoU < 0.55; the prediction keeps up
        out = tr.update([det(100 + 25 * k, 100 + 3 * k)], k * FRAME_NS)
        seen += ids(out)
    assert set(seen) == {"face_1"} and len(seen) == 39
    t = tr.tracks[0]
    assert t.hits == 40 and t.missed == 0 and t.first_seen_ns == 0 and t.last_seen_ns == 39 * FRAME_NS
    # the constant-velocity model learnt 25 px per frame
    assert t.velocity[0] == pytest.approx(25 / (FRAME_NS * 1e-9), rel=0.02)
    # and the smoothed box does not lag behind a steadily moving face
    assert abs(t.box[0] - (100 + 25 * 39)) < 2.0


def test_three_frame_miss_keeps_the_id_and_coasts():
    tr = FaceTracker(min_hits=1, max_missed=5)
    for k in range(5):
        tr.update([det(100 + 10 * k, 100)], k * FRAME_NS)
    for k in range(5, 8):  # three frames without detection
        out = tr.update([], k * FRAME_NS)
        assert ids(out) == ["face_1"] and out[0].missed == k - 4
        assert out[0].box[0] == pytest.approx(100 + 10 * k, abs=3)  # coasting along the prediction
        assert tr.removed == []
    out = tr.update([det(180, 100)], 8 * FRAME_NS)
    assert ids(out) == ["face_1"] and out[0].missed == 0 and out[0].hits == 6


def test_long_miss_removes_and_reports_once_then_new_id():
    tr = FaceTracker(min_hits=1, max_missed=2)
    tr.update([det(100, 100)], 0)
    tr.update([], FRAME_NS)
    tr.update([], 2 * FRAME_NS)
    assert tr.removed == []
    out = tr.update([], 3 * FRAME_NS)
    assert out == [] and tr.removed == ["face_1"]
    tr.update([], 4 * FRAME_NS)
    assert tr.removed == []
    out = tr.update([det(100, 100)], 5 * FRAME_NS)
    assert ids(out) == ["face_2"]  # ids are never reused


def test_two_crossing_faces_keep_their_ids():
    tr = FaceTracker(min_hits=1)
    n = 21
    a_track, b_track = [], []
    for k in range(n):
        xa = 100 + 15 * k   # left to right
        xb = 400 - 15 * k   # right to left; they meet at k = 10 (same x, 4 px apart vertically)
        dets = [det(xb, 104), det(xa, 100)]  # order shuffled on purpose
        if k % 2:
            dets.reverse()
        out = {t.face_id: t for t in tr.update(dets, k * FRAME_NS)}
        assert set(out) == {"face_1", "face_2"}
        a_track.append(out["face_2"].raw_box[0])  # face_2 was created from the second detection (xa)
        b_track.append(out["face_1"].raw_box[0])
    assert np.all(np.diff(a_track) > 0), "face_2 must keep moving right"
    assert np.all(np.diff(b_track) < 0), "face_1 must keep moving left"


def test_crossing_with_occlusion():
    """Face B passes behind face A: B is missing for two frames around the crossing and keeps its id."""
    tr = FaceTracker(min_hits=1, max_missed=4)
    for k in range(16):
        xa, xb = 300.0, 150 + 20 * k
        dets = [det(xa, 100)]
        if not 7 <= k <= 8:
            dets.append(det(xb, 105))
        out = {t.face_id: t for t in tr.update(dets, k * FRAME_NS)}
    assert set(out) == {"face_1", "face_2"}
    assert out["face_1"].raw_box[0] == 300.0
    assert out["face_2"].raw_box[0] == 150 + 20 * 15


def test_new_face_gets_the_next_id_and_one_frame_false_hits_none():
    tr = FaceTracker(min_hits=2)
    for k in range(3):
        tr.update([det(100, 100)], k * FRAME_NS)
    tr.update([det(100, 100), det(400, 300)], 3 * FRAME_NS)  # false hit, once
    out = tr.update([det(100, 100)], 4 * FRAME_NS)
    assert ids(out) == ["face_1"]
    tr.update([det(100, 100), det(400, 50)], 5 * FRAME_NS)
    out = tr.update([det(100, 100), det(402, 51)], 6 * FRAME_NS)
    assert ids(out) == ["face_1", "face_2"]


def test_smoothing_reduces_jitter():
    rng = np.random.default_rng(0)
    noisy = rng.normal(0, 4, size=(60, 4))
    outs = {}
    for s in (0.0, 0.7):
        tr = FaceTracker(min_hits=1, smoothing=s)
        boxes = []
        for k in range(60):
            out = tr.update([Detection(np.array([200, 150, 90, 90]) + noisy[k])], k * FRAME_NS)
            boxes.append(out[0].box)
        outs[s] = np.std(np.array(boxes)[10:], axis=0).mean()
    assert outs[0.0] == pytest.approx(np.std(noisy[10:], axis=0).mean(), rel=0.05)  # raw boxes
    assert outs[0.7] < 0.75 * outs[0.0]


def test_duplicate_boxes_on_one_face_start_no_track():
    tr = FaceTracker(min_hits=1)
    tr.update([det(100, 100)], 0)
    for k in range(1, 5):
        out = tr.update([det(100, 100), det(104, 98, 84, 84)], k * FRAME_NS)
    assert ids(out) == ["face_1"] and len(tr.tracks) == 1


def test_size_change_too_large_is_a_new_face():
    tr = FaceTracker(min_hits=1, max_missed=0)
    tr.update([det(100, 100, 60, 60)], 0)
    out = tr.update([det(100, 100, 200, 200)], FRAME_NS)
    assert ids(out) == ["face_2"] and tr.removed == ["face_1"]


def test_inputs_as_arrays_reset_and_backwards_time():
    tr = FaceTracker(min_hits=1)
    out = tr.update([np.array([10, 10, 50, 50, 0.5]), [200, 10, 50, 50]], 10 * FRAME_NS)
    assert ids(out) == ["face_1", "face_2"] and out[0].score == 0.5 and out[1].score == 1.0
    out = tr.update([[12, 10, 50, 50], [0, 0, 0, 0], [np.nan, 0, 5, 5]], 5 * FRAME_NS)  # degenerate ones dropped
    assert [t.missed for t in out] == [0, 1]
    tr.reset()
    assert sorted(tr.removed) == ["face_1", "face_2"] and tr.tracks == []
    with pytest.raises(ConfigError, match="Detection or"):
        tr.update([[1, 2, 3]], 0)


@pytest.mark.parametrize(
    "kw, name",
    [({"iou_threshold": 1.5}, "iou_threshold"), ({"min_hits": 0}, "min_hits"), ({"smoothing": 1.0}, "smoothing"),
     ({"max_missed": -1}, "max_missed")],
)
def test_config_validation(kw, name):
    with pytest.raises(ConfigError, match=name):
        FaceTracker(**kw)
    with pytest.raises(ConfigError, match=name):
        TrackerConfig(**kw)


def test_haar_and_tracker_on_a_moving_synthetic_face():
    """Detector + tracker on a rendered clip: one id for the whole clip, boxes on the true face."""
    from fer_perception.faces.detect import HaarFaceDetector
    from fer_perception.synth.faces import SyntheticFaceConfig, render_clip

    clip = render_clip("sadness", seed=4, config=SyntheticFaceConfig.scene(n_frames=16, translation=0.15))
    det = HaarFaceDetector()
    tr = FaceTracker()
    seen = set()
    for k in range(len(clip)):
        out = tr.update(det.detect(clip.frames[k]), int(clip.times_s[k] * 1e9))
        seen |= set(ids(out))
        for t in out:
            assert box_iou(t.box, clip.boxes[k])[0, 0] > 0.4
    assert seen == {"face_1"}
    assert tr.removed == []
