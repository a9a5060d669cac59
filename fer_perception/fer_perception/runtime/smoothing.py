"""Per-face temporal smoothing of class probabilities (exponential moving average or windowed mean).

Each face id keeps its own state; state is freed when the tracker reports the face removed
(:meth:`ProbabilitySmoother.remove`) or when it has not been updated for ``max_age_ns`` (:meth:`prune`).
State is also keyed by the label list, so a face seen by two models (events and frames) never mixes them:
use one smoother per source.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Iterable, Optional, Tuple

import numpy as np

from fer_perception.errors import ConfigError

SMOOTHING_METHODS = ("none", "ema", "mean")


@dataclass
class SmoothingConfig:
    """How probabilities are smoothed over time, per face.

    Attributes:
        method: ``"none"``, ``"ema"`` (exponential moving average) or ``"mean"`` (mean of the last ``window``).
        alpha: EMA weight of the newest estimate, in (0, 1]; 1 means no smoothing.
        window: number of estimates averaged by ``"mean"``.
        max_age_ns: state older than this is dropped by :meth:`ProbabilitySmoother.prune` (0 = never).
    """

    method: str = "ema"
    alpha: float = 0.5
    window: int = 5
    max_age_ns: int = 2_000_000_000

    def __post_init__(self) -> None:
        if self.method not in SMOOTHING_METHODS:
            raise ConfigError(f"smoothing.method must be one of {SMOOTHING_METHODS}, not {self.method!r}")
        if not (0.0 < float(self.alpha) <= 1.0):
            raise ConfigError(f"smoothing.alpha must be in (0, 1], not {self.alpha}")
        if int(self.window) < 1:
            raise ConfigError(f"smoothing.window must be >= 1, not {self.window}")
        if int(self.max_age_ns) < 0:
            raise ConfigError(f"smoothing.max_age_ns must be >= 0, not {self.max_age_ns}")


class _FaceState:
    __slots__ = ("labels", "ema", "history", "last_ns")

    def __init__(self, labels: Tuple[str, ...], window: int) -> None:
        self.labels = labels
        self.ema: Optional[np.ndarray] = None
        self.history: Deque[np.ndarray] = deque(maxlen=window)
        self.last_ns = 0


class ProbabilitySmoother:
    """Smooths the probability vectors of each face independently."""

    def __init__(self, config: Optional[SmoothingConfig] = None) -> None:
        self.config = config or SmoothingConfig()
        self._state: Dict[str, _FaceState] = {}

    def __len__(self) -> int:
        return len(self._state)

    @property
    def face_ids(self) -> Tuple[str, ...]:
        return tuple(self._state)

    def update(self, face_id: str, probabilities, stamp_ns: int = 0, labels: Iterable[str] = ()) -> np.ndarray:
        """Add one estimate for ``face_id`` and return the smoothed probabilities (float32, sum 1)."""
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if p.size == 0 or not np.all(np.isfinite(p)):
            raise ValueError(f"probabilities for face {face_id!r} must be a non-empty finite vector, got {p!r}")
        cfg = self.config
        if cfg.method == "none":
            return _normalise(p)
        key = tuple(labels)
        st = self._state.get(face_id)
        if st is None or st.labels != key or (st.ema is not None and st.ema.shape != p.shape) or (
            st.history and st.history[-1].shape != p.shape
        ):
            st = _FaceState(key, int(cfg.window))
            self._state[face_id] = st
        st.last_ns = int(stamp_ns)
        if cfg.method == "ema":
            st.ema = p.copy() if st.ema is None else cfg.alpha * p + (1.0 - cfg.alpha) * st.ema
            return _normalise(st.ema)
        st.history.append(p)
        return _normalise(np.mean(np.stack(st.history), axis=0))

    def remove(self, face_ids: Iterable[str]) -> None:
        """Free the state of faces that are gone."""
        for fid in face_ids:
            self._state.pop(fid, None)

    def prune(self, now_ns: int) -> list:
        """Drop state not updated for ``max_age_ns``; returns the removed ids."""
        if self.config.max_age_ns <= 0:
            return []
        old = [fid for fid, st in self._state.items() if now_ns - st.last_ns > self.config.max_age_ns]
        self.remove(old)
        return old

    def reset(self) -> None:
        self._state.clear()


def _normalise(p: np.ndarray) -> np.ndarray:
    s = float(p.sum())
    if s <= 0:
        return np.full(p.shape, 1.0 / p.size, dtype=np.float32)
    return (p / s).astype(np.float32)
