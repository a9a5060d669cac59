"""Spiking-FER representation, time-binned frames and voxel grids: checked against direct re-statements of the
official rules (tonic ToFrame + TakeFrames + BinarizeFrame + nearest Resize) and against hand-placed events."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.errors import ConfigError
from fer_perception.events.batch import EventBatch
from fer_perception.events import representation as rep
from fer_perception.events.representation import (
    SpikingFerConfig,
    batch_spiking_fer_frames,
    crop_box,
    frame_event_ranges,
    spiking_fer_frames,
    time_binned_frames,
    voxel_grid,
)
from fer_perception.results import Roi


def random_batch(n, width=200, height=200, seed=0, x_range=None, y_range=None):
    rng = np.random.default_rng(seed)
    xr = x_range or (0, width)
    yr = y_range or (0, height)
    return EventBatch.from_arrays(
        rng.integers(*xr, n), rng.integers(*yr, n), np.arange(n, dtype=np.int64) * 1000,
        rng.integers(0, 2, n), width, height,
    )


def official_reference(batch: EventBatch, T=6, E=2500, size=128, sensor=200):
    """Slow, literal restatement of the official pipeline on a 200x200 sensor."""
    n = len(batch)
    if n // E >= T:
        nf = n // E
        slices = [slice(i * E, (i + 1) * E) for i in range(nf)]
        gap = int((nf - T) / 2)
        slices = slices[gap:gap + T]
    else:
        c = n // T
        slices = [slice(i * c, (i + 1) * c) for i in range(T)]
    frames = np.zeros((T, 2, sensor, sensor), np.int16)
    for i, s in enumerate(slices):
        np.add.at(frames, (i, batch.p[s].astype(int), batch.y[s].astype(int), batch.x[s].astype(int)), 1)
    idx = np.floor(np.arange(size) * sensor / size).astype(int)
    return (frames[:, :, idx][:, :, :, idx] > 0).astype(np.float32)


def one_event(x, y, p=1, width=200, height=200):
    return EventBatch.from_arrays([x], [y], [0], [p], width, height)


@pytest.mark.parametrize("n", [15000, 17499, 20000, 40000, 9000, 14999, 6, 5, 0])
def test_matches_official_pipeline_on_full_sensor(n):
    batch = random_batch(n, seed=n)
    out = spiking_fer_frames(batch)
    assert out.shape == (6, 2, 128, 128) and out.dtype == np.float32
    np.testing.assert_array_equal(out, official_reference(batch))


def test_central_frames_are_selected():
    # 10 frames of 2,500 events; frame k's events all sit on the column output pixel 10*k reads
    # (floor(10k * 200 / 128)): the central 6 are frames 2..7.
    E, nf = 2500, 10
    cols_read = np.floor(np.arange(nf) * 10 * 200 / 128).astype(int)
    x = np.repeat(cols_read, E)
    batch = EventBatch.from_arrays(x, np.full(nf * E, 40), np.arange(nf * E), np.ones(nf * E), 200, 200)
    out = spiking_fer_frames(batch)
    for t in range(6):
        cols = np.flatnonzero(out[t, 1].any(axis=0))
        j = cols[0]
        assert len(cols) == 1 and j == (t + 2) * 10
    assert frame_event_ranges(nf * E, SpikingFerConfig()) == (2 * E, 8 * E, E)
    # keep="first" / "last"
    assert frame_event_ranges(nf * E + 7, SpikingFerConfig(keep="first")) == (0, 6 * E, E)
    assert frame_event_ranges(nf * E + 7, SpikingFerConfig(keep="last")) == (4 * E + 7, nf * E + 7, E)


def test_fewer_events_make_equal_count_bins():
    # 6 * 1000 + 5 events: bins of 1000, the last 5 events are left out (tonic n_event_bins).
    n = 6005
    x = np.concatenate([np.repeat(np.arange(6) * 25, 1000), np.full(5, 190)])  # columns the resize reads
    batch = EventBatch.from_arrays(x, np.zeros(n), np.arange(n), np.zeros(n), 200, 200)
    assert frame_event_ranges(n, SpikingFerConfig()) == (0, 6000, 1000)
    out = spiking_fer_frames(batch)
    for t in range(6):
        assert out[t, 0].sum() == 1.0 and out[t, 1].sum() == 0.0
    col_190 = int(np.ceil(190 * 128 / 200))
    assert not out[:, :, :, col_190:].any()


def test_polarity_channels_off_is_0_on_is_1():
    off = spiking_fer_frames(one_event(50, 60, p=0), config=SpikingFerConfig(timesteps=1, events_per_frame=1))
    on = spiking_fer_frames(one_event(50, 60, p=1), config=SpikingFerConfig(timesteps=1, events_per_frame=1))
    assert off[0, 0].sum() == 1 and off[0, 1].sum() == 0
    assert on[0, 1].sum() == 1 and on[0, 0].sum() == 0


@pytest.mark.parametrize("x,expected_col", [
    (0, 0), (1, 1), (3, 2), (4, 3), (25, 16), (198, 127),
    (2, None), (5, None), (199, None),  # columns the 200 -> 128 nearest resize never reads
])
def test_nearest_resize_geometry_full_sensor(x, expected_col):
    cfg = SpikingFerConfig(timesteps=1, events_per_frame=1)
    out = spiking_fer_frames(one_event(x, x, p=1), config=cfg)
    if expected_col is None:  # column never read by PyTorch nearest 200 -> 128
        assert out.sum() == 0
    else:
        ys, xs = np.nonzero(out[0, 1])
        assert list(xs) == [expected_col] and list(ys) == [expected_col]


def test_roi_downscale_maps_known_pixel():
    # 400x400 face box on a 640x480 sensor: 2 sensor pixels per crop cell; cell 25 -> output pixel 16.
    roi = Roi(100, 50, 400, 400)
    cfg = SpikingFerConfig(timesteps=1, events_per_frame=1)
    for dx in (0, 1):  # both sensor pixels of the cell land on the same output pixel
        out = spiking_fer_frames(one_event(100 + 50 + dx, 50 + 50, p=1, width=640, height=480), roi, cfg)
        ys, xs = np.nonzero(out[0, 1])
        assert list(xs) == [16] and list(ys) == [16]


def test_roi_is_squared_about_its_centre():
    box = crop_box(Roi(100, 50, 200, 400))
    assert box == (0.0, 50.0, 400.0, 400.0)
    assert crop_box(Roi(100, 100, 100, 100), scale=1.5) == (75.0, 75.0, 150.0, 150.0)
    assert crop_box((10, 20, 40, 20), square=False) == (10.0, 20.0, 40.0, 20.0)
    assert crop_box(Roi(100, 100, 100, 100), shift_y=0.1) == (100.0, 110.0, 100.0, 100.0)
    out = spiking_fer_frames(one_event(50, 100, width=640, height=480), Roi(100, 50, 200, 400),
                             SpikingFerConfig(timesteps=1, events_per_frame=1))
    ys, xs = np.nonzero(out[0, 1])
    assert list(xs) == [16] and list(ys) == [16]


def test_events_outside_roi_are_excluded_before_counting():
    rng = np.random.default_rng(3)
    inside = random_batch(15000, 640, 480, seed=1, x_range=(100, 300), y_range=(100, 300))
    noise_x = rng.integers(400, 640, 15000)
    x = np.empty(30000, np.int64)
    y = np.empty(30000, np.int64)
    x[0::2], x[1::2] = inside.x, noise_x
    y[0::2], y[1::2] = inside.y, rng.integers(0, 480, 15000)
    p = np.empty(30000, np.int64)
    p[0::2], p[1::2] = inside.p, 1
    mixed = EventBatch.from_arrays(x, y, np.arange(30000), p, 640, 480)
    roi = Roi(100, 100, 200, 200)
    a = spiking_fer_frames(mixed, roi)
    b = spiking_fer_frames(inside, roi)
    np.testing.assert_array_equal(a, b)
    # A 200x200 roi is the official crop: same as the official pipeline on shifted coordinates.
    shifted = EventBatch.from_arrays(inside.x - 100, inside.y - 100, inside.t, inside.p, 200, 200)
    np.testing.assert_array_equal(b, official_reference(shifted))


def test_roi_upscale_equals_nearest_upsampling():
    # A 100x100 face: the 200 grid repeats each sensor pixel twice, then the official nearest 200 -> 128.
    batch = random_batch(15000, 320, 240, seed=5, x_range=(10, 110), y_range=(20, 120))
    out = spiking_fer_frames(batch, Roi(10, 20, 100, 100))
    frames = np.zeros((6, 2, 100, 100), np.int16)
    for i in range(6):
        s = slice(i * 2500, (i + 1) * 2500)
        np.add.at(frames, (i, batch.p[s].astype(int), batch.y[s] - 20, batch.x[s] - 10), 1)
    up = frames.repeat(2, axis=2).repeat(2, axis=3)
    idx = np.floor(np.arange(128) * 200 / 128).astype(int)
    np.testing.assert_array_equal(out, (up[:, :, idx][:, :, :, idx] > 0).astype(np.float32))


def cell_grid_reference(batch, roi, cfg):
    """Slow restatement: counts on the crop-cell grid, then the nearest gather with fancy indexing."""
    x0, y0, bw, bh = crop_box(roi, square=cfg.square_roi, scale=cfg.roi_scale)
    mx = rep._axis_map(x0, bw, batch.width, cfg.crop_size, cfg.size)
    my = rep._axis_map(y0, bh, batch.height, cfg.crop_size, cfg.size)
    cx, cy = mx.lut[batch.x], my.lut[batch.y]
    inside = (cx >= 0) & (cy >= 0)
    p, cx, cy = batch.p[inside].astype(int), cx[inside], cy[inside]
    start, _, per = frame_event_ranges(len(p), cfg)
    grid = np.zeros((cfg.timesteps, 2, my.n_cells, mx.n_cells), np.int64)
    for i in range(cfg.timesteps):
        s = slice(start + i * per, start + (i + 1) * per)
        np.add.at(grid, (i, p[s], cy[s], cx[s]), 1)
    out = grid[:, :, my.gather][:, :, :, mx.gather]
    return (out > 0).astype(np.float32) if cfg.binarize else out.astype(np.float32)


@pytest.mark.parametrize("roi", [
    Roi(37, 11, 333, 301), Roi(0, 0, 640, 480), Roi(-50, -40, 260, 250),  # downscale: one output per pixel
    Roi(30, 20, 90, 110), Roi(50, 50, 40, 40), Roi(200, 100, 150, 150),  # upscale: several outputs per pixel
])
@pytest.mark.parametrize("binarize", [True, False])
def test_direct_and_general_paths_match_the_cell_grid_reference(roi, binarize):
    batch = random_batch(20000, 640, 480, seed=7)
    cfg = SpikingFerConfig(binarize=binarize)
    fast = spiking_fer_frames(batch, roi, cfg)
    general = np.empty_like(fast)
    rep._fill_frames(general, batch, roi, cfg, force_general=True)
    reference = cell_grid_reference(batch, roi, cfg)
    np.testing.assert_array_equal(fast, reference)
    np.testing.assert_array_equal(general, reference)


def test_counts_when_not_binarized():
    x = np.array([0, 0, 0, 1, 3])
    batch = EventBatch.from_arrays(x, np.zeros(5), np.arange(5), np.ones(5), 200, 200)
    out = spiking_fer_frames(batch, config=SpikingFerConfig(timesteps=1, events_per_frame=5, binarize=False))
    assert out[0, 1, 0, 0] == 3 and out[0, 1, 0, 1] == 1 and out[0, 1, 0, 2] == 1 and out.sum() == 5
    assert spiking_fer_frames(batch, config=SpikingFerConfig(timesteps=1, events_per_frame=5)).max() == 1.0


def test_batch_of_windows_matches_single_calls():
    wins = [random_batch(15000, 346, 260, seed=s) for s in range(3)]
    rois = [Roi(10, 10, 200, 200), Roi(100, 20, 150, 180), None]
    out = batch_spiking_fer_frames(wins, rois)
    assert out.shape == (3, 6, 2, 128, 128)
    for i in range(3):
        np.testing.assert_array_equal(out[i], spiking_fer_frames(wins[i], rois[i]))
    with pytest.raises(ConfigError, match="rois"):
        batch_spiking_fer_frames(wins, rois[:2])


def test_out_argument_is_reused_and_cleared():
    out = np.full((6, 2, 128, 128), 7, np.float32)
    res = spiking_fer_frames(random_batch(15000, seed=2), out=out)
    assert res is out and set(np.unique(out)) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="shape"):
        spiking_fer_frames(random_batch(10), out=np.zeros((6, 2, 64, 64), np.float32))
    with pytest.raises(ConfigError, match="contiguous"):
        spiking_fer_frames(random_batch(10), out=np.zeros((6, 2, 128, 256), np.float32)[..., ::2])
    with pytest.raises(ConfigError, match="float32"):
        spiking_fer_frames(random_batch(10), out=np.zeros((6, 2, 128, 128), np.float64))


def test_bad_inputs_raise_config_errors():
    no_size = EventBatch.from_arrays([1], [1], [0], [1])
    with pytest.raises(ConfigError, match="sensor size"):
        spiking_fer_frames(no_size)
    with pytest.raises(ConfigError, match="positive"):
        spiking_fer_frames(random_batch(10), Roi(0, 0, 0, 10))
    with pytest.raises(ConfigError, match="keep"):
        SpikingFerConfig(keep="middle")
    with pytest.raises(ConfigError, match="timesteps"):
        SpikingFerConfig(timesteps=0)
    with pytest.raises(ConfigError, match="roi_scale"):
        SpikingFerConfig(roi_scale=-1.0)
    assert SpikingFerConfig().events_per_window == 15000


def test_time_binned_frames():
    # Events at t = 0, 50, 99, 100 ns in [0, 100]: bins of 25 ns -> 0, 2, 3, 3 (t_end goes to the last bin).
    batch = EventBatch.from_arrays([1, 2, 3, 3], [0, 0, 0, 0], [0, 50, 99, 100], [1, 0, 1, 1], 4, 2)
    f = time_binned_frames(batch, 4, 4, 2)
    assert f.shape == (4, 2, 2, 4) and f.dtype == np.float32
    assert f[0, 1, 0, 1] == 1 and f[2, 0, 0, 2] == 1 and f[3, 1, 0, 3] == 2 and f.sum() == 4
    fb = time_binned_frames(batch, 4, 4, 2, binarize=True)
    assert fb[3, 1, 0, 3] == 1
    # Explicit range: events outside it and outside the sensor are left out.
    f2 = time_binned_frames(batch, 2, 3, 2, t_start=40, t_end=99)
    assert f2.sum() == 1 and f2[0, 0, 0, 2] == 1
    with pytest.raises(ConfigError, match="n_bins"):
        time_binned_frames(batch, 0, 4, 2)


def test_voxel_grid_bilinear_in_time():
    # 3 bins over [0, 100]: tau = 2 * t / 100. ON at t=25 (tau 0.5) -> 0.5/0.5 in bins 0/1;
    # OFF at t=100 (tau 2) -> -1 in bin 2; ON at t=0 -> +1 in bin 0.
    batch = EventBatch.from_arrays([0, 1, 2], [0, 0, 1], [25, 100, 0], [1, 0, 1], 3, 2)
    v = voxel_grid(batch, 3, 3, 2, t_start=0, t_end=100)
    assert v.shape == (3, 2, 3)
    assert v[0, 0, 0] == pytest.approx(0.5) and v[1, 0, 0] == pytest.approx(0.5)
    assert v[2, 0, 1] == pytest.approx(-1.0) and v[0, 1, 2] == pytest.approx(1.0)
    big = random_batch(5000, 64, 48, seed=4)
    vg = voxel_grid(big, 5, 64, 48)
    assert vg.sum() == pytest.approx(float((big.p.astype(int) * 2 - 1).sum()), abs=1e-3)
    assert not voxel_grid(EventBatch.empty(), 2, 4, 4).any()


def test_resize_matches_pytorch_nearest_interpolation():
    """torchvision Resize(NEAREST) on tensors is F.interpolate(mode="nearest"): same pixels as ours."""
    torch = pytest.importorskip("torch")
    batch = random_batch(15000, seed=12)
    frames = np.zeros((6, 2, 200, 200), np.float32)
    for i in range(6):
        s = slice(i * 2500, (i + 1) * 2500)
        frames[i, batch.p[s].astype(int), batch.y[s].astype(int), batch.x[s].astype(int)] = 1.0
    ref = torch.nn.functional.interpolate(torch.from_numpy(frames), size=(128, 128), mode="nearest").numpy()
    np.testing.assert_array_equal(spiking_fer_frames(batch), ref)


def test_events_beyond_the_declared_sensor_size():
    # A batch claiming 100x100 with an event at x=150: the tables grow to cover it (no IndexError).
    batch = EventBatch.from_arrays([10, 150], [10, 20], [0, 1], [1, 1], 100, 100)
    cfg = SpikingFerConfig(timesteps=1, events_per_frame=2)
    out = spiking_fer_frames(batch, Roi(0, 0, 200, 200), cfg)
    expected = spiking_fer_frames(EventBatch.from_arrays([10, 150], [10, 20], [0, 1], [1, 1], 300, 300),
                                  Roi(0, 0, 200, 200), cfg)
    np.testing.assert_array_equal(out, expected)
    assert out.sum() == 2
