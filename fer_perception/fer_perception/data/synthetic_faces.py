"""Labelled face crops rendered by the synthetic face generator (:mod:`fer_perception.synth.faces`).

- :func:`expression_crops`: apex frames of clips of each of the 7 :data:`SYNTHETIC_CLASSES` expressions.
- :func:`age_gender_crops`: faces of subjects with an apparent age and gender. The generator has no age or
  gender parameters, so this module gives each seed a demographic (:func:`demographics_for_seed`: age
  uniform in 18..75, gender 0 male / 1 female) and makes it visible through the identity's appearance
  (:func:`demographic_identity`): greying hair, smaller eyes and thinner lips with age; for "female" long
  hair, thinner brows, redder and fuller lips and a slightly narrower face; for "male" short hair, thicker
  brows. These are cartoon cues, good for demo weights and tests only.

Crops are cut from the clip's face box with a random jitter of position, size and aspect (a detector's box
never matches the generator's exactly: OpenCV's Haar boxes on these faces are about 1.16x wider and 0.9x
as tall as the generator's box, which the default jitter of 0.15 covers), then resized to ``size`` x ``size``
uint8 RGB.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np

from fer_perception.errors import ConfigError
from fer_perception.labels import SYNTHETIC_CLASSES

AGE_RANGE = (18.0, 75.0)


def demographics_for_seed(seed: int) -> Tuple[float, int]:
    """The apparent age (years) and gender (0 male, 1 female) of synthetic subject ``seed``."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA6E])
    return float(rng.uniform(*AGE_RANGE)), int(rng.integers(2))


def demographic_identity(seed: int, age: float, gender: int):
    """``make_identity(seed)`` altered so that ``age`` and ``gender`` are visible in the drawing."""
    from fer_perception.synth.faces import make_identity

    if gender not in (0, 1):
        raise ConfigError(f"gender must be 0 (male) or 1 (female), got {gender}")
    base = make_identity(seed)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xD3])
    a = float(np.clip((age - AGE_RANGE[0]) / (AGE_RANGE[1] - AGE_RANGE[0]), 0.0, 1.0))
    grey = float(np.clip((a - 0.2) / 0.8, 0.0, 1.0)) ** 0.8
    hair = tuple(float(h + (190.0 - h) * grey) for h in base.hair)
    skin = np.asarray(base.skin)
    if gender == 1:
        lips = tuple(float(v) for v in np.clip(skin * np.array([0.92, 0.42, 0.48]), 0, 255))
        brow = rng.uniform(0.05, 0.062)
        face_ratio = rng.uniform(0.92, 0.98)
        hair_style = 1
        lip = 0.07 - 0.025 * a
    else:
        lips = tuple(float(v) for v in np.clip(skin * np.array([0.8, 0.6, 0.58]), 0, 255))
        brow = rng.uniform(0.085, 0.1)
        face_ratio = rng.uniform(1.02, 1.08)
        hair_style = int(rng.choice([0, 2]))
        lip = 0.058 - 0.02 * a
    return replace(
        base, hair=hair, lips=lips, brow_thickness=float(brow), face_ratio=float(face_ratio),
        hair_style=hair_style, eye_height=float(0.112 - 0.026 * a + rng.normal(0, 0.002)),
        lip_thickness=float(lip),
    )


def _jittered_crop(frame: np.ndarray, box: np.ndarray, rng: np.random.Generator, size: int,
                   jitter: float) -> np.ndarray:
    import cv2

    x, y, w, h = (float(v) for v in box)
    s = 1.0 + rng.uniform(-jitter, jitter)
    aspect = 1.0 + rng.uniform(-jitter, jitter)
    cw, ch = w * s * aspect, h * s / aspect
    cx = x + w / 2 + rng.uniform(-jitter, jitter) * 0.5 * w
    cy = y + h / 2 + rng.uniform(-jitter, jitter) * 0.5 * h
    H, W = frame.shape[:2]
    x0, y0 = int(max(0, np.floor(cx - cw / 2))), int(max(0, np.floor(cy - ch / 2)))
    x1, y1 = int(min(W, np.ceil(cx + cw / 2))), int(min(H, np.ceil(cy + ch / 2)))
    crop = frame[y0:y1, x0:x1]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _config(render_size: int, n_frames: int, scene: bool):
    from fer_perception.synth.faces import SyntheticFaceConfig

    if scene:
        return SyntheticFaceConfig.scene(n_frames=n_frames, width=320, height=240, clutter=4)
    return SyntheticFaceConfig.ferdvs(width=render_size, height=render_size, n_frames=n_frames,
                                      face_size=(0.6, 0.8), rotation_deg=4.0, translation=0.04)


def expression_crops(
    seeds: Iterable[int],
    expressions: Sequence[str] = SYNTHETIC_CLASSES,
    frames_per_clip: int = 2,
    size: int = 64,
    min_strength: float = 0.85,
    jitter: float = 0.15,
    render_size: int = 128,
    scene_fraction: float = 0.25,
) -> Tuple[np.ndarray, np.ndarray]:
    """Apex crops: ``(N, size, size, 3)`` uint8 RGB and labels ``(N,)`` int64 into ``expressions``."""
    from fer_perception.synth.faces import render_clip

    crops, labels = [], []
    for seed in seeds:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xE7])
        for li, expr in enumerate(expressions):
            cfg = _config(render_size, 12, rng.random() < scene_fraction)
            clip = render_clip(expr, int(seed), cfg)
            ok = np.flatnonzero(clip.strength >= min_strength) if expr != "neutral" else np.arange(len(clip))
            for i in rng.choice(ok, size=min(frames_per_clip, len(ok)), replace=False):
                crops.append(_jittered_crop(clip.frames[i], clip.boxes[i], rng, size, jitter))
                labels.append(li)
    if not crops:
        raise ConfigError("no synthetic expression crops were made (empty seed list?)")
    return np.stack(crops), np.asarray(labels, np.int64)


def age_gender_crops(
    seeds: Iterable[int],
    frames_per_clip: int = 2,
    size: int = 64,
    jitter: float = 0.15,
    render_size: int = 128,
    scene_fraction: float = 0.25,
    expressions: Optional[Sequence[str]] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops of demographic subjects: ``(N, size, size, 3)`` uint8, ages ``(N,)`` float32, genders ``(N,)`` int64."""
    from fer_perception.synth.faces import render_clip

    exprs = list(expressions or SYNTHETIC_CLASSES)
    crops, ages, genders = [], [], []
    for seed in seeds:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA7])
        age, gender = demographics_for_seed(seed)
        ident = demographic_identity(seed, age, gender)
        cfg = _config(render_size, 8, rng.random() < scene_fraction)
        clip = render_clip(exprs[int(rng.integers(len(exprs)))], int(seed), cfg, identity=ident)
        for i in rng.choice(len(clip), size=min(frames_per_clip, len(clip)), replace=False):
            crops.append(_jittered_crop(clip.frames[i], clip.boxes[i], rng, size, jitter))
            ages.append(age)
            genders.append(gender)
    if not crops:
        raise ConfigError("no synthetic age/gender crops were made (empty seed list?)")
    return np.stack(crops), np.asarray(ages, np.float32), np.asarray(genders, np.int64)
