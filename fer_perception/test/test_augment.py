"""Event data augmentations: each transform's invariants, the official order, seeding, and --edas parsing."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.data import augment as A
from fer_perception.data.ferdvs import EVENT_DTYPE, make_events
from fer_perception.errors import ConfigError

SENSOR = (200, 200)


def events(n=5000, seed=0, w=200, h=200):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(1000, 101_000, n))
    return make_events(t, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n))


def test_parse_edas_order_and_errors():
    assert A.parse_edas("crop,flip,mirror") == ("flip", "crop", "mirror")
    assert A.parse_edas(" reverse , event_drop ,reverse") == ("reverse", "event_drop")
    assert A.parse_edas("") == () and A.parse_edas("none") == () and A.parse_edas(None) == ()
    assert A.parse_edas("all") == A.AUGMENTATIONS
    assert A.AUGMENTATIONS == ("flip", "background_activity", "reverse", "event_drop", "crop", "mirror")
    with pytest.raises(ConfigError, match="unknown augmentation.*rotate"):
        A.parse_edas("flip,rotate")


def test_flip_maps_x():
    ev = events()
    out = A.flip_lr(ev, SENSOR)
    np.testing.assert_array_equal(out["x"], 199 - ev["x"])
    np.testing.assert_array_equal(out[["t", "y", "p"]], ev[["t", "y", "p"]])
    np.testing.assert_array_equal(A.flip_lr(out, SENSOR), ev)  # involution


def test_background_activity_adds_20_percent_uniform_sorted():
    ev = events(10000)
    out = A.add_background_activity(ev, SENSOR, np.random.default_rng(0))
    assert len(out) == 12000
    assert np.all(np.diff(out["t"]) >= 0)
    assert out["t"].min() >= ev["t"].min() and out["t"].max() <= ev["t"].max()
    assert out["x"].max() < 200 and out["y"].max() < 200 and out["x"].min() >= 0

    # the originals are all still there
    def key(e):
        return np.sort(e["t"] * 10**8 + e["x"].astype(np.int64) * 10**5 + e["y"].astype(np.int64) * 10 + e["p"])

    orig = key(ev)
    merged = key(out)
    assert np.isin(orig, merged).all()


def test_reverse_time_and_polarity():
    ev = events(1000)
    out = A.reverse_time(ev)
    assert len(out) == len(ev)
    assert np.all(np.diff(out["t"]) >= 0)
    assert out["t"].min() == ev["t"].min() and out["t"].max() == ev["t"].max()
    np.testing.assert_array_equal(out["x"], ev["x"][::-1])
    np.testing.assert_array_equal(out["p"], 1 - ev["p"][::-1])
    # the last event becomes the first, at the start time
    assert out["t"][0] == ev["t"].min() and (out["x"][0], out["y"][0]) == (ev["x"][-1], ev["y"][-1])
    np.testing.assert_array_equal(A.reverse_time(out), ev)


def test_drop_by_time_removes_one_slice():
    ev = events(20000)
    rng = np.random.default_rng(1)
    for ratio in (0.1, 0.5, 0.9):
        out = A.drop_by_time(ev, rng, ratio)
        frac = 1 - len(out) / len(ev)
        assert abs(frac - ratio) < 0.05
        dropped = np.setdiff1d(ev["t"], out["t"])
        # the dropped timestamps form one contiguous interval of about ratio * duration
        span = ev["t"].max() - ev["t"].min()
        assert dropped.max() - dropped.min() <= ratio * span + 1
        assert not np.any((out["t"] > dropped.min()) & (out["t"] < dropped.max()))


def test_drop_by_area_removes_a_box():
    ev = events(20000)
    out = A.drop_by_area(ev, SENSOR, np.random.default_rng(2), 0.25)
    removed = ev[~np.isin(np.arange(len(ev)), np.flatnonzero(np.isin(ev, out)))]
    assert len(removed) > 0
    w = removed["x"].max() - removed["x"].min() + 1
    h = removed["y"].max() - removed["y"].min() + 1
    assert w <= 50 and h <= 50
    inside = (out["x"] >= removed["x"].min()) & (out["x"] <= removed["x"].max()) & \
             (out["y"] >= removed["y"].min()) & (out["y"] <= removed["y"].max())
    assert not inside.any()


def test_drop_random_count_exact():
    ev = events(1000)
    out = A.drop_random(ev, np.random.default_rng(3), 0.3)
    assert len(out) == 700
    assert np.all(np.diff(out["t"]) >= 0)


def test_event_drop_counts_within_ranges():
    ev = events(10000)
    rng = np.random.default_rng(4)
    fracs = [1 - len(A.event_drop(ev, SENSOR, rng)) / len(ev) for _ in range(200)]
    fracs = np.array(fracs)
    assert fracs.min() >= 0 and fracs.max() <= 0.92
    assert (fracs == 0).mean() > 0.15  # identity chosen about a quarter of the time
    assert (fracs > 0.5).any() and ((fracs > 0) & (fracs < 0.07)).any()  # small area drops happen too


def test_resized_crop_box_ranges():
    rng = np.random.default_rng(5)
    areas, ratios = [], []
    for _ in range(500):
        top, left, h, w = A.resized_crop_box(200, 200, rng)
        assert 0 <= top and top + h <= 200 and 0 <= left and left + w <= 200
        areas.append(h * w / 40000)
        ratios.append(w / h)
    assert min(areas) >= 0.07 and max(areas) <= 1.0
    assert min(ratios) >= 0.7 and max(ratios) <= 1.4


def test_crop_output_size_same_box_all_steps():
    rng = np.random.default_rng(6)
    frames = (rng.random((6, 2, 200, 200)) > 0.8).astype(np.float32)
    out = A.random_resized_crop(frames, np.random.default_rng(7), 128)
    assert out.shape == (6, 2, 128, 128) and out.dtype == np.float32
    box = A.resized_crop_box(200, 200, np.random.default_rng(7))
    np.testing.assert_array_equal(out, A.crop_resize_nearest(frames, box, 128))
    top, left, h, w = box
    # nearest: every output pixel copies one input pixel of the box, the same for every step/channel
    for t in (0, 5):
        assert out[t, 1, 0, 0] == frames[t, 1, top, left]
        assert out[t, 0, 127, 127] == frames[t, 0, top + (127 * h) // 128, left + (127 * w) // 128]


def test_resize_nearest_matches_torch():
    torch = pytest.importorskip("torch")
    frames = (np.random.default_rng(8).random((6, 2, 200, 200)) > 0.9).astype(np.float32)
    ours = A.resize_nearest(frames, 128)
    ref = torch.nn.functional.interpolate(torch.from_numpy(frames), size=(128, 128), mode="nearest").numpy()
    np.testing.assert_array_equal(ours, ref)


def test_mirror_symmetry():
    frames = np.random.default_rng(9).random((6, 2, 128, 128)).astype(np.float32)
    left = A.face_mirror(frames, keep_left=True)
    np.testing.assert_array_equal(left, left[..., ::-1])
    np.testing.assert_array_equal(left[..., :64], frames[..., :64])
    right = A.face_mirror(frames, keep_left=False)
    np.testing.assert_array_equal(right, right[..., ::-1])
    np.testing.assert_array_equal(right[..., 64:], frames[..., 64:])


def test_augmenter_seeded_and_ordered():
    ev = events(8000)
    aug = A.Augmenter("mirror,crop,event_drop,reverse,background_activity,flip", SENSOR)
    assert aug.names == A.AUGMENTATIONS and aug.needs_full_resolution
    a = aug.apply_events(ev, np.random.default_rng(10))
    b = aug.apply_events(ev, np.random.default_rng(10))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == EVENT_DTYPE
    outs = {len(aug.apply_events(ev, np.random.default_rng(s))) for s in range(20)}
    assert len(outs) > 3  # different seeds, different draws
    frames = np.zeros((6, 2, 200, 200), np.float32)
    assert aug.apply_frames(frames, np.random.default_rng(0), 128).shape == (6, 2, 128, 128)
    plain = A.Augmenter("flip", SENSOR)
    assert not plain.needs_full_resolution
    framed = plain.apply_frames(np.zeros((6, 2, 200, 200), np.float32), np.random.default_rng(0))
    assert framed.shape == (6, 2, 128, 128)


def test_augmenter_probabilities():
    ev = events(200)
    aug = A.Augmenter("flip", SENSOR)
    rng = np.random.default_rng(11)
    flipped = np.mean([not np.array_equal(aug.apply_events(ev, rng)["x"], ev["x"]) for _ in range(400)])
    assert 0.4 < flipped < 0.6
    aug = A.Augmenter("reverse", SENSOR)
    rev = np.mean([aug.apply_events(ev, rng)["x"][0] != ev["x"][0] for _ in range(400)])
    assert 0.12 < rev < 0.28


def test_augmented_dataset_frames(tmp_path):
    pytest.importorskip("fer_perception.events.representation")
    from fer_perception.data.ferdvs import FerDVSConfig, events_to_input

    ev = events(15000)
    ev["x"] = (ev["x"] % 100).astype(np.int16)  # only the left half of the sensor has events
    cfg = FerDVSConfig()
    base = events_to_input(ev, cfg)
    assert base.shape == (6, 2, 128, 128) and base[..., 64:].sum() == 0
    flip = A.Augmenter("flip", SENSOR, A.AugmentConfig(flip_p=1.0))
    flipped = events_to_input(ev, cfg, flip, np.random.default_rng(0))
    assert flipped[..., :64].sum() == 0 and flipped[..., 64:].sum() > 0
    crop = A.Augmenter("crop,mirror", SENSOR, A.AugmentConfig(mirror_p=1.0))
    out = events_to_input(ev, cfg, crop, np.random.default_rng(1))
    assert out.shape == (6, 2, 128, 128)
    np.testing.assert_array_equal(out, out[..., ::-1])


def test_window_takes_a_random_contiguous_run_and_comes_first():
    from fer_perception.data.augment import AugmentConfig, Augmenter, parse_edas, random_window

    ev = np.zeros(100, dtype=[("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
    ev["t"] = np.arange(100)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        w = random_window(ev, rng, 30)
        assert len(w) == 30 and np.all(np.diff(w["t"]) == 1)
        starts.add(int(w["t"][0]))
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 70
    assert len(random_window(ev[:10], rng, 30)) == 10
    assert parse_edas("flip,window") == ("window", "flip")
    assert "window" not in parse_edas("all")
    aug = Augmenter("window", (200, 200), AugmentConfig(window_events=40))
    assert len(aug.apply_events(ev, rng)) == 40
