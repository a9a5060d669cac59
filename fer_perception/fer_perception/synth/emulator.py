"""A DVS emulator in the manner of v2e: video frames in, ON/OFF events out.

Model (per pixel, all vectorised over the image):

* brightness is the luma of the frame (0..255) mapped by v2e's lin-log curve: linear below
  ``lin_log_threshold`` (20 DN, slope ``ln(20)/20`` so the curve is continuous), natural log above;
* optionally an intensity-dependent first-order low-pass (``cutoff_hz``; the time constant shrinks as the
  pixel gets brighter, as in v2e);
* each pixel memorises the log brightness at its last event (the reference). When the input moves
  ``k`` ON thresholds above (or OFF thresholds below) the reference during a frame interval the pixel emits
  ``k`` events; the reference moves by exactly the thresholds emitted, the remainder is kept;
* thresholds have per-pixel Gaussian mismatch (``sigma_threshold``, drawn once per emulator, clipped at
  ``min_threshold``);
* the input is assumed to change linearly in log brightness between frames, so the k-th event's timestamp is
  the time the interpolated signal crosses ``reference + k * threshold``;
* an event that would follow the pixel's previous event by less than ``refractory_s`` is dropped (and does
  not move the reference), as in v2e;
* optional leak events: the reference drifts down at ``leak_rate_hz * threshold`` per second (per-pixel rate
  jitter), which makes ON events at a rate of about ``leak_rate_hz``;
* optional shot noise: Poisson ON/OFF events at ``shot_noise_rate_hz`` per pixel (split equally between
  polarities, stronger in the dark like v2e), at uniform random times. They leave the reference alone (v2e
  moves it, which with equal ON/OFF thresholds makes every noise event pull a compensating signal event one
  frame later and doubles the configured rate), so the measured noise rate is the configured one.

The first frame only initialises the state. ``DvsEmulator.emulate`` is stateful: a video fed in chunks gives
exactly the events of one call. Everything random comes from one seeded generator, so runs are repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import cv2
import numpy as np

from fer_perception.errors import ConfigError, FerPerceptionError, ImageError
from fer_perception.events.batch import EventBatch


class EmulatorError(FerPerceptionError, ValueError):
    """Frames or timestamps the emulator cannot use (shape changes, time going backwards, ...)."""


@dataclass
class EmulatorConfig:
    """Parameters of :class:`DvsEmulator` (v2e names in brackets).

    Attributes:
        pos_threshold, neg_threshold: nominal ON/OFF contrast thresholds in log units [pos_thres, neg_thres].
        sigma_threshold: standard deviation of the per-pixel threshold mismatch [sigma_thres].
        min_threshold: lower clip of the per-pixel thresholds.
        refractory_s: refractory period in seconds [refractory_period_s].
        leak_rate_hz: leak event rate per pixel, 0 disables [leak_rate_hz].
        leak_jitter_fraction: relative spread of the per-pixel leak rate [leak_jitter_fraction].
        shot_noise_rate_hz: shot noise event rate per pixel, 0 disables [shot_noise_rate_hz].
        shot_noise_inten_factor: shot noise rate at full intensity relative to darkness (v2e uses 0.25).
        cutoff_hz: photoreceptor low-pass cutoff at full intensity, 0 disables [cutoff_hz].
        lin_log_threshold: DN value where the lin-log curve changes from linear to log (v2e: 20).
        fps: frame rate assumed when frames come without timestamps.
        width, height: sensor size; ``None`` takes the size of the first frame. Frames of another size raise
            :class:`EmulatorError` (resize before, as ``fer-perception convert`` does).
    """

    pos_threshold: float = 0.2
    neg_threshold: float = 0.2
    sigma_threshold: float = 0.02
    min_threshold: float = 0.01
    refractory_s: float = 0.0005
    leak_rate_hz: float = 0.0
    leak_jitter_fraction: float = 0.1
    shot_noise_rate_hz: float = 0.0
    shot_noise_inten_factor: float = 0.25
    cutoff_hz: float = 0.0
    lin_log_threshold: float = 20.0
    fps: float = 30.0
    width: Optional[int] = None
    height: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("pos_threshold", "neg_threshold", "min_threshold", "lin_log_threshold", "fps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"EmulatorConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("sigma_threshold", "refractory_s", "leak_rate_hz", "leak_jitter_fraction",
                     "shot_noise_rate_hz", "shot_noise_inten_factor", "cutoff_hz"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"EmulatorConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ConfigError(f"EmulatorConfig.{name} must be >= 1 or None, got {v}")

    @classmethod
    def paper(cls, **overrides) -> "EmulatorConfig":
        """The Spiking-FER conversion settings (v2e): 30 fps, thresholds 0.2/0.2, sigma 0.02, no leak, no shot
        noise, no low-pass, 200x200, refractory 0.5 ms."""
        base = cls(pos_threshold=0.2, neg_threshold=0.2, sigma_threshold=0.02, refractory_s=0.0005,
                   leak_rate_hz=0.0, shot_noise_rate_hz=0.0, cutoff_hz=0.0, fps=30.0, width=200, height=200)
        return replace(base, **overrides)

    @classmethod
    def noisy(cls, **overrides) -> "EmulatorConfig":
        """Paper settings plus a realistic sensor: 0.1 Hz leak, 0.2 Hz shot noise, 200 Hz low-pass."""
        return cls.paper(**{"leak_rate_hz": 0.1, "shot_noise_rate_hz": 0.2, "cutoff_hz": 200.0, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides) -> "EmulatorConfig":
        """A named preset: ``paper`` or ``noisy``."""
        presets = {"paper": cls.paper, "noisy": cls.noisy}
        if name not in presets:
            raise ConfigError(f"unknown emulator preset {name!r}; expected one of {sorted(presets)}")
        return presets[name](**overrides)


def lin_log(luma: np.ndarray, threshold: float = 20.0) -> np.ndarray:
    """v2e's lin-log brightness: ``x * ln(T)/T`` for ``x <= T``, ``ln(x)`` above (float64)."""
    x = np.asarray(luma, dtype=np.float64)
    f = math.log(threshold) / threshold
    with np.errstate(divide="ignore"):
        return np.where(x <= threshold, x * f, np.log(np.maximum(x, threshold)))


