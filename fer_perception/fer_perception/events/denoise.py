"""Event noise filters: background-activity filter, refractory filter and hot-pixel mask (stateful, vectorised).

Background activity (BA) noise are isolated events with no spatio-temporal support; the classic filter
(Delbruck 2008) lets an event pass only if a *neighbouring* pixel (within ``radius``, the pixel itself
excluded) had an event during the last ``dt_ns``. State is a per-pixel map of the last event time, so the
filter works across batches of any size.

Within a batch the decision is exact, not approximated (tested against an event-by-event reference loop).
Time-ordered batches (the normal case) are cut into slices spanning at most ``dt_ns``; inside such a slice
every earlier neighbour event is recent enough, so support reduces to "an earlier neighbour event exists in
the slice" (a first-index map per pixel and one gather of all neighbours) or "the map from earlier slices
is recent enough" (one gather). Batches whose timestamps go backwards take a slower exact path:
per neighbour offset, the most recent earlier event (in arrival order) at that pixel is found with one
``np.searchsorted`` over events sorted by ``(pixel, arrival index)``.

Support counts every earlier neighbour event, passed or not (the classic filter writes the map for every
event). "Earlier" means earlier in arrival order; its timestamp ``t_j`` supports event ``i`` when
``t_i - t_j <= dt_ns``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from fer_perception.errors import ConfigError
from fer_perception.events.batch import EventBatch

_NEVER = np.iinfo(np.int64).min // 4  # "no event yet": far enough in the past for any dt


def _check_sensor(name: str, width: int, height: int) -> Tuple[int, int]:
    if int(width) <= 0 or int(height) <= 0:
        raise ConfigError(f"{name}: sensor width and height must be positive, got {width}x{height}")
    return int(width), int(height)


def _check_in_sensor(name: str, batch: EventBatch, width: int, height: int) -> None:
    if len(batch) and (int(batch.x.max()) >= width or int(batch.y.max()) >= height):
        raise ConfigError(
            f"{name}: events reach x={int(batch.x.max())}, y={int(batch.y.max())} "
            f"outside the filter's {width}x{height} sensor"
        )


def _previous_same_key(keys: np.ndarray, query: np.ndarray, times: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For each query key ``q`` at arrival index ``i`` (``query = q * n + i``), the time of the last event with
    the same key and a smaller index in ``keys`` (sorted ``key * n + index``), and whether one exists."""
    pos = np.searchsorted(keys, query, side="left") - 1
    n = len(times)
    found = pos >= 0
    pos_c = np.maximum(pos, 0)
    found &= (keys[pos_c] // n) == (query // n)
    return times[pos_c], found


class BackgroundActivityFilter:
    """The classic background-activity filter, stateful across batches.

    Args:
        width, height: sensor size.
        dt_ns: support window; an event passes if a neighbour fired within this time before it.
        radius: neighbourhood radius in pixels (1: the 8 neighbours).
        include_self: also count earlier events of the pixel itself as support (off in the classic filter,
            which keeps hot pixels from supporting themselves).
    """

    def __init__(
        self, width: int, height: int, dt_ns: int = 10_000_000, radius: int = 1, include_self: bool = False
    ) -> None:
        self.width, self.height = _check_sensor("BackgroundActivityFilter", width, height)
        if int(dt_ns) <= 0:
            raise ConfigError(f"BackgroundActivityFilter dt_ns must be positive, got {dt_ns!r}")
        if int(radius) < 1:
            raise ConfigError(f"BackgroundActivityFilter radius must be >= 1, got {radius!r}")
        self.dt_ns = int(dt_ns)
        self.radius = int(radius)
        self.include_self = bool(include_self)
        r = self.radius
        self._pw = self.width + 2 * r
        self._last = np.full((self.height + 2 * r) * self._pw, _NEVER, np.int64)  # padded last-event-time map
        # Scratch map: arrival index of each pixel's first event in the current slice ("never" elsewhere).
        self._first_reset = np.iinfo(np.int64).max
        self._first = np.full(self._last.size, self._first_reset, np.int64)
        offs = [(dx, dy) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
        if not self.include_self:
            offs.remove((0, 0))
        self._offsets = np.array([dy * self._pw + dx for dx, dy in offs], np.int64)
        self.seen_events = 0
        self.passed_events = 0

    def reset(self) -> None:
        self._last.fill(_NEVER)

    def mask(self, batch: EventBatch) -> np.ndarray:
        """Boolean mask of the events of ``batch`` that pass; updates the state."""
        n = len(batch)
        if n == 0:
            return np.zeros(0, bool)
        _check_in_sensor("BackgroundActivityFilter", batch, self.width, self.height)
        r = self.radius
        pix = (batch.y.astype(np.int64) + r) * self._pw + (batch.x.astype(np.int64) + r)
        t = batch.t
        if n > 1 and not bool(np.all(t[1:] >= t[:-1])):
            ok = self._mask_exact(pix, t)
        elif int(t[-1]) - int(t[0]) <= self.dt_ns:
            ok = self._mask_slice(pix, t)
        else:
            edges = int(t[0]) + self.dt_ns * np.arange(1, (int(t[-1]) - int(t[0])) // self.dt_ns + 1)
            cuts = np.searchsorted(t, edges, side="left")
            bounds = [0, *cuts.tolist(), n]
            ok = np.empty(n, bool)
            for a, b in zip(bounds[:-1], bounds[1:]):
                if b > a:
                    ok[a:b] = self._mask_slice(pix[a:b], t[a:b])
        self.seen_events += n
        self.passed_events += int(ok.sum())
        return ok

    def _mask_slice(self, pix: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Time-ordered events spanning at most ``dt_ns``: exact with gathers only."""
        n = len(pix)
        last = self._last
        neigh = self._offsets[:, None] + pix[None, :]  # (K, n) neighbour pixels: one gather per map
        ok = last[neigh].max(axis=0) >= t - self.dt_ns
        if n > 1:
            arrival = np.arange(n, dtype=np.int64)
            np.minimum.at(self._first, pix, arrival)  # first arrival index of each pixel in the slice
            ok |= self._first[neigh].min(axis=0) < arrival
            self._first[pix] = self._first_reset
        np.maximum.at(last, pix, t)  # time-ordered slice: the latest time is the last event's
        return ok

    def _mask_exact(self, pix: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Any timestamp order: exact by binary search per neighbour offset."""
        n = len(pix)
        order = np.arange(n, dtype=np.int64)
        keys = pix * n + order
        sort = np.argsort(keys, kind="stable")
        keys_sorted = keys[sort]
        t_sorted = t[sort]
        cutoff = t - self.dt_ns
        ok = np.zeros(n, bool)
        for off in self._offsets:
            q = pix + off
            prev_t, found = _previous_same_key(keys_sorted, q * n + order, t_sorted)
            support_t = np.where(found, prev_t, self._last[q])
            ok |= support_t >= cutoff
        # State: last event time of each pixel (the last in arrival order wins).
        last_of_pixel = np.ones(n, bool)
        pix_sorted = keys_sorted // n
        last_of_pixel[:-1] = pix_sorted[1:] != pix_sorted[:-1]
        self._last[pix_sorted[last_of_pixel]] = t_sorted[last_of_pixel]
        return ok

    def __call__(self, batch: EventBatch) -> EventBatch:
        """The events of ``batch`` that pass the filter."""
        return batch.select(self.mask(batch))


class RefractoryFilter:
    """Drops an event when the same pixel had an event (kept or not) less than ``refractory_ns`` before.

    Suppresses bursts from one pixel (hot or flickering pixels); stateful and exact like the BA filter.
    """

    def __init__(self, width: int, height: int, refractory_ns: int = 500_000) -> None:
        self.width, self.height = _check_sensor("RefractoryFilter", width, height)
        if int(refractory_ns) <= 0:
            raise ConfigError(f"RefractoryFilter refractory_ns must be positive, got {refractory_ns!r}")
        self.refractory_ns = int(refractory_ns)
        self._last = np.full(self.width * self.height, _NEVER, np.int64)

    def reset(self) -> None:
        self._last.fill(_NEVER)

    def mask(self, batch: EventBatch) -> np.ndarray:
        n = len(batch)
        if n == 0:
            return np.zeros(0, bool)
        _check_in_sensor("RefractoryFilter", batch, self.width, self.height)
        pix = batch.y.astype(np.int64) * self.width + batch.x
        sort = np.lexsort((np.arange(n), pix))  # by pixel, then arrival
        ps = pix[sort]
        ts = batch.t[sort]
        first = np.ones(n, bool)
        first[1:] = ps[1:] != ps[:-1]
        prev = np.empty(n, np.int64)
        prev[1:] = ts[:-1]
        prev[first] = self._last[ps[first]]
        keep_sorted = ts - prev >= self.refractory_ns
        last = np.ones(n, bool)
        last[:-1] = first[1:]
        self._last[ps[last]] = ts[last]
        keep = np.empty(n, bool)
        keep[sort] = keep_sorted
        return keep

    def __call__(self, batch: EventBatch) -> EventBatch:
        return batch.select(self.mask(batch))


class HotPixelMask:
    """Masks pixels that fire far more than the rest (stuck / hot pixels).

    ``learn(batch)`` counts events per pixel over a calibration stream; pixels whose count exceeds
    ``factor`` times the mean count of active pixels (and at least ``min_count``) are marked hot and their
    events are removed by ``mask`` / ``__call__``.
    """

    def __init__(self, width: int, height: int, factor: float = 10.0, min_count: int = 20) -> None:
        self.width, self.height = _check_sensor("HotPixelMask", width, height)
        if not factor > 1:
            raise ConfigError(f"HotPixelMask factor must be > 1, got {factor!r}")
        self.factor = float(factor)
        self.min_count = int(min_count)
        self.counts = np.zeros(self.width * self.height, np.int64)
        self.hot = np.zeros(self.width * self.height, bool)

    def learn(self, batch: EventBatch) -> np.ndarray:
        """Add ``batch`` to the counts and recompute the hot pixels; returns their ``(x, y)`` as ``(K, 2)``."""
        _check_in_sensor("HotPixelMask", batch, self.width, self.height)
        pix = batch.y.astype(np.int64) * self.width + batch.x
        self.counts += np.bincount(pix, minlength=self.counts.size)
        active = self.counts[self.counts > 0]
        if active.size:
            threshold = max(self.factor * float(active.mean()), float(self.min_count))
            self.hot = self.counts > threshold
        idx = np.flatnonzero(self.hot)
        return np.stack([idx % self.width, idx // self.width], axis=1)

    def mask(self, batch: EventBatch) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros(0, bool)
        _check_in_sensor("HotPixelMask", batch, self.width, self.height)
        return ~self.hot[batch.y.astype(np.int64) * self.width + batch.x]

    def __call__(self, batch: EventBatch) -> EventBatch:
        return batch.select(self.mask(batch))


__all__ = ["BackgroundActivityFilter", "RefractoryFilter", "HotPixelMask"]
