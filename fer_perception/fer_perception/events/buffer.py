"""Bounded event buffers: one FIFO ring per face region, emitting fixed-count windows for Spiking-FER.

``EventBuffer`` keeps events in preallocated numpy ring storage (x, y, t, p), so memory is fixed at
construction (``capacity_events * 13`` bytes) whatever the input rate. When an append would exceed a limit the
OLDEST events go first and are counted per reason:

* ``"capacity_events"``: more events than ``capacity_events``;
* ``"capacity_time"``: events older than ``capacity_ns`` before the newest event (or before ``now_ns`` given to
  :meth:`EventBuffer.expire`), so a quiet face never mixes stale motion into its next window;
* ``"stale"``: complete windows skipped because ``latest_only`` asked for the newest window only.

Window policy (documented contract used by the pipeline): windows are cut by event count, in arrival order.
``take_window(n, stride)`` returns the OLDEST ``n`` buffered events and then consumes ``stride`` events
(default ``n``): ``stride == n`` gives back-to-back windows, ``stride < n`` overlapping windows (a hop of
``stride`` events; the next window shares ``n - stride`` events with this one), ``stride > n`` leaves
``stride - n`` events out between windows (counted in ``skipped_events``, not as drops). Offline replay takes
every window; a live node passes ``latest_only=True`` to jump to the newest complete window when it lags.
Spiking-FER uses ``n = 6 * 2500 = 15000`` events per face per window.

The time-span limit assumes timestamps that do not go backwards (DVS drivers deliver them so); with
unordered timestamps it drops the prefix older than the cutoff as found by binary search, an approximation.

``FaceEventBuffers`` holds one ``EventBuffer`` per face id with that face's ``Roi`` on the event sensor.
``append(batch)`` routes each event to every face whose region contains it (vectorised masks; overlapping
faces each get a copy). A face's region is its box squared and scaled like the Spiking-FER crop
(``square_roi``/``roi_scale``/``roi_shift_y``, see :mod:`fer_perception.events.representation`), so every
event the crop can use reaches the buffer. With no face boxes known it falls back to event-only mode: one
region called ``"sensor"`` (a fixed ROI, or the whole sensor) routed as is; for that region pass ``roi=None`` to
``spiking_fer_frames`` to stretch the whole sensor onto the 200 grid, or its Roi to keep proportions (a
non-square sensor is then padded with empty bands, as the crop is squared).

Typical use (one face, Spiking-FER windows of 15,000 events, no overlap)::

    faces = FaceEventBuffers(capacity_events=60_000, capacity_ns=2_000_000_000)
    faces.update_faces({"3": Roi(120, 40, 160, 160)})        # from the tracker, mapped to the sensor
    faces.append(decode_event_array(msg_bytes))              # per message
    for face_id, roi, window in faces.ready_windows(15_000):
        tensor = spiking_fer_frames(window, roi)             # (6, 2, 128, 128) float32
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from fer_perception.errors import ConfigError
from fer_perception.events.batch import EventBatch
from fer_perception.events.representation import crop_box, crop_pixel_bounds
from fer_perception.results import Roi

#: Face id of the region used when no face boxes are known (event-only mode).
SENSOR_FACE_ID = "sensor"

DROP_REASONS = ("capacity_events", "capacity_time", "stale")


class EventBuffer:
    """Bounded FIFO of events in preallocated ring storage.

    Args:
        capacity_events: most events held at once (> 0).
        capacity_ns: longest time span held, newest event minus oldest (``None`` or 0: no time limit).
    """

    def __init__(self, capacity_events: int, capacity_ns: Optional[int] = None) -> None:
        if int(capacity_events) <= 0:
            raise ConfigError(f"EventBuffer capacity_events must be positive, got {capacity_events!r}")
        if capacity_ns is not None and int(capacity_ns) < 0:
            raise ConfigError(f"EventBuffer capacity_ns must be >= 0 or None, got {capacity_ns!r}")
        self.capacity_events = int(capacity_events)
        self.capacity_ns = int(capacity_ns) if capacity_ns else 0
        cap = self.capacity_events
        self._x = np.empty(cap, np.uint16)
        self._y = np.empty(cap, np.uint16)
        self._t = np.empty(cap, np.int64)
        self._p = np.empty(cap, np.uint8)
        self._start = 0
        self._count = 0
        self.dropped_by_reason: Dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.appended_events = 0
        self.consumed_events = 0
        self.skipped_events = 0
        self.windows_taken = 0
        self.width = 0
        self.height = 0
        self.frame_id = ""
        self.last_stamp_ns = 0
        self._newest_t: Optional[int] = None

    # -- state -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def dropped_events(self) -> int:
        """All events dropped so far (sum over ``dropped_by_reason``)."""
        return sum(self.dropped_by_reason.values())

    @property
    def nbytes(self) -> int:
        """Bytes of ring storage (fixed at construction)."""
        return self._x.nbytes + self._y.nbytes + self._t.nbytes + self._p.nbytes

    @property
    def span_ns(self) -> int:
        """Time from the oldest to the newest buffered event."""
        if self._count == 0:
            return 0
        return int(self._t[(self._start + self._count - 1) % self.capacity_events] - self._t[self._start])

    def clear(self) -> None:
        """Forget the buffered events (not counted as drops)."""
        self._start = 0
        self._count = 0

    # -- ring helpers --------------------------------------------------------------------------------------
    def _segments(self, offset: int, n: int) -> List[Tuple[int, int]]:
        """Physical index ranges of logical events ``[offset, offset + n)``."""
        cap = self.capacity_events
        a = (self._start + offset) % cap
        first = min(n, cap - a)
        segs = [(a, a + first)]
        if n > first:
            segs.append((0, n - first))
        return segs

    def _discard(self, n: int, reason: Optional[str]) -> None:
        n = min(int(n), self._count)
        if n <= 0:
            return
        self._start = (self._start + n) % self.capacity_events
        self._count -= n
        if reason is not None:
            self.dropped_by_reason[reason] += n

    def _count_older_than(self, cutoff: int) -> int:
        """Buffered events (from the oldest) with ``t < cutoff``, by binary search per ring segment."""
        if self._count == 0 or int(self._t[self._start]) >= cutoff:
            return 0
        total = 0
        for a, b in self._segments(0, self._count):
            seg = self._t[a:b]
            k = int(np.searchsorted(seg, cutoff, side="left"))
            total += k
            if k < len(seg):
                break
        return total

    # -- public API ------------------------------------------------------------------------------------------
    def append(self, batch: EventBatch, index: Optional[np.ndarray] = None) -> None:
        """Add events (in arrival order); drops the oldest beyond the capacities and counts them.

        ``index`` (increasing integer positions) appends only those events of ``batch``, copied straight
        into the ring (no intermediate batch).
        """
        if batch.width:
            self.width, self.height = int(batch.width), int(batch.height)
        if batch.frame_id:
            self.frame_id = batch.frame_id
        if batch.stamp_ns:
            self.last_stamp_ns = int(batch.stamp_ns)
        n = len(batch) if index is None else len(index)
        if n == 0:
            return
        self.appended_events += n
        cap = self.capacity_events
        src = 0
        if n > cap:  # the batch alone overflows: its own oldest events go first
            src = n - cap
            self.dropped_by_reason["capacity_events"] += src
            n = cap
        overflow = self._count + n - cap
        if overflow > 0:
            self._discard(overflow, "capacity_events")
        a = (self._start + self._count) % cap
        first = min(n, cap - a)
        self._write(batch, index, src, a, first)
        if n > first:  # wraps around the end of the ring
            self._write(batch, index, src + first, 0, n - first)
        self._count += n
        newest = int(self._t[(self._start + self._count - 1) % cap])
        self._newest_t = newest if self._newest_t is None else max(self._newest_t, newest)
        if self.capacity_ns:
            self.expire(self._newest_t)

    def _write(self, batch: EventBatch, index: Optional[np.ndarray], src: int, dst: int, k: int) -> None:
        """Copy ``k`` events (``batch`` positions ``src..`` or ``index[src..]``) to ring slots ``dst..``."""
        d = slice(dst, dst + k)
        if index is None:
            s = slice(src, src + k)
            self._x[d] = batch.x[s]
            self._y[d] = batch.y[s]
            self._t[d] = batch.t[s]
            self._p[d] = batch.p[s]
        else:
            idx = index[src:src + k]
            np.take(batch.x, idx, out=self._x[d])
            np.take(batch.y, idx, out=self._y[d])
            np.take(batch.t, idx, out=self._t[d])
            np.take(batch.p, idx, out=self._p[d])

    def expire(self, now_ns: int) -> int:
        """Drop events older than ``now_ns - capacity_ns`` (reason ``capacity_time``); returns how many."""
        if not self.capacity_ns:
            return 0
        k = self._count_older_than(int(now_ns) - self.capacity_ns)
        self._discard(k, "capacity_time")
        return k

    def _copy_out(self, offset: int, n: int) -> EventBatch:
        parts = self._segments(offset, n)
        if len(parts) == 1:
            a, b = parts[0]
            x, y, t, p = self._x[a:b].copy(), self._y[a:b].copy(), self._t[a:b].copy(), self._p[a:b].copy()
        else:
            x = np.concatenate([self._x[a:b] for a, b in parts])
            y = np.concatenate([self._y[a:b] for a, b in parts])
            t = np.concatenate([self._t[a:b] for a, b in parts])
            p = np.concatenate([self._p[a:b] for a, b in parts])
        stamp = int(t[-1]) if n else self.last_stamp_ns
        return EventBatch(x, y, t, p, self.width, self.height, stamp, self.frame_id)

    def peek_latest(self, n: int) -> EventBatch:
        """A copy of the newest ``min(n, len)`` events, without consuming anything."""
        n = min(int(n), self._count)
        return self._copy_out(self._count - n, n)

    def events(self) -> EventBatch:
        """A copy of everything buffered, oldest first."""
        return self._copy_out(0, self._count)

    def windows_ready(self, n: int, stride: Optional[int] = None) -> int:
        """How many complete windows of ``n`` events, hop ``stride``, :meth:`take_window` could return now."""
        n, stride = _check_window(n, stride)
        if self._count < n:
            return 0
        return 1 + (self._count - n) // stride

    def take_window(self, n: int, stride: Optional[int] = None, *, latest_only: bool = False) -> Optional[EventBatch]:
        """The oldest ``n`` events as a window (then ``stride`` events consumed), or ``None`` if fewer are held.

        With ``latest_only`` and several complete windows waiting, the older ones are skipped (counted as
        ``"stale"`` drops) and the newest complete window on the stride grid is returned.
        """
        n, stride = _check_window(n, stride)
        ready = self.windows_ready(n, stride)
        if ready == 0:
            return None
        if latest_only and ready > 1:
            self._discard((ready - 1) * stride, "stale")
        window = self._copy_out(0, n)
        consumed = min(stride, self._count)
        self._discard(consumed, None)
        self.consumed_events += min(consumed, n)
        if stride > n:
            self.skipped_events += consumed - n
        self.windows_taken += 1
        return window

    def stats(self) -> Dict[str, int]:
        """Counters for diagnostics."""
        out = {
            "buffered_events": self._count,
            "capacity_events": self.capacity_events,
            "appended_events": self.appended_events,
            "consumed_events": self.consumed_events,
            "skipped_events": self.skipped_events,
            "windows_taken": self.windows_taken,
            "dropped_events": self.dropped_events,
        }
        out.update({f"dropped_{k}": v for k, v in self.dropped_by_reason.items()})
        return out


def _check_window(n: int, stride: Optional[int]) -> Tuple[int, int]:
    n = int(n)
    if n <= 0:
        raise ConfigError(f"events_per_window must be positive, got {n}")
    stride = n if stride is None else int(stride)
    if stride <= 0:
        raise ConfigError(f"window stride must be positive, got {stride}")
    return n, stride


def _in_box(x: np.ndarray, y: np.ndarray, bounds: Tuple[int, int, int, int]) -> np.ndarray:
    """Mask of events with ``x0 <= x < x1`` and ``y0 <= y < y1`` (uint16 coordinates, wrap-around trick:
    ``x - x0`` in uint16 is large for ``x < x0``, so one compare tests both sides)."""
    x0, x1, y0, y1 = bounds
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, 0x10000), min(y1, 0x10000)
    if x1 <= x0 or y1 <= y0:
        return np.zeros(len(x), bool)
    if x.dtype != np.uint16 or y.dtype != np.uint16:
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    mask = np.ones(len(x), bool)
    if x0 > 0 or x1 < 0x10000:
        mask &= (x - np.uint16(x0)) < np.uint16(x1 - x0) if x1 - x0 < 0x10000 else True
    if y0 > 0 or y1 < 0x10000:
        mask &= (y - np.uint16(y0)) < np.uint16(y1 - y0) if y1 - y0 < 0x10000 else True
    return mask


@dataclass
class _Face:
    roi: Roi
    bounds: Tuple[int, int, int, int]  # x_start, x_end, y_start, y_end (routing region, end exclusive)
    buffer: EventBuffer
    _axes: Optional[Tuple] = None  # per axis: None (every coordinate) or (uint16 start, uint16 length)
    _empty: bool = False

    def set_bounds(self, bounds: Tuple[int, int, int, int]) -> None:
        self.bounds = bounds
        axes = []
        for lo, hi in ((bounds[0], bounds[1]), (bounds[2], bounds[3])):
            lo, hi = max(lo, 0), min(hi, 0x10000)
            if lo == 0 and hi == 0x10000:
                axes.append(None)
            else:
                axes.append((np.uint16(min(lo, 0xFFFF)), np.uint16(max(min(hi - lo, 0xFFFF), 0))))
        spans = ((bounds[0], bounds[1]), (bounds[2], bounds[3]))
        self._empty = any(max(lo, 0) >= min(hi, 0x10000) for lo, hi in spans)
        self._axes = tuple(axes)

    def mask(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Events inside the routing region. For uint16 coordinates ``x - x0`` wraps around below ``x0``,
        so one unsigned compare per axis tests both ends (measured faster than table lookups)."""
        if self._empty:
            return np.zeros(len(x), bool)
        if x.dtype != np.uint16 or y.dtype != np.uint16:
            return _in_box(x, y, self.bounds)
        m = None
        for coord, axis in ((x, self._axes[0]), (y, self._axes[1])):
            if axis is None:
                continue
            inside = (coord - axis[0]) < axis[1]
            if m is None:
                m = inside
            else:
                m &= inside
        return np.ones(len(x), bool) if m is None else m


