"""Noise filters: exact equality with event-by-event reference loops across batch splits, and what they remove."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.errors import ConfigError
from fer_perception.events.batch import EventBatch
from fer_perception.events.denoise import BackgroundActivityFilter, HotPixelMask, RefractoryFilter


def reference_baf(batch, width, height, dt, radius, include_self=False):
    """Event-by-event classic BA filter (the definition)."""
    last = np.full((height, width), -(10**18), np.int64)
    keep = np.zeros(len(batch), bool)
    for i in range(len(batch)):
        x, y, t = int(batch.x[i]), int(batch.y[i]), int(batch.t[i])
        y0, y1 = max(0, y - radius), min(height, y + radius + 1)
        x0, x1 = max(0, x - radius), min(width, x + radius + 1)
        nb = last[y0:y1, x0:x1].copy()
        if not include_self:
            nb[y - y0, x - x0] = -(10**18)
        keep[i] = nb.max() >= t - dt
        last[y, x] = t
    return keep


def reference_refractory(batch, width, height, refractory):
    last = np.full((height, width), -(10**18), np.int64)
    keep = np.zeros(len(batch), bool)
    for i in range(len(batch)):
        x, y, t = int(batch.x[i]), int(batch.y[i]), int(batch.t[i])
        keep[i] = t - last[y, x] >= refractory
        last[y, x] = t
    return keep


def dense_random(n, width, height, seed, t_step=300):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(0, t_step, n))
    return EventBatch.from_arrays(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n),
                                  width, height)


def split(batch, rng):
    cuts = np.sort(rng.choice(np.arange(1, len(batch)), size=6, replace=False))
    bounds = [0, *cuts.tolist(), len(batch)]
    return [batch.select(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("radius,include_self", [(1, False), (2, False), (1, True)])
def test_baf_equals_event_by_event_definition_across_batches(radius, include_self):
    w, h = 12, 9
    batch = dense_random(3000, w, h, seed=radius)
    # Same timestamps for some events: ties must behave as in the sequential definition.
    t = batch.t.copy()
    t[100:110] = t[100]
    batch = EventBatch(batch.x, batch.y, t, batch.p, w, h)
    expected = reference_baf(batch, w, h, dt=2000, radius=radius, include_self=include_self)
    f = BackgroundActivityFilter(w, h, dt_ns=2000, radius=radius, include_self=include_self)
    got = np.concatenate([f.mask(b) for b in split(batch, np.random.default_rng(0))])
    np.testing.assert_array_equal(got, expected)
    assert 0.05 < expected.mean() < 0.95  # the data exercises both outcomes
    assert f.seen_events == 3000 and f.passed_events == int(expected.sum())
    one = BackgroundActivityFilter(w, h, dt_ns=2000, radius=radius, include_self=include_self)
    np.testing.assert_array_equal(one.mask(batch), expected)


def test_baf_exact_with_timestamps_out_of_order():
    w, h = 10, 8
    batch = dense_random(2000, w, h, seed=9)
    rng = np.random.default_rng(2)
    t = batch.t.copy()
    swap = rng.choice(len(t) - 1, 200, replace=False)
    t[swap], t[swap + 1] = t[swap + 1], t[swap].copy()  # local disorder, as from merged sources
    batch = EventBatch(batch.x, batch.y, t, batch.p, w, h)
    expected = reference_baf(batch, w, h, dt=1500, radius=1)
    f = BackgroundActivityFilter(w, h, dt_ns=1500)
    got = np.concatenate([f.mask(b) for b in split(batch, rng)])
    np.testing.assert_array_equal(got, expected)


def test_baf_removes_isolated_noise_and_keeps_a_moving_edge():
    w, h = 128, 96
    rng = np.random.default_rng(1)
    # A vertical edge sweeping right at 1 px / 100 us: each column fires along the whole edge.
    cols = np.repeat(np.arange(20, 100), 60)
    rows = np.tile(np.arange(18, 78), 80)
    t_edge = (cols - 20) * 100_000 + rng.integers(0, 100_000, cols.size)
    # Uniform background noise: 2,000 events over 8 ms on 12k pixels (isolated).
    n_noise = 2000
    xn, yn = rng.integers(0, w, n_noise), rng.integers(0, h, n_noise)
    tn = rng.integers(0, 8_000_000, n_noise)
    x = np.concatenate([cols, xn])
    y = np.concatenate([rows, yn])
    t = np.concatenate([t_edge, tn])
    is_noise = np.concatenate([np.zeros(cols.size, bool), np.ones(n_noise, bool)])
    order = np.argsort(t, kind="stable")
    batch = EventBatch.from_arrays(x[order], y[order], t[order], np.ones(len(t)), w, h)
    is_noise = is_noise[order]
    f = BackgroundActivityFilter(w, h, dt_ns=200_000)
    keep = np.concatenate([f.mask(b) for b in split(batch, rng)])
    assert keep[~is_noise].mean() > 0.95
    assert keep[is_noise].mean() < 0.15
    out = BackgroundActivityFilter(w, h, dt_ns=200_000)(batch)
    assert len(out) == int(np.count_nonzero(BackgroundActivityFilter(w, h, dt_ns=200_000).mask(batch)))


def test_baf_rejects_bad_config_and_out_of_sensor_events():
    with pytest.raises(ConfigError, match="dt_ns"):
        BackgroundActivityFilter(10, 10, dt_ns=0)
    with pytest.raises(ConfigError, match="radius"):
        BackgroundActivityFilter(10, 10, radius=0)
    with pytest.raises(ConfigError, match="width and height"):
        BackgroundActivityFilter(0, 10)
    f = BackgroundActivityFilter(10, 10)
    with pytest.raises(ConfigError, match="outside"):
        f.mask(EventBatch.from_arrays([10], [0], [0], [1]))
    assert f.mask(EventBatch.empty()).shape == (0,)


def test_refractory_equals_definition_and_cuts_bursts():
    w, h = 6, 5
    batch = dense_random(2000, w, h, seed=3, t_step=200)
    expected = reference_refractory(batch, w, h, 3000)
    f = RefractoryFilter(w, h, refractory_ns=3000)
    got = np.concatenate([f.mask(b) for b in split(batch, np.random.default_rng(1))])
    np.testing.assert_array_equal(got, expected)
    assert 0.05 < expected.mean() < 0.95
    # A burst every 100 ns never rests 500 ns (every event restarts the period); a later event passes.
    burst = EventBatch.from_arrays([2] * 11, [2] * 11, [*range(0, 1000, 100), 2000], [1] * 11, w, h)
    assert RefractoryFilter(w, h, 500)(burst).t.tolist() == [0, 2000]


def test_hot_pixel_mask():
    w, h = 32, 32
    rng = np.random.default_rng(4)
    n = 5000
    x = rng.integers(0, w, n)
    y = rng.integers(0, h, n)
    x[:1500], y[:1500] = 7, 9  # a hot pixel
    batch = EventBatch.from_arrays(x, y, np.arange(n), np.ones(n), w, h)
    m = HotPixelMask(w, h, factor=10)
    hot = m.learn(batch)
    assert hot.tolist() == [[7, 9]]
    kept = m(batch)
    assert len(kept) == n - int(np.count_nonzero((x == 7) & (y == 9)))
    with pytest.raises(ConfigError, match="factor"):
        HotPixelMask(w, h, factor=1)
