"""The six Spiking-FER event data augmentations (``--edas``), with the official parameters and order.

Official order (Barchid/spiking-fer, docs/facts.md#spiking-fer): ``flip`` (left-right, p 0.5),
``background_activity`` (add 20% uniform noise events, p 0.5), ``reverse`` (time reversal with polarity inversion,
p 0.2), ``event_drop`` (one of: nothing, drop a time slice of 10-90%, drop a box of 5-25% of the sensor side, drop
10-90% of the events at random), then the representation, then ``crop`` (random resized crop to 128x128, scale
0.08-1, ratio 3/4-4/3, nearest, the same crop for every time step) and ``mirror`` (p 0.5: copy one face half,
mirrored, onto the other).

The first four work on structured event arrays (:data:`fer_perception.data.ferdvs.EVENT_DTYPE`); crop and
mirror work on the frames, as in the official pipeline, because a crop resized with nearest interpolation is
not expressible on events (it replicates pixels when it enlarges). All randomness comes from a
``numpy.random.Generator`` the caller passes in.

``tonic`` has transforms for some of these, but installing it pulls librosa, numba/llvmlite, scikit-learn and
audio libraries into the environment, so the transforms are written here (vectorised numpy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from fer_perception.errors import ConfigError

#: The official augmentations, in the order they are applied.
AUGMENTATIONS: Tuple[str, ...] = ("flip", "background_activity", "reverse", "event_drop", "crop", "mirror")
EVENT_AUGMENTATIONS: Tuple[str, ...] = AUGMENTATIONS[:4]
FRAME_AUGMENTATIONS: Tuple[str, ...] = AUGMENTATIONS[4:]
#: Our additions (not in the paper), applied before the official ones. ``window``: train on a random run of
#: ``T x events_per_frame`` events of the clip instead of its central one, so that a model also sees the
#: onset and the apex of an expression, as a live node's sliding windows do.
EXTRA_AUGMENTATIONS: Tuple[str, ...] = ("window",)


def parse_edas(spec: Union[str, Iterable[str], None]) -> Tuple[str, ...]:
    """``"crop,flip"`` -> ``("flip", "crop")``: validated, de-duplicated, in the official order.

    ``""``, ``"none"`` and ``None`` mean no augmentation; ``"all"`` means the six official ones. Our extra
    ``window`` (:data:`EXTRA_AUGMENTATIONS`) comes first when named.
    """
    if spec is None:
        return ()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    if names in ([], ["none"]):
        return ()
    if names == ["all"]:
        return AUGMENTATIONS
    known = EXTRA_AUGMENTATIONS + AUGMENTATIONS
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown augmentation(s) {', '.join(unknown)} in --edas; "
                          f"choose from {', '.join(known)}")
    return tuple(n for n in known if n in names)


# ---------------------------------------------------------------------------------------------------------
# Event augmentations: structured arrays with fields t, x, y, p; sensor_size is (width, height).


def random_window(events: np.ndarray, rng: np.random.Generator, n_events: int) -> np.ndarray:
    """A random contiguous run of ``n_events`` events (all of them when the clip has no more)."""
    if len(events) <= n_events:
        return events.copy()
    start = int(rng.integers(0, len(events) - n_events + 1))
    return events[start:start + n_events].copy()


def flip_lr(events: np.ndarray, sensor_size: Tuple[int, int]) -> np.ndarray:
    """Mirror left-right: x -> W - 1 - x."""
    out = events.copy()
    out["x"] = sensor_size[0] - 1 - events["x"]
    return out


def add_background_activity(
    events: np.ndarray, sensor_size: Tuple[int, int], rng: np.random.Generator, ratio: float = 0.2
) -> np.ndarray:
    """Add ``round(ratio * N)`` events uniform in space, time (the events' span) and polarity; keep time order."""
    n = int(round(ratio * len(events)))
    if n <= 0:
        return events.copy()
    t0, t1 = int(events["t"].min()), int(events["t"].max())
    noise = np.empty(n, dtype=events.dtype)
    noise["t"] = rng.integers(t0, t1 + 1, n)
    noise["x"] = rng.integers(0, sensor_size[0], n)
    noise["y"] = rng.integers(0, sensor_size[1], n)
    noise["p"] = rng.integers(0, 2, n)
    out = np.concatenate([events, noise])
    return out[np.argsort(out["t"], kind="stable")]


def reverse_time(events: np.ndarray) -> np.ndarray:
    """Play the recording backwards: t -> t_max + t_min - t (order reversed) and polarity inverted."""
    if not len(events):
        return events.copy()
    out = events[::-1].copy()
    out["t"] = int(events["t"].max()) + int(events["t"].min()) - out["t"]
    out["p"] = 1 - (out["p"] > 0)
    return out


def drop_by_time(events: np.ndarray, rng: np.random.Generator, ratio: float) -> np.ndarray:
    """Remove the events of one time slice lasting ``ratio`` of the recording, placed at random."""
    if not len(events):
        return events.copy()
    t0, t1 = float(events["t"].min()), float(events["t"].max())
    span = (t1 - t0) * ratio
    start = t0 + rng.uniform(0.0, 1.0) * (t1 - t0 - span)
    keep = (events["t"] < start) | (events["t"] > start + span)
    return events[keep]


def drop_by_area(
    events: np.ndarray, sensor_size: Tuple[int, int], rng: np.random.Generator, ratio: float
) -> np.ndarray:
    """Remove the events inside a box whose sides are ``ratio`` of the sensor's, placed at random."""
    w, h = sensor_size
    bw, bh = max(1, int(round(ratio * w))), max(1, int(round(ratio * h)))
    x0 = int(rng.integers(0, w - bw + 1))
    y0 = int(rng.integers(0, h - bh + 1))
    inside = (events["x"] >= x0) & (events["x"] < x0 + bw) & (events["y"] >= y0) & (events["y"] < y0 + bh)
    return events[~inside]


def drop_random(events: np.ndarray, rng: np.random.Generator, ratio: float) -> np.ndarray:
    """Remove ``round(ratio * N)`` events chosen uniformly at random (order of the rest kept)."""
    n = len(events)
    n_drop = int(round(ratio * n))
    if n_drop <= 0:
        return events.copy()
    keep = np.ones(n, bool)
    keep[rng.choice(n, size=n_drop, replace=False)] = False
    return events[keep]


def event_drop(events: np.ndarray, sensor_size: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """EventDrop (Gu et al. 2021) as Spiking-FER uses it: one of four options, uniformly.

    0: nothing; 1: drop a time slice of 10%..90% (steps of 10%); 2: drop a box of 5%..25% of the sensor side
    (steps of 5%); 3: drop 10%..90% of the events at random (steps of 10%).
    """
    option = int(rng.integers(0, 4))
    if option == 0:
        return events.copy()
    if option == 1:
        return drop_by_time(events, rng, int(rng.integers(1, 10)) / 10.0)
    if option == 2:
        return drop_by_area(events, sensor_size, rng, int(rng.integers(1, 6)) / 20.0)
    return drop_random(events, rng, int(rng.integers(1, 10)) / 10.0)


# ---------------------------------------------------------------------------------------------------------
# Frame augmentations: arrays (T, C, H, W).


def resized_crop_box(
    height: int, width: int, rng: np.random.Generator,
    scale: Tuple[float, float] = (0.08, 1.0), ratio: Tuple[float, float] = (3 / 4, 4 / 3),
) -> Tuple[int, int, int, int]:
    """A random (top, left, h, w) box as torchvision's RandomResizedCrop draws it (10 tries, then centre)."""
    area = height * width
    log_r = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(log_r[0], log_r[1])))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_resize_nearest(frames: np.ndarray, box: Tuple[int, int, int, int], out_size: int) -> np.ndarray:
    """Crop ``box`` = (top, left, h, w) from every frame and resize it to ``out_size`` square, nearest."""
    top, left, h, w = box
    rows = top + np.minimum((np.arange(out_size) * h) // out_size, h - 1)
    cols = left + np.minimum((np.arange(out_size) * w) // out_size, w - 1)
    return np.ascontiguousarray(frames[..., rows[:, None], cols[None, :]])


def random_resized_crop(
    frames: np.ndarray, rng: np.random.Generator, out_size: int = 128,
    scale: Tuple[float, float] = (0.08, 1.0), ratio: Tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Random resized crop, the same box for every time step and polarity."""
    box = resized_crop_box(frames.shape[-2], frames.shape[-1], rng, scale, ratio)
    return crop_resize_nearest(frames, box, out_size)


def resize_nearest(frames: np.ndarray, out_size: int) -> np.ndarray:
    h, w = frames.shape[-2:]
    if h == w == out_size:
        return frames
    return crop_resize_nearest(frames, (0, 0, h, w), out_size)


def face_mirror(frames: np.ndarray, keep_left: bool) -> np.ndarray:
    """Make the face symmetric: copy the left half (``keep_left``) or the right half, mirrored, onto the other."""
    out = frames.copy()
    w = frames.shape[-1]
    half = w // 2
    if keep_left:
        out[..., w - half:] = frames[..., :half][..., ::-1]
    else:
        out[..., :half] = frames[..., w - half:][..., ::-1]
    return out


# ---------------------------------------------------------------------------------------------------------
# The pipeline


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; the defaults are the official ones."""

    flip_p: float = 0.5
    background_activity_p: float = 0.5
    background_activity_ratio: float = 0.2
    reverse_p: float = 0.2
    crop_scale: Tuple[float, float] = (0.08, 1.0)
    crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    mirror_p: float = 0.5
    window_events: int = 15_000


class Augmenter:
    """Applies the selected augmentations in the official order.

    ``apply_events`` before the representation, ``apply_frames`` after it; when ``crop`` is selected the
    representation should be computed at full sensor resolution (:attr:`needs_full_resolution`) and
    ``apply_frames`` crops and resizes to ``out_size``; otherwise ``apply_frames`` resizes (nearest) only
    if the frames are not already ``out_size``.
    """

    def __init__(
        self, names: Union[str, Sequence[str], None], sensor_size: Tuple[int, int] = (200, 200),
        config: Optional[AugmentConfig] = None,
    ) -> None:
        self.names = parse_edas(names)
        self.sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        self.config = config or AugmentConfig()

    def __repr__(self) -> str:
        return f"Augmenter({','.join(self.names) or 'none'})"

    @property
    def needs_full_resolution(self) -> bool:
        return "crop" in self.names

    def apply_events(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        if "window" in self.names:
            events = random_window(events, rng, c.window_events)
        if "flip" in self.names and rng.random() < c.flip_p:
            events = flip_lr(events, self.sensor_size)
        if "background_activity" in self.names and rng.random() < c.background_activity_p:
            events = add_background_activity(events, self.sensor_size, rng, c.background_activity_ratio)
        if "reverse" in self.names and rng.random() < c.reverse_p:
            events = reverse_time(events)
        if "event_drop" in self.names:
            events = event_drop(events, self.sensor_size, rng)
        return events

    def apply_frames(self, frames: np.ndarray, rng: np.random.Generator, out_size: int = 128) -> np.ndarray:
        c = self.config
        if "crop" in self.names:
            frames = random_resized_crop(frames, rng, out_size, c.crop_scale, c.crop_ratio)
        else:
            frames = resize_nearest(frames, out_size)
        if "mirror" in self.names and rng.random() < c.mirror_p:
            frames = face_mirror(frames, keep_left=bool(rng.random() < 0.5))
        return frames