class FaceEventBuffers:
    """One bounded :class:`EventBuffer` per face region on the event sensor.

    Args:
        capacity_events, capacity_ns: limits of each face's buffer (see :class:`EventBuffer`); must hold at
            least one window (``capacity_events >= events_per_window``).
        width, height: sensor size (0: taken from the batches).
        event_only_roi: region used while no face is known (event-only mode); ``None``: the whole sensor.
        fallback: ``True``: use the ``"sensor"`` region when no face boxes are known; ``False``: drop events.
        square_roi, roi_scale, roi_shift_y: how a face box becomes its routing region; give the same values as
            :class:`~fer_perception.events.representation.SpikingFerConfig` so that every event the
            representation's crop can use reaches the buffer. The fallback region is used as is.
        defer_events: 0 routes every appended batch at once. ``N > 0`` only queues batches (O(1) per
            message) and routes them together once ``N`` events are queued or when windows, faces or
            statistics are asked for; the result is identical, the per-message cost drops (routing
            1,000-event messages one by one is dominated by per-call overhead). Memory stays bounded by ``N``
            plus one batch.

    Thread-safe: every public method holds an internal lock, so subscription callbacks may ``append``
    while a worker calls ``ready_windows``.
    """

    def __init__(
        self,
        capacity_events: int = 60_000,
        capacity_ns: Optional[int] = 2_000_000_000,
        *,
        width: int = 0,
        height: int = 0,
        event_only_roi: Optional[Roi] = None,
        fallback: bool = True,
        square_roi: bool = True,
        roi_scale: float = 1.0,
        roi_shift_y: float = 0.0,
        defer_events: int = 0,
    ) -> None:
        if int(capacity_events) <= 0:
            raise ConfigError(f"FaceEventBuffers capacity_events must be positive, got {capacity_events!r}")
        if int(defer_events) < 0:
            raise ConfigError(f"FaceEventBuffers defer_events must be >= 0, got {defer_events!r}")
        self.defer_events = int(defer_events)
        self._pending: List[EventBatch] = []
        self._pending_events = 0
        self._lock = threading.RLock()
        self.capacity_events = int(capacity_events)
        self.capacity_ns = capacity_ns
        self.width, self.height = int(width), int(height)
        self.event_only_roi = event_only_roi
        self.fallback = bool(fallback)
        self.square_roi = bool(square_roi)
        self.roi_scale = float(roi_scale)
        self.roi_shift_y = float(roi_shift_y)
        self._faces: Dict[str, _Face] = {}
        self._retired = dict.fromkeys(DROP_REASONS, 0)
        self._retired_buffered = 0
        self.unrouted_events = 0
        self._faces_known = False
        if self.fallback:
            self._set_faces({})

    # -- faces ---------------------------------------------------------------------------------------------
    @property
    def face_ids(self) -> List[str]:
        return list(self._faces)

    def roi(self, face_id: str) -> Roi:
        return self._faces[face_id].roi

    def buffer(self, face_id: str) -> EventBuffer:
        """The buffer of one face (queued batches are routed first)."""
        with self._lock:
            self.flush()
            return self._faces[face_id].buffer

    def _routing_bounds(self, face_id: str, roi: Roi) -> Tuple[int, int, int, int]:
        if face_id == SENSOR_FACE_ID and not self._faces_known:
            return (roi.x, roi.x + roi.width, roi.y, roi.y + roi.height)
        return crop_pixel_bounds(
            crop_box(roi, square=self.square_roi, scale=self.roi_scale, shift_y=self.roi_shift_y)
        )

    def _sensor_roi(self) -> Optional[Roi]:
        if self.event_only_roi is not None:
            return self.event_only_roi
        if self.width > 0 and self.height > 0:
            return Roi(0, 0, self.width, self.height)
        return None

    def update_faces(self, faces: Mapping[str, Roi]) -> None:
        """Set the current faces ``{face_id: Roi}``: new ids get a buffer, kept ids get their new box (their
        buffered events stay), buffers of ids no longer present are freed. An empty mapping switches to
        event-only mode (the ``"sensor"`` region) when ``fallback`` is on. Queued events are routed to the
        faces that were current when they arrived."""
        faces = dict(faces)
        with self._lock:
            if self._faces_known and faces == {fid: f.roi for fid, f in self._faces.items()}:
                return  # unchanged (callers may sync faces on every message): keep queued events queued
            self.flush()
            self._set_faces(faces)

    def _set_faces(self, faces: Dict[str, Roi]) -> None:
        for fid, roi in faces.items():
            if not isinstance(roi, Roi):
                raise ConfigError(f"face {fid!r}: expected a Roi, got {type(roi).__name__}")
            if roi.width <= 0 or roi.height <= 0:
                raise ConfigError(f"face {fid!r}: Roi has an empty size {roi.width}x{roi.height}")
        self._faces_known = bool(faces)
        if not faces and self.fallback:
            sroi = self._sensor_roi()
            # Unknown sensor size: a region that takes every event until a batch tells the size.
            faces = {SENSOR_FACE_ID: sroi if sroi is not None else Roi(0, 0, 65536, 65536)}
        for fid in list(self._faces):
            if fid not in faces:
                self._retire(fid)
        for fid, roi in faces.items():
            bounds = self._routing_bounds(fid, roi)
            face = self._faces.get(fid)
            if face is None:
                buf = EventBuffer(self.capacity_events, self.capacity_ns)
                buf.width, buf.height = self.width, self.height
                face = self._faces[fid] = _Face(roi, bounds, buf)
            face.roi = roi
            face.set_bounds(bounds)

    def _retire(self, face_id: str) -> None:
        face = self._faces.pop(face_id)
        for k, v in face.buffer.dropped_by_reason.items():
            self._retired[k] += v
        self._retired_buffered += len(face.buffer)

    # -- events ----------------------------------------------------------------------------------------------
    def append(self, batch: EventBatch) -> None:
        """Route the events of ``batch`` to the buffer of every face region that contains them (or queue
        them, see ``defer_events``)."""
        with self._lock:
            if self.defer_events:
                if len(batch) or batch.width:
                    self._pending.append(batch)
                    self._pending_events += len(batch)
                if self._pending_events >= self.defer_events:
                    self.flush()
            else:
                self._route(batch)

    def flush(self) -> None:
        """Route the queued batches now (a no-op without ``defer_events``)."""
        with self._lock:
            if not self._pending:
                return
            pending = self._pending
            self._pending, self._pending_events = [], 0
            self._route(pending[0] if len(pending) == 1 else EventBatch.concatenate(pending))

    def _route(self, batch: EventBatch) -> None:
        if batch.width and (batch.width != self.width or batch.height != self.height):
            self.width, self.height = int(batch.width), int(batch.height)
            if not self._faces_known and self.fallback and self.event_only_roi is None:
                self._set_faces({})
        if len(batch) == 0 or not self._faces:
            self.unrouted_events += len(batch)
            return
        x, y = batch.x, batch.y
        n = len(batch)
        routed = np.zeros(n, bool) if len(self._faces) > 1 else None
        for face in self._faces.values():
            mask = face.mask(x, y)
            if routed is not None:
                routed |= mask
            idx = np.flatnonzero(mask)
            face.buffer.append(batch, None if len(idx) == n else idx)
            if routed is None:
                self.unrouted_events += n - len(idx)
        if routed is not None:
            self.unrouted_events += int(n - np.count_nonzero(routed))

    def expire(self, now_ns: int) -> None:
        """Apply each buffer's time limit against ``now_ns`` (call when time passes without events)."""
        with self._lock:
            self.flush()
            for face in self._faces.values():
                face.buffer.expire(now_ns)

    def ready_windows(
        self, events_per_window: int, stride: Optional[int] = None, *, latest_only: bool = False
    ) -> List[Tuple[str, Roi, EventBatch]]:
        """Every complete window now available, as ``(face_id, roi, events)``, faces in insertion order and
        each face's windows oldest first (``latest_only``: at most the newest window per face). ``stride``
        is the hop between consecutive windows of a face (default: ``events_per_window``, no overlap)."""
        events_per_window, stride = _check_window(events_per_window, stride)
        if events_per_window > self.capacity_events:
            raise ConfigError(
                f"events_per_window={events_per_window} exceeds the buffer capacity {self.capacity_events}"
            )
        out: List[Tuple[str, Roi, EventBatch]] = []
        with self._lock:
            self.flush()
            for fid, face in self._faces.items():
                while True:
                    w = face.buffer.take_window(events_per_window, stride, latest_only=latest_only)
                    if w is None:
                        break
                    out.append((fid, face.roi, w))
                    if latest_only:
                        break
        return out

    # -- diagnostics ------------------------------------------------------------------------------------------
    @property
    def dropped_by_reason(self) -> Dict[str, int]:
        """Drops per reason over all faces, including faces already gone."""
        self.flush()
        out = dict(self._retired)
        for face in self._faces.values():
            for k, v in face.buffer.dropped_by_reason.items():
                out[k] += v
        return out

    @property
    def dropped_events(self) -> int:
        return sum(self.dropped_by_reason.values())

    @property
    def freed_events(self) -> int:
        """Events that were still buffered when their face disappeared."""
        return self._retired_buffered

    @property
    def buffered_events(self) -> int:
        self.flush()
        return sum(len(f.buffer) for f in self._faces.values())

    @property
    def nbytes(self) -> int:
        return sum(f.buffer.nbytes for f in self._faces.values())

    @property
    def pending_events(self) -> int:
        """Events queued for routing (``defer_events`` mode)."""
        return self._pending_events

    def stats(self) -> Dict[str, int]:
        with self._lock:
            self.flush()
            return self._stats()

    def _stats(self) -> Dict[str, int]:
        out = {
            "faces": len(self._faces),
            "buffered_events": self.buffered_events,
            "dropped_events": self.dropped_events,
            "freed_events": self.freed_events,
            "unrouted_events": self.unrouted_events,
        }
        out.update({f"dropped_{k}": v for k, v in self.dropped_by_reason.items()})
        return out


__all__ = ["EventBuffer", "FaceEventBuffers", "SENSOR_FACE_ID", "DROP_REASONS"]