def _check_frames(frames: np.ndarray) -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] != 3):
        raise ImageError(f"frames must be (N,H,W) mono or (N,H,W,3) RGB, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"frames must be numeric, got dtype {a.dtype}")
    return a


def _frame_luma(frame: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 luma (0..255) of one mono or RGB frame (ITU-R 601 weights, as cv2 RGB2GRAY)."""
    f = frame.astype(np.float32)
    if frame.dtype == np.uint16:
        f *= np.float32(255.0 / 65535.0)
    if f.ndim == 3:
        f = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    if np.issubdtype(frame.dtype, np.floating) and not np.isfinite(f).all():
        raise ImageError("frame contains NaN or infinite values")
    return f


def to_luma(frames: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` float32 luma (0..255) of ``(N, H, W)`` mono or ``(N, H, W, 3)`` RGB frames.

    uint8 and float input in the 0..255 range are accepted; uint16 is scaled to 0..255.
    """
    a = _check_frames(frames)
    out = np.empty(a.shape[:3], np.float32)
    for i in range(len(a)):
        out[i] = _frame_luma(a[i])
    return out


class DvsEmulator:
    """Stateful frame-to-event converter (see the module docstring for the model).

    Args:
        config: :class:`EmulatorConfig` (default: :meth:`EmulatorConfig.paper`).
        seed: seeds the threshold mismatch, leak rates and shot noise.

    ``emulate(frames, times_s)`` returns the events of the intervals between consecutive frames, including
    the interval from the last frame of the previous call. Timestamps are ``round(t_s * 1e9)`` ns.
    """

    def __init__(self, config: Optional[EmulatorConfig] = None, seed: int = 0) -> None:
        self.config = config or EmulatorConfig.paper()
        self.seed = int(seed)
        self.reset()

    def reset(self) -> None:
        """Forget the state: the next frame initialises the pixels again (same seed, same mismatch)."""
        self._rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0xD75])
        self._shape = None
        self._ref = None        # memorised log brightness per pixel (float64)
        self._prev = None       # filtered log brightness at the previous frame
        self._t_prev = None     # previous frame time, seconds
        self._t_last = None     # time of the last event per pixel, seconds
        self.pos_thr = None
        self.neg_thr = None
        self._leak = None
        self.n_on = 0
        self.n_off = 0
        self.n_frames = 0

    @property
    def initialized(self) -> bool:
        return self._ref is not None

    def _init_state(self, log0: np.ndarray) -> None:
        c = self.config
        h, w = log0.shape
        self._shape = (h, w)
        self.pos_thr = np.maximum(self._rng.normal(c.pos_threshold, c.sigma_threshold, (h, w)), c.min_threshold)
        self.neg_thr = np.maximum(self._rng.normal(c.neg_threshold, c.sigma_threshold, (h, w)), c.min_threshold)
        if c.leak_rate_hz > 0:
            self._leak = c.leak_rate_hz * np.maximum(
                1.0 + c.leak_jitter_fraction * self._rng.standard_normal((h, w)), 0.0)
        self._ref = log0.copy()
        if c.leak_rate_hz > 0:
            # random phases so that the leak events of a uniform scene do not all fire together
            self._ref -= self._rng.uniform(0.0, 1.0, (h, w)) * self.pos_thr
        self._prev = log0.copy()
        self._t_last = np.full((h, w), -np.inf)

    def emulate(self, frames: np.ndarray, times_s: Optional[np.ndarray] = None) -> EventBatch:
        """Events for ``frames`` (``(N,H,W)`` or ``(N,H,W,3)``) taken at ``times_s`` (seconds, increasing).

        Without ``times_s`` the frames are spaced ``1/fps`` after the previous call's last frame (from 0).
        """
        c = self.config
        arr = _check_frames(frames)
        n = arr.shape[0]
        if times_s is None:
            times = (self.n_frames + np.arange(n, dtype=np.float64)) / c.fps
        else:
            times = np.asarray(times_s, dtype=np.float64).reshape(-1)
            if len(times) != n:
                raise EmulatorError(f"got {n} frames but {len(times)} timestamps")
        if n == 0:
            h, w = self._shape or (c.height or 0, c.width or 0)
            return EventBatch.empty(w, h)
        if not np.all(np.isfinite(times)):
            raise EmulatorError("frame timestamps must be finite")
        if np.any(np.diff(times) <= 0) or (self._t_prev is not None and times[0] <= self._t_prev):
            raise EmulatorError("frame timestamps must increase strictly (also across calls)")
        h, w = arr.shape[1:3]
        want = (c.height or h, c.width or w)
        if (h, w) != want or (self._shape is not None and (h, w) != self._shape):
            exp = self._shape or want
            raise EmulatorError(f"frame size {w}x{h} differs from the sensor size {exp[1]}x{exp[0]}")

        xs, ys, ts, ps = [], [], [], []
        i0 = 0
        if self._ref is None:
            self._init_state(lin_log(_frame_luma(arr[0]), c.lin_log_threshold))
            self._t_prev = float(times[0])
            self.n_frames += 1
            i0 = 1
        for i in range(i0, n):
            out = self._step(_frame_luma(arr[i]), float(times[i]))
            if out is not None:
                xs.append(out[0]); ys.append(out[1]); ts.append(out[2]); ps.append(out[3])  # noqa: E702
        hh, ww = self._shape
        if not ts:
            return EventBatch.empty(ww, hh)
        t = np.concatenate(ts)
        batch = EventBatch(
            np.concatenate(xs).astype(np.uint16), np.concatenate(ys).astype(np.uint16), t,
            np.concatenate(ps).astype(np.uint8), ww, hh, int(t[-1]) if len(t) else 0,
        )
        return batch

    def _step(self, luma: np.ndarray, t1: float):
        """Advance one frame interval; events as (x, y, t_ns, p) arrays sorted by time, or None."""
        c = self.config
        t0 = self._t_prev
        dt = t1 - t0
        log_new = lin_log(luma, c.lin_log_threshold)
        if c.cutoff_hz > 0:
            inten01 = (luma.astype(np.float64) + 20.0) / 275.0
            tau = 1.0 / (2 * math.pi * c.cutoff_hz)
            eps = np.minimum(inten01 * (dt / tau), 1.0)
            log_new = self._prev + eps * (log_new - self._prev)
        d0 = self._prev - self._ref          # input minus reference at the start of the interval
        if self._leak is not None:
            self._ref -= dt * self._leak * self.pos_thr
        diff = log_new - self._ref           # ... and at its end (leak included)

        parts = []
        for thr, sign, pol in ((self.pos_thr, 1.0, 1), (self.neg_thr, -1.0, 0)):
            flat = np.flatnonzero(sign * diff >= thr)   # pixels with at least one event
            if flat.size == 0:
                continue
            d1 = diff.ravel()[flat]
            th = thr.ravel()[flat]
            count = np.floor(sign * d1 / th).astype(np.int64)
            parts.append(self._signal_events(flat, count, th, sign, pol, d0.ravel()[flat], d1, t0, dt))
        if c.shot_noise_rate_hz > 0:
            parts.append(self._shot_noise(luma, t0, dt))
        self._prev = log_new
        self._t_prev = t1
        self.n_frames += 1
        parts = [p for p in parts if p[0].size]
        if not parts:
            return None
        idx = np.concatenate([p[0] for p in parts])
        tt = np.concatenate([p[1] for p in parts])
        pol = np.concatenate([p[2] for p in parts])
        t_ns = np.round(tt * 1e9).astype(np.int64)
        order = np.lexsort((idx, t_ns))
        idx, t_ns, pol = idx[order], t_ns[order], pol[order]
        w = self._shape[1]
        return (idx % w), (idx // w), t_ns, pol

    def _signal_events(self, flat, count, thr, sign, pol, d0, d1, t0, dt):
        """The k-th crossing of each pixel, k = 1..max(count), with refractory filtering; moves the reference.

        ``d0``/``d1`` are input minus reference at the start/end of the interval; the difference is taken as
        linear in between, so the k-th event happens where it reaches ``sign * k * threshold``.
        """
        refr = self.config.refractory_s
        t_last = self._t_last.ravel()[flat]
        slope = d1 - d0
        emitted = np.zeros(flat.size, np.int64)
        out_idx, out_t = [], []
        kmax = int(count.max())
        active = np.arange(flat.size)
        for k in range(1, kmax + 1):
            active = active[count[active] >= k]
            level = sign * k * thr[active]
            s = slope[active]
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(np.abs(s) > 1e-12, (level - d0[active]) / s, 1.0)
            frac = np.clip(np.nan_to_num(frac, nan=1.0), 0.0, 1.0)
            tk = t0 + dt * frac
            ok = tk - t_last[active] >= refr if refr > 0 else np.ones(active.size, bool)
            sel = active[ok]
            t_last[sel] = tk[ok]
            emitted[sel] += 1
            out_idx.append(flat[sel])
            out_t.append(tk[ok])
        self._t_last.ravel()[flat] = t_last
        self._ref.ravel()[flat] += sign * emitted * thr
        n = int(emitted.sum())
        if pol:
            self.n_on += n
        else:
            self.n_off += n
        idx = np.concatenate(out_idx)
        return idx, np.concatenate(out_t), np.full(idx.size, pol, np.uint8)

    def _shot_noise(self, luma: np.ndarray, t0: float, dt: float):
        """Poisson shot-noise events, stronger in the dark; refractory-filtered; the reference stays."""
        c = self.config
        inten01 = (luma.astype(np.float64) + 20.0) / 275.0
        rate = (c.shot_noise_rate_hz / 2.0) * ((c.shot_noise_inten_factor - 1.0) * inten01 + 1.0)
        # independent Poisson counts per pixel == a Poisson total spread over the pixels in proportion to
        # their rates: draw the total, then pixels by inverse CDF (no full-frame random draws)
        cdf = np.cumsum(rate.ravel() * dt)
        total = float(cdf[-1])
        res = []
        for pol in (1, 0):
            n = int(self._rng.poisson(total))
            if n == 0:
                continue
            idx = np.searchsorted(cdf, self._rng.uniform(0.0, total, n), side="right")
            idx = np.minimum(idx, cdf.size - 1)
            tt = t0 + dt * self._rng.uniform(0.0, 1.0, n)
            order = np.lexsort((tt, idx))
            idx, tt = idx[order], tt[order]
            # refractory against the last event of the pixel (only the first noise event per pixel per frame
            # is checked against earlier events; several noise events in one pixel and frame are very rare)
            first = np.r_[True, idx[1:] != idx[:-1]]
            last = self._t_last.ravel()
            ok = ~first | (tt - last[idx] >= c.refractory_s)
            idx, tt = idx[ok], tt[ok]
            if idx.size:
                np.maximum.at(last, idx, tt)
            if pol:
                self.n_on += idx.size
            else:
                self.n_off += idx.size
            res.append((idx, tt, np.full(idx.size, pol, np.uint8)))
        if not res:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8)
        return (np.concatenate([r[0] for r in res]), np.concatenate([r[1] for r in res]),
                np.concatenate([r[2] for r in res]))


def emulate_frames(frames: np.ndarray, times_s: Optional[np.ndarray] = None,
                   config: Optional[EmulatorConfig] = None, seed: int = 0) -> EventBatch:
    """One-shot convenience: a fresh :class:`DvsEmulator` over ``frames``."""
    return DvsEmulator(config, seed).emulate(frames, times_s)
