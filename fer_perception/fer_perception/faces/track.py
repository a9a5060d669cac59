"""Multi-face tracking by detection: stable ids (``face_1``, ``face_2``, ...) across frames and short misses.

Each update predicts every track's box with a constant-velocity model (velocity in pixels per second from the
stamps), scores every track/detection pair by ``(1 - IoU) + 0.5 * centre distance / face size`` (a pair must
overlap by ``iou_threshold`` or have centres within ``max_center_distance`` face sizes, and sizes within a
factor 2), and solves the assignment with the Hungarian method (``scipy.optimize.linear_sum_assignment``).
Matched boxes are smoothed (exponential, against the prediction, so a moving face does not lag). A new face
stays tentative until ``min_hits`` consecutive detections, and only then gets an id, so one-frame false
detections never consume ids; an unmatched detection lying on a tracked face (IoU > 0.5) is a duplicate and
starts nothing. A confirmed face survives ``max_missed`` frames without detection (its box
coasts along the prediction); then it is removed and its id reported in :attr:`FaceTracker.removed` so
buffers and smoothing state elsewhere can be freed. Ids are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from fer_perception.errors import ConfigError
from fer_perception.faces.detect import Detection
from fer_perception.results import Roi

__all__ = ["Track", "TrackerConfig", "FaceTracker", "box_iou"]

_INFEASIBLE = 1e6
#: An unmatched detection overlapping a live track by more than this is a duplicate, not a new face.
_DUPLICATE_IOU = 0.5


@dataclass
class Track:
    """One tracked face.

    Attributes:
        face_id: ``"face_<n>"`` once confirmed, ``""`` while tentative.
        box: smoothed float ``(x, y, w, h)``; while missed, the predicted box.
        score: score of the last matched detection.
        hits: number of matched detections.
        missed: consecutive updates without a matching detection (0 = seen in the last update).
        first_seen_ns, last_seen_ns: stamps of the first and the last matched detection.
        landmarks: landmarks of the last matched detection (None for detectors without them).
        age: updates since the track was created.
        velocity: centre velocity in pixels per second.
        raw_box: the last matched detection's box, unsmoothed.
    """

    face_id: str
    box: np.ndarray
    score: float
    hits: int
    missed: int
    first_seen_ns: int
    last_seen_ns: int
    landmarks: Optional[np.ndarray] = None
    age: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    raw_box: Optional[np.ndarray] = None

    @property
    def confirmed(self) -> bool:
        return bool(self.face_id)

    @property
    def center(self) -> np.ndarray:
        return self.box[:2] + self.box[2:] / 2.0

    def roi(self) -> Roi:
        return Roi.from_xywh(self.box)


@dataclass
class TrackerConfig:
    """Parameters of :class:`FaceTracker` (see there)."""

    iou_threshold: float = 0.2
    max_missed: int = 5
    min_hits: int = 2
    smoothing: float = 0.5
    max_center_distance: float = 0.6
    id_prefix: str = "face_"

    def __post_init__(self) -> None:
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ConfigError(f"tracker iou_threshold must be within [0, 1], got {self.iou_threshold}")
        if int(self.max_missed) < 0:
            raise ConfigError(f"tracker max_missed must be >= 0, got {self.max_missed}")
        if int(self.min_hits) < 1:
            raise ConfigError(f"tracker min_hits must be >= 1, got {self.min_hits}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"tracker smoothing must be within [0, 1), got {self.smoothing}")
        if self.max_center_distance < 0:
            raise ConfigError(f"tracker max_center_distance must be >= 0, got {self.max_center_distance}")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xywh boxes -> ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax0, ay0 = a[:, 0:1], a[:, 1:2]
    ax1, ay1 = ax0 + a[:, 2:3], ay0 + a[:, 3:4]
    bx0, by0 = b[:, 0], b[:, 1]
    bx1, by1 = bx0 + b[:, 2], by0 + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0.0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0.0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _as_detections(detections: Iterable[Any]) -> List[Detection]:
    out = []
    for d in detections:
        if isinstance(d, Detection):
            out.append(d)
        elif hasattr(d, "box"):
            out.append(Detection(d.box, getattr(d, "score", 1.0), getattr(d, "landmarks", None)))
        else:
            arr = np.asarray(d, dtype=np.float64).reshape(-1)
            if arr.size not in (4, 5):
                raise ConfigError(f"a detection must be a Detection or (x, y, w, h[, score]), got {arr.size} values")
            out.append(Detection(arr[:4], arr[4] if arr.size == 5 else 1.0))
    return [d for d in out if np.all(np.isfinite(d.box)) and d.box[2] > 0 and d.box[3] > 0]


class FaceTracker:
    """Assigns stable face ids to per-frame detections.

    Args:
        iou_threshold: minimum IoU (with the predicted box) for a match, unless the centres are close.
        max_missed: updates a confirmed face may go undetected before it is removed.
        min_hits: consecutive detections before a new face gets an id and is reported.
        smoothing: weight of the prediction in the box update (0 = raw detections, 0.9 = very smooth).
        max_center_distance: centre distance, in face sizes (sqrt of the area), that still allows a match.
        id_prefix: prefix of the ids.
    """

    def __init__(
        self,
        iou_threshold: float = 0.2,
        max_missed: int = 5,
        min_hits: int = 2,
        smoothing: float = 0.5,
        max_center_distance: float = 0.6,
        id_prefix: str = "face_",
        config: Optional[TrackerConfig] = None,
    ) -> None:
        self.config = config or TrackerConfig(
            iou_threshold, max_missed, min_hits, smoothing, max_center_distance, id_prefix
        )
        self._tracks: List[Track] = []
        self._next_id = 1
        self._stamp_ns: Optional[int] = None
        #: ids removed by the last :meth:`update` (or :meth:`reset`).
        self.removed: List[str] = []

    @property
    def tracks(self) -> List[Track]:
        """Every live track, tentative ones included."""
        return list(self._tracks)

    def reset(self) -> None:
        """Forget all faces (their ids go to :attr:`removed`); ids keep counting up."""
        self.removed = [t.face_id for t in self._tracks if t.face_id]
        self._tracks = []
        self._stamp_ns = None

    def update(self, detections: Sequence[Any], stamp_ns: int) -> List[Track]:
        """Feed one frame's detections; returns the confirmed faces, ordered by id number.

        Faces missed in this frame (``missed > 0``) are included with their predicted box until they are
        removed; filter on ``track.missed == 0`` for the faces seen in this very frame. A stamp earlier than
        the previous one (a looping bag) is accepted and treated as no elapsed time.
        """
        cfg = self.config
        dets = _as_detections(detections)
        stamp = int(stamp_ns)
        dt_s = 0.0 if self._stamp_ns is None else max(0, stamp - self._stamp_ns) * 1e-9
        self._stamp_ns = stamp if self._stamp_ns is None else max(stamp, self._stamp_ns)
        self.removed = []

        pred = np.array([self._predict(t, dt_s) for t in self._tracks]).reshape(-1, 4)
        matches, lone_tracks, lone_dets = self._associate(pred, dets)

        for ti, di in matches:
            self._correct(self._tracks[ti], pred[ti], dets[di], stamp)
        for ti in lone_tracks:
            t = self._tracks[ti]
            t.missed += 1
            t.box = pred[ti]
        for t in self._tracks:
            t.age += 1
        keep: List[Track] = []
        for t in self._tracks:
            dead = t.missed > cfg.max_missed if t.face_id else t.missed > 0
            if dead:
                if t.face_id:
                    self.removed.append(t.face_id)
            else:
                keep.append(t)
        live = np.array([t.box for t in keep]).reshape(-1, 4)
        for di in lone_dets:
            d = dets[di]
            if len(live) and box_iou(d.box, live).max() > _DUPLICATE_IOU:
                continue  # a second box on a face that already has a track
            t = Track("", d.box.copy(), d.score, 1, 0, stamp, stamp, d.landmarks, 0, np.zeros(2), d.box.copy())
            keep.append(t)
        for t in keep:
            if not t.face_id and t.hits >= cfg.min_hits:
                t.face_id = f"{cfg.id_prefix}{self._next_id}"
                self._next_id += 1
        self._tracks = keep
        return sorted((t for t in keep if t.face_id), key=lambda t: int(t.face_id[len(cfg.id_prefix):]))

    # -- internals ------------------------------------------------------------------------------------------

    def _predict(self, t: Track, dt_s: float) -> np.ndarray:
        box = t.box.astype(np.float64).copy()
        if dt_s > 0:
            box[:2] += t.velocity * dt_s
        return box

    def _associate(self, pred: np.ndarray, dets: List[Detection]):
        n, m = len(pred), len(dets)
        if n == 0 or m == 0:
            return [], list(range(n)), list(range(m))
        cfg = self.config
        boxes = np.stack([d.box for d in dets])
        iou = box_iou(pred, boxes)
        pc = pred[:, :2] + pred[:, 2:] / 2.0
        dc = boxes[:, :2] + boxes[:, 2:] / 2.0
        size = np.sqrt(np.maximum(pred[:, 2] * pred[:, 3], 1e-9))[:, None]
        dist = np.linalg.norm(pc[:, None, :] - dc[None, :, :], axis=2) / size
        ratio = np.sqrt(np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9))[None, :] / size
        ok = ((iou >= cfg.iou_threshold) | (dist <= cfg.max_center_distance)) & (ratio >= 0.5) & (ratio <= 2.0)
        cost = np.where(ok, (1.0 - iou) + 0.5 * dist, _INFEASIBLE)
        rows, cols = linear_sum_assignment(cost)
        matches = [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]
        mt = {r for r, _ in matches}
        md = {c for _, c in matches}
        return matches, [i for i in range(n) if i not in mt], [j for j in range(m) if j not in md]

    def _correct(self, t: Track, pred: np.ndarray, det: Detection, stamp: int) -> None:
        a = self.config.smoothing
        prev_raw = t.raw_box if t.raw_box is not None else t.box
        dt_seen = (stamp - t.last_seen_ns) * 1e-9
        if dt_seen > 0:
            step = (det.box[:2] + det.box[2:] / 2.0) - (prev_raw[:2] + prev_raw[2:] / 2.0)
            v_new = step / dt_seen
            t.velocity = v_new if t.hits == 1 else 0.5 * t.velocity + 0.5 * v_new
        t.box = a * pred + (1.0 - a) * det.box
        t.raw_box = det.box.copy()
        t.score = det.score
        t.landmarks = det.landmarks
        t.hits += 1
        t.missed = 0
        t.last_seen_ns = stamp
