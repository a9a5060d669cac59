"""EventBuffer and FaceEventBuffers: FIFO order, window sizes and strides, drop counting, routing, memory bound."""

from __future__ import annotations

import tracemalloc
from collections import deque

import numpy as np
import pytest

from fer_perception.errors import ConfigError
from fer_perception.events.batch import EventBatch
from fer_perception.events.buffer import SENSOR_FACE_ID, EventBuffer, FaceEventBuffers
from fer_perception.events.representation import SpikingFerConfig, spiking_fer_frames
from fer_perception.results import Roi


def seq_batch(start, n, width=64, height=48, dt=1000, seed=None):
    """Events numbered start..start+n-1: x carries the low bits of the number, t = number * dt."""
    k = np.arange(start, start + n, dtype=np.int64)
    rng = np.random.default_rng(seed if seed is not None else start)
    return EventBatch.from_arrays(k % width, rng.integers(0, height, n), k * dt, k % 2, width, height)


def ids(batch, dt=1000):
    return (batch.t // dt).tolist()


def test_fifo_windows_back_to_back():
    buf = EventBuffer(100)
    buf.append(seq_batch(0, 25))
    assert buf.take_window(30) is None
    buf.append(seq_batch(25, 40))
    w1 = buf.take_window(30)
    assert ids(w1) == list(range(30)) and len(buf) == 35
    w2 = buf.take_window(30)
    assert ids(w2) == list(range(30, 60))
    assert buf.take_window(30) is None and len(buf) == 5
    assert buf.dropped_events == 0 and buf.consumed_events == 60 and buf.windows_taken == 2
    assert w1.width == 64 and w1.height == 48 and w1.stamp_ns == 29 * 1000


def test_overlapping_and_skipping_strides():
    buf = EventBuffer(1000)
    buf.append(seq_batch(0, 100))
    assert buf.windows_ready(40, 20) == 4
    wins = [buf.take_window(40, 20) for _ in range(4)]
    assert [ids(w)[0] for w in wins] == [0, 20, 40, 60]
    assert ids(wins[1])[:20] == ids(wins[0])[20:]  # hop of 20: 20 events shared
    assert buf.take_window(40, 20) is None and len(buf) == 20
    buf2 = EventBuffer(1000)
    buf2.append(seq_batch(0, 100))
    a, b = buf2.take_window(30, 50), buf2.take_window(30, 50)
    assert ids(a) == list(range(30)) and ids(b) == list(range(50, 80))
    assert buf2.skipped_events == 40 and buf2.dropped_events == 0
    with pytest.raises(ConfigError, match="stride"):
        buf2.take_window(10, 0)
    with pytest.raises(ConfigError, match="events_per_window"):
        buf2.take_window(0)


def test_capacity_drops_oldest_and_counts():
    buf = EventBuffer(50)
    buf.append(seq_batch(0, 40))
    buf.append(seq_batch(40, 30))
    assert len(buf) == 50 and buf.dropped_by_reason["capacity_events"] == 20
    assert ids(buf.events()) == list(range(20, 70))
    buf.append(seq_batch(70, 120))  # a batch larger than the whole buffer
    assert ids(buf.events()) == list(range(140, 190))
    assert buf.dropped_events == 20 + 50 + 70 and buf.appended_events == 190
    assert ids(buf.peek_latest(3)) == [187, 188, 189] and len(buf) == 50


def test_time_span_limit_drops_old_events():
    buf = EventBuffer(10_000, capacity_ns=50_000)  # 50 events at 1 us spacing
    buf.append(seq_batch(0, 30))
    buf.append(seq_batch(30, 60))
    ev = ids(buf.events())
    assert ev[0] == 89 - 50 and ev[-1] == 89 and buf.span_ns <= 50_000
    assert buf.dropped_by_reason["capacity_time"] == 39
    assert buf.expire(200_000) == len(ev) and len(buf) == 0
    assert buf.dropped_by_reason["capacity_time"] == 39 + len(ev)


def test_latest_only_skips_stale_windows():
    buf = EventBuffer(1000)
    buf.append(seq_batch(0, 95))
    w = buf.take_window(20, latest_only=True)
    assert ids(w) == list(range(60, 80))
    assert buf.dropped_by_reason["stale"] == 60 and len(buf) == 15


def test_ring_matches_reference_model_under_random_use():
    rng = np.random.default_rng(11)
    buf = EventBuffer(257, capacity_ns=180_000)
    model: deque = deque()
    dropped = 0
    nxt = 0
    for _ in range(400):
        if rng.random() < 0.6:
            n = int(rng.integers(0, 300))
            if rng.random() < 0.5:
                buf.append(seq_batch(nxt, n))
                model.extend(range(nxt, nxt + n))
            else:  # append a subset by index (how FaceEventBuffers routes)
                idx = np.flatnonzero(rng.random(n) < 0.7)
                buf.append(seq_batch(nxt, n), idx)
                model.extend((nxt + idx).tolist())
            nxt += n
            while len(model) > 257:
                model.popleft()
                dropped += 1
            if model:
                newest = model[-1]
                while model and (model[0] * 1000) < newest * 1000 - 180_000:
                    model.popleft()
                    dropped += 1
        else:
            n, stride = int(rng.integers(1, 100)), int(rng.integers(1, 120))
            w = buf.take_window(n, stride)
            if len(model) < n:
                assert w is None
            else:
                assert ids(w) == list(model)[:n]
                for _ in range(min(stride, len(model))):
                    model.popleft()
        assert ids(buf.events()) == list(model)
        assert buf.dropped_events == dropped


def face_batch(rng, n, width=640, height=480, t0=0):
    return EventBatch.from_arrays(
        rng.integers(0, width, n), rng.integers(0, height, n), t0 + np.arange(n), rng.integers(0, 2, n),
        width, height,
    )


def test_face_routing_overlap_and_lifecycle():
    fb = FaceEventBuffers(capacity_events=10_000, capacity_ns=None, square_roi=False)
    fb.update_faces({"a": Roi(0, 0, 100, 100), "b": Roi(50, 50, 100, 100)})
    assert fb.face_ids == ["a", "b"]
    batch = EventBatch.from_arrays([10, 75, 120, 300], [10, 75, 120, 300], [1, 2, 3, 4], [1, 1, 0, 0], 640, 480)
    fb.append(batch)
    assert ids(fb.buffer("a").events(), 1) == [1, 2]  # (75, 75) lies in both faces
    assert ids(fb.buffer("b").events(), 1) == [2, 3]
    assert fb.unrouted_events == 1
    fb.update_faces({"b": Roi(60, 60, 100, 100), "c": Roi(200, 200, 150, 150)})
    assert fb.face_ids == ["b", "c"] and fb.freed_events == 2
    assert fb.roi("b") == Roi(60, 60, 100, 100) and len(fb.buffer("b")) == 2  # kept its events
    with pytest.raises(ConfigError, match="empty size"):
        fb.update_faces({"d": Roi(0, 0, 0, 5)})


def test_face_routing_uses_the_square_crop_region():
    fb = FaceEventBuffers(capacity_events=1000, capacity_ns=None)  # square_roi=True like SpikingFerConfig
    fb.update_faces({"f": Roi(100, 50, 200, 400)})  # square crop x in [0, 400)
    fb.append(EventBatch.from_arrays([20, 390, 420], [100, 100, 100], [0, 1, 2], [1, 1, 1], 640, 480))
    assert ids(fb.buffer("f").events(), 1) == [0, 1]


def test_sensor_fallback_when_no_faces():
    fb = FaceEventBuffers(capacity_events=1000, capacity_ns=None)
    assert fb.face_ids == [SENSOR_FACE_ID]
    rng = np.random.default_rng(0)
    fb.append(face_batch(rng, 700))
    assert fb.roi(SENSOR_FACE_ID) == Roi(0, 0, 640, 480) and len(fb.buffer(SENSOR_FACE_ID)) == 700
    fb.update_faces({"x": Roi(0, 0, 10, 10)})
    assert fb.face_ids == ["x"]
    fb.update_faces({})
    assert fb.face_ids == [SENSOR_FACE_ID]
    fixed = FaceEventBuffers(capacity_events=1000, event_only_roi=Roi(100, 100, 50, 50))
    fixed.append(EventBatch.from_arrays([99, 100, 149, 150], [120] * 4, [0, 1, 2, 3], [1] * 4, 640, 480))
    assert ids(fixed.buffer(SENSOR_FACE_ID).events(), 1) == [1, 2]
    off = FaceEventBuffers(capacity_events=1000, fallback=False)
    off.append(face_batch(rng, 10))
    assert off.face_ids == [] and off.unrouted_events == 10 and off.ready_windows(5) == []


def test_ready_windows_per_face_and_representation():
    rng = np.random.default_rng(1)
    fb = FaceEventBuffers(capacity_events=60_000, capacity_ns=None, square_roi=False)
    fb.update_faces({"a": Roi(0, 0, 320, 480), "b": Roi(320, 0, 320, 480)})
    for k in range(8):
        fb.append(face_batch(rng, 10_000, t0=k * 10_000))
    held = {fid: len(fb.buffer(fid)) for fid in fb.face_ids}
    assert sum(held.values()) == 80_000 and fb.dropped_events == 0
    wins = fb.ready_windows(15_000, 7_500)
    for fid in ("a", "b"):
        assert sum(1 for f, _, _ in wins if f == fid) == 1 + (held[fid] - 15_000) // 7_500
    assert [f for f, _, _ in wins] == sorted(f for f, _, _ in wins)  # faces in order, windows oldest first
    for fid, roi, w in wins:
        assert len(w) == 15_000 and roi == fb.roi(fid)
        assert np.all(np.diff(w.t) >= 0)
    fid, roi, w = wins[0]
    frames = spiking_fer_frames(w, roi, SpikingFerConfig())
    assert frames.shape == (6, 2, 128, 128) and frames.any()
    with pytest.raises(ConfigError, match="capacity"):
        fb.ready_windows(70_000)


def test_memory_stays_bounded_under_a_10M_event_flood():
    rng = np.random.default_rng(2)
    cap = 60_000
    fb = FaceEventBuffers(capacity_events=cap, capacity_ns=2_000_000_000)
    fb.update_faces({"a": Roi(0, 0, 400, 400), "b": Roi(300, 200, 300, 280)})
    nbytes = fb.nbytes
    assert nbytes == 2 * cap * 13
    per, total = 200_000, 10_000_000
    xs = rng.integers(0, 640, per).astype(np.uint16)
    ys = rng.integers(0, 480, per).astype(np.uint16)
    ps = rng.integers(0, 2, per).astype(np.uint8)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = 0
    windows = 0
    for _ in range(total // per):
        t = t0 + np.arange(per, dtype=np.int64) * 100  # 10 Mev/s stream
        t0 = int(t[-1]) + 100
        fb.append(EventBatch(xs, ys, t, ps, 640, 480))
        if _ % 10 == 0:  # a slow consumer: most events must be dropped
            windows += len(fb.ready_windows(15_000, latest_only=True))
    del t
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert current - base < 1_000_000  # nothing accumulates
    assert peak - base < 12_000_000  # one batch's masks and copies, not the stream
    assert fb.nbytes == nbytes
    for fid in fb.face_ids:
        assert len(fb.buffer(fid)) <= cap
    st = fb.stats()
    routed = sum(fb.buffer(f).appended_events for f in fb.face_ids)
    assert routed + st["unrouted_events"] >= total  # overlapping faces both get the shared events
    assert st["dropped_capacity_events"] + st["dropped_stale"] > 0.9 * routed
    assert windows == 2 * (total // per // 10)  # latest_only: one window per face per call
    # Every routed event is accounted for: buffered, consumed in windows, or dropped.
    consumed = sum(fb.buffer(f).consumed_events for f in fb.face_ids)
    assert routed == fb.buffered_events + consumed + fb.dropped_events


def test_box_mask_matches_plain_comparisons():
    from fer_perception.events.buffer import _in_box

    rng = np.random.default_rng(5)
    x = rng.integers(0, 0x10000, 5000).astype(np.uint16)
    y = rng.integers(0, 0x10000, 5000).astype(np.uint16)
    x[:4], y[:4] = [0, 0xFFFF, 10, 11], [0, 0xFFFF, 20, 21]
    for b in [(10, 12, 20, 22), (-5, 100, -3, 70000), (0, 0x10000, 0, 0x10000), (60000, 70000, 0, 5),
              (5, 5, 0, 10), (0xFFFF, 0x10000, 0xFFFF, 0x10000)]:
        x0, x1, y0, y1 = b
        plain = (x.astype(int) >= x0) & (x.astype(int) < x1) & (y.astype(int) >= y0) & (y.astype(int) < y1)
        np.testing.assert_array_equal(_in_box(x, y, b), plain)
        np.testing.assert_array_equal(_in_box(x.astype(np.int64), y.astype(np.int64), b), plain)


def test_deferred_routing_gives_the_same_windows():
    rng = np.random.default_rng(8)
    now = FaceEventBuffers(capacity_events=20_000, capacity_ns=50_000_000, square_roi=False)
    later = FaceEventBuffers(capacity_events=20_000, capacity_ns=50_000_000, square_roi=False, defer_events=5_000)
    got_now, got_later = [], []
    t0 = 0
    for step in range(300):
        r = rng.random()
        if r < 0.7:
            b = face_batch(rng, int(rng.integers(0, 1500)), t0=t0)
            t0 += 1500
            now.append(b)
            later.append(b)
            assert later.pending_events < 5_000 + 1500
        elif r < 0.8:
            faces = {f"f{k}": Roi(int(rng.integers(0, 500)), int(rng.integers(0, 400)), 140, 120)
                     for k in rng.choice(5, size=int(rng.integers(0, 3)), replace=False)}
            now.update_faces(faces)
            later.update_faces(faces)
        else:
            got_now += now.ready_windows(3000, 2000)
            got_later += later.ready_windows(3000, 2000)
    assert len(got_now) > 20 and len(got_now) == len(got_later)
    for (fa, ra, wa), (fb_, rb, wb) in zip(got_now, got_later):
        assert fa == fb_ and ra == rb
        np.testing.assert_array_equal(wa.t, wb.t)
        np.testing.assert_array_equal(wa.x, wb.x)
    assert now.stats() == later.stats()


def test_append_and_poll_from_two_threads():
    import threading

    fb = FaceEventBuffers(capacity_events=400_000, capacity_ns=None, defer_events=4_000)  # never full
    fb.update_faces({"a": Roi(0, 0, 640, 480)})
    rng = np.random.default_rng(9)
    batches = [face_batch(rng, 1000, t0=k * 1000) for k in range(300)]
    taken = []
    done = threading.Event()

    def producer():
        for b in batches:
            fb.append(b)
        done.set()

    th = threading.Thread(target=producer)
    th.start()
    while not done.is_set():
        taken += fb.ready_windows(5000)
    th.join()
    taken += fb.ready_windows(5000)
    assert len(taken) == 60 and fb.dropped_events == 0
    t = np.concatenate([w.t for _, _, w in taken])
    np.testing.assert_array_equal(t, np.arange(300_000))


@pytest.mark.parametrize("roi,scale,shift", [(Roi(100, 50, 151, 97), 1.0, 0.0), (Roi(-20, 300, 230, 240), 1.3, 0.1),
                                             (Roi(10, 10, 33, 61), 0.8, -0.05)])
def test_routing_region_is_the_representation_crop(roi, scale, shift):
    from fer_perception.events.representation import _axis_map, crop_box

    w, h = 640, 480
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    n = w * h
    every_pixel = EventBatch.from_arrays(gx.ravel(), gy.ravel(), np.arange(n), np.ones(n), w, h)
    fb = FaceEventBuffers(capacity_events=n, capacity_ns=None, roi_scale=scale, roi_shift_y=shift)
    fb.update_faces({"f": roi})
    fb.append(every_pixel)
    routed = fb.buffer("f").events()
    x0, y0, bw, bh = crop_box(roi, square=True, scale=scale, shift_y=shift)
    inside = (_axis_map(x0, bw, w, 200, 128).lut[every_pixel.x] >= 0) & (
        _axis_map(y0, bh, h, 200, 128).lut[every_pixel.y] >= 0)
    np.testing.assert_array_equal(routed.t, every_pixel.t[inside])


def test_unchanged_faces_keep_events_queued():
    fb = FaceEventBuffers(capacity_events=10_000, capacity_ns=None, defer_events=5_000)
    faces = {"a": Roi(0, 0, 100, 100)}
    fb.update_faces(faces)
    fb.append(face_batch(np.random.default_rng(0), 1000))
    fb.update_faces(dict(faces))
    assert fb.pending_events == 1000
    fb.update_faces({"a": Roi(0, 0, 120, 100)})
    assert fb.pending_events == 0


def test_end_to_end_from_message_bytes():
    """CDR bytes -> decode -> face buffer -> Spiking-FER tensor equals the tensor of the same events direct."""
    cdr = pytest.importorskip("fer_perception.events.cdr")
    rng = np.random.default_rng(12)
    face = Roi(100, 50, 200, 200)
    n = 40_000
    t = 1_000_000_000 + np.arange(n, dtype=np.int64) * 1000
    batch = EventBatch.from_arrays(rng.integers(0, 346, n), rng.integers(0, 260, n), t, rng.integers(0, 2, n),
                                   346, 260)
    fb = FaceEventBuffers(capacity_events=60_000, capacity_ns=None)
    fb.update_faces({"f": face})
    for k in range(0, n, 1000):
        part = batch.select(slice(k, k + 1000))
        part = EventBatch(part.x, part.y, part.t, part.p, 346, 260, int(part.t[-1]), "dvs")
        fb.append(cdr.decode_event_array(cdr.encode_event_array(part)))
    windows = fb.ready_windows(15_000)
    inside = (batch.x >= 100) & (batch.x < 300) & (batch.y >= 50) & (batch.y < 250)
    face_events = batch.select(inside)
    assert len(windows) == len(face_events) // 15_000 >= 1
    for i, (_, roi, w) in enumerate(windows):
        direct = face_events.select(slice(i * 15_000, (i + 1) * 15_000))
        np.testing.assert_array_equal(w.t, direct.t)
        assert w.frame_id == "dvs"
        np.testing.assert_array_equal(spiking_fer_frames(w, roi), spiking_fer_frames(direct, face))


def test_face_mask_matches_plain_comparisons():
    from fer_perception.events.buffer import _Face

    rng = np.random.default_rng(6)
    x = rng.integers(0, 0x10000, 5000).astype(np.uint16)
    y = rng.integers(0, 0x10000, 5000).astype(np.uint16)
    x[:3], y[:3] = [0, 0xFFFF, 0xFFFE], [0, 0xFFFF, 0xFFFE]
    for b in [(10, 12, 20, 22), (-5, 100, -3, 70000), (0, 0x10000, 0, 0x10000), (60000, 70000, 0, 5),
              (5, 5, 0, 10), (0xFFFF, 0x10000, 0xFFFF, 0x10000), (0, 0xFFFF, 1, 0x10000), (-9, -1, 0, 9)]:
        face = _Face(Roi(0, 0, 1, 1), b, EventBuffer(1))
        face.set_bounds(b)
        x0, x1, y0, y1 = b
        plain = (x.astype(int) >= x0) & (x.astype(int) < x1) & (y.astype(int) >= y0) & (y.astype(int) < y1)
        np.testing.assert_array_equal(face.mask(x, y), plain)
        np.testing.assert_array_equal(face.mask(x.astype(np.int64), y.astype(np.int64)), plain)
