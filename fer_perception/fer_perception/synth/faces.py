"""Synthetic face clips: a seeded cartoon face animating from neutral to one of the six FerDVS expressions.

Every face is drawn with OpenCV (anti-aliased polygons, sub-pixel coordinates) from a small parametric model:

* an :class:`Identity` (skin, hair, lip and iris colours; face proportions; eye, brow, nose and mouth geometry;
  a resting mouth curvature) drawn from a seed, so one seed is one "subject";
* action-unit-like controls (:data:`EXPRESSION_AUS`): inner/outer brow raise (AU1/AU2), brow lowerer (AU4),
  upper lid raise (AU5), cheek raise (AU6), lid tightener (AU7), nose wrinkle (AU9), upper lip raise (AU10),
  lip corner pull (AU12), lip corner depress (AU15), lip stretch (AU20), lip press (AU24), jaw drop (AU26)
  and a one-sided sneer for disgust. Each expression is a fixed recipe of these, scaled by the clip's
  expression strength, which rises from 0 (neutral) to 1 (apex) over the clip like the CK+ sequences;
* head motion (translation, in-plane rotation, scale drift: sums of slow sinusoids with seeded phases),
  lighting (a slowly varying global gain and a linear gradient whose direction turns), random blinks and
  optional background clutter.

Coordinates of the face model are in "face units": the face ellipse has semi-axes ``(1, 1.3 * ratio)``, x to
the right, y down, the nose tip near ``(0, 0.3)``. A similarity transform maps them to pixels per frame.
The shading (dark eye sockets and brows, bright cheeks and nose bridge, a darker face rim) is there so that
OpenCV's Haar frontal-face cascade finds the face, which the frame path and the sample recording rely on.

Usage::

    clip = render_clip("happy", seed=3, config=SyntheticFaceConfig.ferdvs())   # 200x200, nose-centred
    clip.frames.shape  # (N, 200, 200, 3) uint8 RGB
    scene = render_clip("fear", seed=3, config=SyntheticFaceConfig.scene())     # 640x480, face somewhere
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from fer_perception.errors import ConfigError
from fer_perception.labels import FERDVS_CLASSES, SYNTHETIC_CLASSES, canonical

#: Every expression the generator draws, in label order (the six FerDVS classes, then neutral).
EXPRESSIONS: Tuple[str, ...] = SYNTHETIC_CLASSES

#: Action-unit-like controls at the apex of each expression (0..1; missing = 0).
EXPRESSION_AUS: Dict[str, Dict[str, float]] = {
    "happy": {"AU6": 1.0, "AU12": 1.0, "AU26": 0.25, "teeth": 1.0},
    "fear": {"AU1": 1.0, "AU2": 0.6, "AU4": 0.6, "AU5": 1.0, "AU20": 1.0, "AU26": 0.35, "teeth": 0.6},
    "surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 1.0, "AU26": 1.0, "round": 1.0},
    "anger": {"AU4": 1.0, "AU7": 1.0, "AU24": 1.0, "AU15": 0.2},
    "disgust": {"AU9": 1.0, "AU10": 1.0, "sneer": 1.0, "AU4": 0.4, "AU7": 0.4, "AU15": 0.3, "teeth": 0.7},
    "sadness": {"AU1": 1.0, "AU4": 0.35, "AU15": 1.0, "droop": 1.0},
    "neutral": {},
}

_AU_NAMES = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU20", "AU24", "AU26",
             "round", "sneer", "teeth", "droop")

_ALIASES = {"sad": "sadness", "angry": "anger", "happiness": "happy", "surprised": "surprise", "scared": "fear",
            "disgusted": "disgust"}


class UnknownExpressionError(ConfigError):
    """An expression name the synthetic face generator does not draw."""


def expression_name(expression: str) -> str:
    """Our name of ``expression`` (``"sad"`` -> ``"sadness"``); :class:`UnknownExpressionError` otherwise."""
    key = str(expression).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in EXPRESSION_AUS:
        key2 = _ALIASES.get(canonical(key), canonical(key))
        if key2 not in EXPRESSION_AUS:
            raise UnknownExpressionError(
                f"unknown expression {expression!r}; the generator draws {', '.join(EXPRESSIONS)}"
            )
        key = key2
    return key


@dataclass
class SyntheticFaceConfig:
    """How clips are rendered.

    Attributes:
        width, height: image size in pixels.
        fps: frame rate; ``times_s[i] = i / fps``.
        n_frames: frames per clip.
        face_size: range (min, max) of the face box height as a fraction of the image height (drawn per clip).
        centered: True puts the nose tip at the image centre (FerDVS-style aligned crop); False places the face
            at a random position inside the image (a scene).
        translation: head translation amplitude, fraction of the face height.
        rotation_deg: in-plane head rotation amplitude, degrees.
        scale_drift: relative amplitude of the face scale change.
        light_gain: amplitude of the global gain variation (0.1 = +-10 %).
        light_gradient: strength of the linear lighting gradient across the image (0 = flat).
        light_speed_hz: rough frequency of the lighting changes.
        motion_speed_hz: rough frequency of the head motion.
        onset, apex: fractions of the clip where the expression starts to move and where it reaches apex.
        blink_rate_hz: mean blink rate (0 disables blinks).
        clutter: number of background shapes (0 = plain gradient background).
        blur: Gaussian blur sigma in pixels applied to each frame (optics), 0 disables.
    """

    width: int = 200
    height: int = 200
    fps: float = 30.0
    n_frames: int = 48
    face_size: Tuple[float, float] = (0.72, 0.82)
    centered: bool = True
    translation: float = 0.02
    rotation_deg: float = 2.0
    scale_drift: float = 0.02
    light_gain: float = 0.06
    light_gradient: float = 0.15
    light_speed_hz: float = 0.3
    motion_speed_hz: float = 0.5
    onset: float = 0.1
    apex: float = 0.75
    blink_rate_hz: float = 0.15
    clutter: int = 0
    blur: float = 0.6

    def __post_init__(self) -> None:
        if int(self.width) < 32 or int(self.height) < 32:
            raise ConfigError(f"SyntheticFaceConfig: image size {self.width}x{self.height} is below 32x32")
        if int(self.n_frames) < 1:
            raise ConfigError(f"SyntheticFaceConfig: n_frames must be >= 1, got {self.n_frames}")
        if not self.fps > 0:
            raise ConfigError(f"SyntheticFaceConfig: fps must be > 0, got {self.fps}")
        lo, hi = self.face_size
        if not (0.05 <= lo <= hi <= 1.5):
            raise ConfigError("SyntheticFaceConfig: face_size must satisfy 0.05 <= min <= max <= 1.5, "
                              f"got {self.face_size}")
        if not (0.0 <= self.onset < self.apex <= 1.0):
            raise ConfigError("SyntheticFaceConfig: need 0 <= onset < apex <= 1, "
                              f"got onset={self.onset} apex={self.apex}")

    @classmethod
    def ferdvs(cls, **overrides) -> "SyntheticFaceConfig":
        """200x200 face-centred crops, 30 fps, little residual motion (like the aligned FerDVS sources)."""
        return replace(cls(), **overrides)

    @classmethod
    def scene(cls, **overrides) -> "SyntheticFaceConfig":
        """640x480 scene with the face somewhere, more head motion and background clutter."""
        base = cls(width=640, height=480, face_size=(0.32, 0.5), centered=False, translation=0.08,
                   rotation_deg=5.0, scale_drift=0.05, light_gain=0.1, light_gradient=0.25, clutter=10)
        return replace(base, **overrides)


@dataclass(frozen=True)
class Identity:
    """Appearance of one synthetic subject (all geometry in face units)."""

    seed: int
    skin: Tuple[float, float, float]
    hair: Tuple[float, float, float]
    lips: Tuple[float, float, float]
    iris: Tuple[float, float, float]
    shirt: Tuple[float, float, float]
    background: Tuple[Tuple[float, float, float], Tuple[float, float, float]]
    face_ratio: float
    eye_spacing: float
    eye_width: float
    eye_height: float
    eye_y: float
    brow_thickness: float
    brow_gap: float
    nose_length: float
    mouth_width: float
    mouth_y: float
    lip_thickness: float
    resting_smile: float
    hair_style: int

    def to_dict(self) -> dict:
        return asdict(self)


def make_identity(seed: int) -> Identity:
    """A random but plausible face appearance, fully determined by ``seed``."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1D])
    tone = rng.uniform(0.0, 1.0)
    dark = np.array([110.0, 72.0, 50.0])
    light = np.array([238.0, 200.0, 172.0])
    skin = dark + (light - dark) * tone + rng.normal(0, 6, 3)
    hair_pal = np.array([[30, 22, 18], [70, 45, 25], [120, 80, 40], [200, 160, 100], [60, 60, 60], [140, 50, 30]])
    hair = hair_pal[rng.integers(len(hair_pal))] + rng.normal(0, 6, 3)
    lips = skin * np.array([0.78, 0.52, 0.52]) + rng.normal(0, 5, 3)
    iris_pal = np.array([[60, 40, 25], [40, 70, 110], [70, 90, 50], [90, 60, 30]])
    iris = iris_pal[rng.integers(len(iris_pal))] + rng.normal(0, 5, 3)
    shirt = rng.uniform(30, 220, 3)
    bg0 = rng.uniform(40, 210, 3)
    bg1 = np.clip(bg0 + rng.normal(0, 45, 3), 20, 235)
    c = lambda a: tuple(float(v) for v in np.clip(a, 0, 255))  # noqa: E731
    return Identity(
        seed=int(seed), skin=c(skin), hair=c(hair), lips=c(lips), iris=c(iris), shirt=c(shirt),
        background=(c(bg0), c(bg1)),
        face_ratio=float(rng.uniform(0.92, 1.08)),
        eye_spacing=float(rng.uniform(0.38, 0.46)),
        eye_width=float(rng.uniform(0.19, 0.24)),
        eye_height=float(rng.uniform(0.085, 0.11)),
        eye_y=float(rng.uniform(-0.24, -0.16)),
        brow_thickness=float(rng.uniform(0.06, 0.095)),
        brow_gap=float(rng.uniform(0.2, 0.27)),
        nose_length=float(rng.uniform(0.42, 0.55)),
        mouth_width=float(rng.uniform(0.3, 0.4)),
        mouth_y=float(rng.uniform(0.62, 0.72)),
        lip_thickness=float(rng.uniform(0.045, 0.075)),
        resting_smile=float(rng.uniform(-0.025, 0.025)),
        hair_style=int(rng.integers(3)),
    )


@dataclass
class FaceClip:
    """One rendered clip.

    Attributes:
        frames: ``(N, H, W, 3)`` uint8 RGB.
        times_s: ``(N,)`` float64 frame times in seconds (start at 0).
        boxes: ``(N, 4)`` float ``(x, y, w, h)`` face box (forehead to chin, cheek to cheek) per frame.
        nose: ``(N, 2)`` float nose tip position in pixels.
        label: expression name (one of :data:`EXPRESSIONS`).
        strength: ``(N,)`` expression strength, 0 = neutral, 1 = apex.
        identity: the subject's :class:`Identity`.
        seed: the clip's seed.
        aus: ``(N, len(AU names))`` action-unit values actually drawn (after strength and blinks).
    """

    frames: np.ndarray
    times_s: np.ndarray
    boxes: np.ndarray
    nose: np.ndarray
    label: str
    strength: np.ndarray
    identity: Identity
    seed: int
    aus: np.ndarray = field(default=None, repr=False)
    au_names: Tuple[str, ...] = _AU_NAMES

    @property
    def expression_strength(self) -> np.ndarray:
        return self.strength

    @property
    def label_index(self) -> int:
        """Index of the label in :data:`SYNTHETIC_CLASSES` (FerDVS order for the six expressions)."""
        return SYNTHETIC_CLASSES.index(self.label)

    @property
    def ferdvs_label(self) -> Optional[int]:
        """1-based FerDVS label (folds.csv), None for neutral."""
        return FERDVS_CLASSES.index(self.label) + 1 if self.label in FERDVS_CLASSES else None

    def __len__(self) -> int:
        return len(self.frames)


# ----------------------------------------------------------------------------------------------------------
# geometry helpers (all in face units, returned as (K, 2) float arrays)


def _ellipse(cx: float, cy: float, ax: float, ay: float, n: int = 40, a0: float = 0.0, a1: float = 2 * math.pi):
    a = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-9)
    return np.stack([cx + ax * np.cos(a), cy + ay * np.sin(a)], axis=1)


def _thick_curve(points: np.ndarray, thickness: np.ndarray) -> np.ndarray:
    """A closed polygon around a polyline with per-point thickness (tapered strokes such as brows)."""
    d = np.gradient(points, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
    half = (np.asarray(thickness, float) / 2)[:, None]
    return np.concatenate([points + nrm * half, (points - nrm * half)[::-1]], axis=0)


def _quad_curve(x0: float, x1: float, y_end0: float, y_mid: float, y_end1: float, n: int = 15) -> np.ndarray:
    """Points of a parabola-like curve through (x0, y_end0), the middle at y_mid and (x1, y_end1)."""
    u = np.linspace(-1.0, 1.0, n)
    x = x0 + (u + 1) / 2 * (x1 - x0)
    ends = np.where(u < 0, y_end0, y_end1)
    y = y_mid + (ends - y_mid) * u**2
    return np.stack([x, y], axis=1)


def _bezier(ctrl: np.ndarray, n: int = 12) -> np.ndarray:
    """Points of the quadratic Bezier curve with control points ``ctrl`` (3, 2)."""
    u = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - u) ** 2 * ctrl[0] + 2 * u * (1 - u) * ctrl[1] + u**2 * ctrl[2]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# ----------------------------------------------------------------------------------------------------------
# drawing


class _Painter:
    """Draws face-unit shapes into an RGB uint8 image through a similarity transform."""

    SHIFT = 4

    def __init__(self, img: np.ndarray, center: Tuple[float, float], scale: float, angle_rad: float) -> None:
        self.img = img
        c, s = math.cos(angle_rad), math.sin(angle_rad)
        self.m = np.array([[c * scale, -s * scale], [s * scale, c * scale]])
        self.t = np.asarray(center, float)
        self.scale = scale

    def px(self, pts: np.ndarray) -> np.ndarray:
        return pts @ self.m.T + self.t

    def _fixed(self, pts: np.ndarray) -> np.ndarray:
        return np.round(self.px(pts) * (1 << self.SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def fill(self, pts: np.ndarray, color) -> None:
        cv2.fillPoly(self.img, [self._fixed(pts)], _col(color), cv2.LINE_AA, self.SHIFT)

    def line(self, pts: np.ndarray, color, width: float, closed: bool = False) -> None:
        th = max(1, int(round(width * self.scale)))
        cv2.polylines(self.img, [self._fixed(pts)], closed, _col(color), th, cv2.LINE_AA, self.SHIFT)


def _col(c) -> Tuple[float, float, float]:
    return tuple(float(min(255.0, max(0.0, v))) for v in c)


def _mix(a, b, w: float):
    """Colour ``a`` blended towards ``b`` by ``w`` (0..1)."""
    w = float(min(1.0, max(0.0, w)))
    return tuple(float(x) * (1 - w) + float(y) * w for x, y in zip(a, b))


def _shade(c, f: float):
    return tuple(float(v) * f for v in c)


def _draw_face(p: _Painter, ident: Identity, au: Dict[str, float], blink: float) -> None:
    """Draw the whole head (hair, ears, face, features) with the given action-unit values."""
    g = au.get
    skin = ident.skin
    r = ident.face_ratio
    fy = 1.3 * r  # face semi-axis y
    dark = (20.0, 12.0, 10.0)

    # neck and shoulders
    p.fill(np.array([[-0.45, 0.6 * fy], [0.45, 0.6 * fy], [0.5, 2.3], [-0.5, 2.3]]), _shade(skin, 0.78))
    p.fill(_ellipse(0.0, 2.9, 2.3, 1.0, 48), ident.shirt)
    # hair behind the head
    if ident.hair_style == 0:
        p.fill(_ellipse(0.0, -0.25 * fy, 1.12, 1.05 * fy, 48), ident.hair)
    elif ident.hair_style == 1:
        p.fill(_ellipse(0.0, 0.0, 1.18, 1.15 * fy, 48), ident.hair)
    else:
        p.fill(_ellipse(0.0, -0.45 * fy, 1.06, 0.85 * fy, 48), ident.hair)
    # ears
    for sx in (-1, 1):
        p.fill(_ellipse(sx * 0.97, -0.05, 0.16, 0.27, 20), _shade(skin, 0.85))
    # face: darker rim then the lit face (a cheap radial shading)
    p.fill(_ellipse(0.0, 0.0, 1.0, fy, 64), _shade(skin, 0.8))
    p.fill(_ellipse(0.0, -0.04, 0.9, fy * 0.93, 64), _shade(skin, 0.92))
    p.fill(_ellipse(0.0, -0.06, 0.74, fy * 0.82, 64), skin)
    # fringe
    if ident.hair_style != 1:
        fringe = np.concatenate([
            _ellipse(0.0, 0.0, 1.0, fy, 30, math.pi * 1.05, math.pi * 1.95),
            _quad_curve(0.93, -0.93, -0.62 * fy, -0.78 * fy - 0.05 * ident.hair_style, -0.62 * fy, 20),
        ])
        p.fill(fringe, ident.hair)
    else:
        p.fill(_ellipse(0.0, -0.98 * fy, 0.8, 0.22, 30), ident.hair)

    # forehead wrinkles (AU1/AU2) and glabella lines (AU4)
    fw = max(g("AU1", 0.0), g("AU2", 0.0))
    if fw > 0.02:
        for k, yy in enumerate((-0.62, -0.52)):
            p.line(_quad_curve(-0.42, 0.42, yy * fy + 0.02, yy * fy - 0.03, yy * fy + 0.02, 12),
                   _mix(skin, _shade(skin, 0.6), 0.7 * fw), 0.025)
    if g("AU4", 0.0) > 0.02:
        for sx in (-1, 1):
            p.line(np.array([[sx * 0.07, -0.42], [sx * 0.05, -0.28]]), _mix(skin, _shade(skin, 0.55), 0.8 * g("AU4")),
                   0.025)

    # eye sockets (shadow), eyes, lids
    eye_y = ident.eye_y
    ew, eh = ident.eye_width, ident.eye_height
    for sx in (-1, 1):
        cx = sx * ident.eye_spacing
        p.fill(_ellipse(cx, eye_y - 0.03, ew * 1.55, eh * 2.3, 32), _shade(skin, 0.74))
    up_scale = max(0.05, 1 + 0.9 * g("AU5", 0.0) - 0.45 * g("AU7", 0.0) - 0.3 * g("AU6", 0.0) - 0.3 * g("droop", 0.0))
    up_scale *= max(0.0, 1.0 - blink)
    lo_scale = max(0.05, 1 - 0.55 * g("AU6", 0.0) - 0.35 * g("AU7", 0.0) + 0.25 * g("AU5", 0.0))
    lo_scale *= max(0.15, 1.0 - blink)
    for sx in (-1, 1):
        cx = sx * ident.eye_spacing
        u = np.linspace(-1, 1, 17)
        xs = cx + ew * u
        prof = (1 - u**2) ** 0.7
        tilt = 0.02 * sx * u  # outer corner slightly higher
        y_up = eye_y - eh * up_scale * prof - tilt
        y_lo = eye_y + eh * 0.75 * lo_scale * prof - tilt
        eye = np.concatenate([np.stack([xs, y_up], 1), np.stack([xs[::-1], y_lo[::-1]], 1)])
        if up_scale > 0.03:
            p.fill(eye, (235, 232, 228))
            ia = np.linspace(0, 2 * math.pi, 24, endpoint=False)
            ir = min(0.085, ew * 0.45)
            ix, iy = cx + ir * np.cos(ia), eye_y + ir * np.sin(ia)
            yl = np.interp(ix, xs, y_up)
            yh = np.interp(ix, xs, y_lo)
            iris = np.stack([ix, np.clip(iy, yl, yh)], 1)
            p.fill(iris, ident.iris)
            pupil = np.stack([cx + 0.4 * ir * np.cos(ia), np.clip(eye_y + 0.4 * ir * np.sin(ia), yl, yh)], 1)
            p.fill(pupil, (12, 10, 10))
        # upper lid line (lashes) and lower lid
        p.line(np.stack([xs, y_up], 1), dark, 0.035)
        p.line(np.stack([xs, y_lo], 1), _shade(skin, 0.6), 0.015)
        # cheek raise: the bulge under the eye
        if g("AU6", 0.0) > 0.02:
            p.line(np.stack([xs * 0.95 + cx * 0.05, y_lo + 0.08], 1), _mix(skin, _shade(skin, 0.65), 0.8 * g("AU6")),
                   0.02)

    # brows
    for sx in (-1, 1):
        inner_x = sx * (ident.brow_gap / 2 + 0.05 - 0.07 * g("AU4", 0.0))
        outer_x = sx * (ident.eye_spacing + ew * 1.25)
        base = eye_y - eh - 0.17
        inner_y = base + 0.02 - 0.2 * g("AU1", 0.0) + 0.13 * g("AU4", 0.0) - 0.03 * g("AU9", 0.0)
        outer_y = base + 0.03 - 0.17 * g("AU2", 0.0) + 0.03 * g("AU4", 0.0) + 0.06 * g("AU1", 0.0) * (1 - g("AU2", 0.0))
        arch = 0.06 + 0.05 * g("AU2", 0.0) - 0.05 * g("AU4", 0.0)
        xs = np.linspace(inner_x, outer_x, 15)
        u = np.linspace(0.0, 1.0, 15)
        ys = inner_y + (outer_y - inner_y) * u - arch * np.sin(np.pi * u)
        th = ident.brow_thickness * (1.15 - 0.6 * u)
        p.fill(_thick_curve(np.stack([xs, ys], 1), th), _mix(ident.hair, dark, 0.55))

    # nose: bridge shadows, tip highlight, nostrils, wrinkles (AU9)
    nl = ident.nose_length
    tip_y = eye_y + nl + 0.02
    for sx in (-1, 1):
        p.line(np.array([[sx * 0.1, eye_y + 0.02], [sx * 0.11, eye_y + 0.5 * nl], [sx * 0.16, tip_y - 0.04]]),
               _shade(skin, 0.8), 0.05)
    p.fill(_ellipse(0.0, tip_y - 0.05, 0.09, 0.08, 20), _mix(skin, (255, 255, 255), 0.12))
    flare = 1 + 0.35 * g("AU9", 0.0)
    lift = 0.04 * g("AU9", 0.0) + 0.025 * g("AU10", 0.0)
    for sx in (-1, 1):
        p.fill(_ellipse(sx * 0.085 * flare, tip_y - lift, 0.05 * flare, 0.025, 16), _shade(skin, 0.35))
        p.line(_ellipse(sx * 0.15 * flare, tip_y - 0.04 - lift, 0.06, 0.07, 10, -math.pi / 2 - sx * 0.4,
                        math.pi / 2 - sx * 0.4)
               if sx > 0 else
               _ellipse(sx * 0.15 * flare, tip_y - 0.04 - lift, 0.06, 0.07, 10, math.pi / 2 + 0.4, 1.5 * math.pi + 0.4),
               _shade(skin, 0.62), 0.02)
    if g("AU9", 0.0) > 0.02:
        for k in range(3):
            yy = eye_y + 0.06 + 0.06 * k
            p.line(_quad_curve(-0.11, 0.11, yy + 0.015, yy - 0.01, yy + 0.015, 8),
                   _mix(skin, _shade(skin, 0.5), 0.9 * g("AU9")), 0.02)

    # mouth
    my = ident.mouth_y * r
    round_ = g("round", 0.0)
    mw = ident.mouth_width * (1 + 0.28 * g("AU12", 0.0) + 0.35 * g("AU20", 0.0) - 0.25 * g("AU24", 0.0)
                              - 0.42 * round_)
    corner_up = 0.13 * g("AU12", 0.0) - 0.13 * g("AU15", 0.0) + ident.resting_smile - 0.02 * g("AU20", 0.0)
    sneer = 0.1 * g("sneer", 0.0)
    corner_l = my - corner_up            # image-left corner (subject's right)
    corner_r = my - corner_up - sneer    # raised on one side for disgust
    opening = 0.3 * g("AU26", 0.0) + 0.08 * g("AU20", 0.0) * g("AU26", 0.0) + 0.04 * g("AU10", 0.0)
    lip = ident.lip_thickness * (1 - 0.75 * g("AU24", 0.0))
    up_raise = 0.06 * g("AU10", 0.0)
    # the lips' meeting line bends down in the middle for a smile (corners up) and up for sadness
    mid_up = my - 0.3 * corner_up * 0.3 - opening / 2 - up_raise
    mid_lo = my + opening / 2 + 0.1 * g("AU15", 0.0) * 0.3
    if round_ > 0:
        mid_lo = my + opening * (0.5 + 0.25 * round_)
    inner_up = _quad_curve(-mw, mw, corner_l, mid_up, corner_r, 21)
    inner_lo = _quad_curve(-mw, mw, corner_l, mid_lo, corner_r, 21)[::-1]
    outer_up = _quad_curve(-mw - 0.02, mw + 0.02, corner_l, mid_up - lip * 1.1, corner_r, 21)
    cupid = np.exp(-((outer_up[:, 0] / 0.07) ** 2)) * lip * 0.35
    outer_up = outer_up + np.stack([np.zeros(21), cupid], 1)
    outer_lo = _quad_curve(-mw - 0.02, mw + 0.02, corner_l, mid_lo + lip * 1.3, corner_r, 21)[::-1]
    # nasolabial folds: deepen with smiles (AU12) and the upper lip raise (AU10)
    fold = max(g("AU12", 0.0), g("AU10", 0.0), 0.6 * g("AU20", 0.0))
    if fold > 0.02:
        for sx, cy in ((-1, corner_l), (1, corner_r)):
            w = fold * (1.0 if (sx > 0 or g("sneer", 0.0) < 0.5) else 0.6)
            p.line(_bezier(np.array([[sx * 0.2, tip_y - 0.03], [sx * (mw + 0.14), (tip_y + cy) / 2],
                                     [sx * (mw + 0.06), cy + 0.05]])),
                   _mix(skin, _shade(skin, 0.55), 0.85 * w), 0.025)
    p.fill(np.concatenate([outer_up, outer_lo]), ident.lips)
    if opening > 0.012:
        inside = np.concatenate([inner_up, inner_lo])
        p.fill(inside, (45, 18, 20))
        teeth = g("teeth", 0.0)
        if teeth > 0.02:
            t_lo = inner_up.copy()
            t_lo[:, 1] = inner_up[:, 1] + np.minimum(0.07, (inner_lo[::-1, 1] - inner_up[:, 1]) * 0.6)
            p.fill(np.concatenate([inner_up, t_lo[::-1]]), _mix((45, 18, 20), (235, 232, 222), teeth))
    else:
        p.line(inner_up, _shade(ident.lips, 0.45), 0.03)
    # lip press shadow and chin
    if g("AU24", 0.0) > 0.02:
        p.line(_quad_curve(-0.12, 0.12, my + 0.16, my + 0.14, my + 0.16, 8),
               _mix(skin, _shade(skin, 0.6), 0.7 * g("AU24")), 0.02)
    p.line(_quad_curve(-0.2, 0.2, 1.07 * fy, 1.12 * fy, 1.07 * fy, 10), _shade(skin, 0.82), 0.03)


def _clip_aus(expression: str, strength: np.ndarray) -> np.ndarray:
    apex = EXPRESSION_AUS[expression]
    vec = np.array([apex.get(n, 0.0) for n in _AU_NAMES])
    return strength[:, None] * vec[None, :]


def _background(cfg: SyntheticFaceConfig, ident: Identity, rng: np.random.Generator) -> np.ndarray:
    h, w = int(cfg.height), int(cfg.width)
    c0 = np.array(ident.background[0], np.float32)
    c1 = np.array(ident.background[1], np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (math.cos(ang) * xx / w + math.sin(ang) * yy / h)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    bg = (c0[None, None] * (1 - ramp[..., None]) + c1[None, None] * ramp[..., None]).astype(np.uint8)
    for _ in range(int(cfg.clutter)):
        colr = tuple(float(v) for v in rng.uniform(20, 235, 3))
        kind = rng.integers(3)
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        size = int(rng.uniform(0.04, 0.18) * min(w, h))
        if kind == 0:
            cv2.rectangle(bg, (cx - size, cy - size // 2), (cx + size, cy + size // 2), colr, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(bg, (cx, cy), size // 2 + 1, colr, -1, cv2.LINE_AA)
        else:
            cv2.line(bg, (cx - size, cy), (cx + size, cy + int(rng.uniform(-size, size))), colr,
                     max(1, size // 8), cv2.LINE_AA)
    return bg


def _motion(rng: np.random.Generator, n: int, t: np.ndarray, speed_hz: float) -> np.ndarray:
    """``n`` smooth random signals in about [-1, 1] over times ``t`` (sum of two sinusoids each)."""
    f = rng.uniform(0.5, 1.5, (n, 2)) * speed_hz
    ph = rng.uniform(0, 2 * math.pi, (n, 2))
    a = np.array([0.7, 0.3])
    return (a[None, :, None] * np.sin(2 * math.pi * f[..., None] * t[None, None, :] + ph[..., None])).sum(1)


def _blinks(rng: np.random.Generator, t: np.ndarray, rate_hz: float) -> np.ndarray:
    """Blink closure (0 open .. 1 closed) per frame: random blinks of ~150 ms."""
    out = np.zeros(len(t))
    if rate_hz <= 0 or len(t) == 0:
        return out
    duration = float(t[-1] - t[0]) + 1e-9
    n = rng.poisson(rate_hz * duration)
    for c in rng.uniform(t[0], t[-1] + 1e-9, n):
        out = np.maximum(out, np.clip(1 - np.abs(t - c) / 0.075, 0, 1))
    return out


def render_clip(
    expression: str,
    seed: int,
    config: Optional[SyntheticFaceConfig] = None,
    identity: Optional[Identity] = None,
) -> FaceClip:
    """Render one clip of a face going from neutral to the apex of ``expression``.

    Args:
        expression: one of :data:`EXPRESSIONS` (aliases such as ``"sad"`` or ``"angry"`` accepted).
        seed: seeds head motion, lighting, blinks, face size and position, and (unless ``identity`` is given)
            the identity too. Same arguments give the same clip, bit for bit.
        config: :class:`SyntheticFaceConfig` (default: 200x200 face-centred, 48 frames at 30 fps).
        identity: the subject (see :func:`make_identity`); by default ``make_identity(seed)``.
    """
    cfg = config or SyntheticFaceConfig()
    name = expression_name(expression)
    ident = identity if identity is not None else make_identity(seed)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xC1, SYNTHETIC_CLASSES.index(name)])
    n, h, w = int(cfg.n_frames), int(cfg.height), int(cfg.width)
    times = np.arange(n, dtype=np.float64) / float(cfg.fps)
    prog = np.linspace(0.0, 1.0, n) if n > 1 else np.ones(1)
    strength = _smoothstep((prog - cfg.onset) / (cfg.apex - cfg.onset))
    if name == "neutral":
        strength = np.zeros(n)
    aus = _clip_aus(name, strength)
    blink = _blinks(rng, times, cfg.blink_rate_hz)

    face_h = rng.uniform(*cfg.face_size) * h          # face box height in pixels
    fy = 1.3 * ident.face_ratio
    scale0 = face_h / (2 * fy)                        # pixels per face unit
    tip_y = ident.eye_y + ident.nose_length + 0.02    # nose tip in face units (x = 0)
    if cfg.centered:
        centre0 = np.array([w / 2.0, h / 2.0])        # where the nose tip goes
    else:
        slack = 1.0 + cfg.scale_drift + 0.05
        move = cfg.translation * face_h
        lo_x = 1.2 * scale0 * slack + move
        hi_x = w - lo_x
        lo_y = (fy + tip_y) * scale0 * slack + move
        hi_y = h - (fy - tip_y) * scale0 * slack - move
        cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else w / 2.0
        cy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else (lo_y + hi_y) / 2.0
        centre0 = np.array([cx, cy])
    mot = _motion(rng, 4, times, cfg.motion_speed_hz)
    light = _motion(rng, 2, times, cfg.light_speed_hz)
    bg = _background(cfg, ident, rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx = xx / w - 0.5
    yy = yy / h - 0.5

    frames = np.empty((n, h, w, 3), np.uint8)
    boxes = np.empty((n, 4))
    nose = np.empty((n, 2))
    rim = _ellipse(0.0, 0.0, 1.0, fy, 64)
    for i in range(n):
        scale = scale0 * (1 + cfg.scale_drift * mot[2, i])
        ang = math.radians(cfg.rotation_deg) * mot[3, i]
        nose_px = centre0 + np.array([mot[0, i], mot[1, i]]) * cfg.translation * face_h
        c, s = math.cos(ang), math.sin(ang)
        # place the face origin so that the nose tip lands on nose_px
        origin = nose_px - scale * np.array([-s * tip_y, c * tip_y])
        img = bg.copy()
        painter = _Painter(img, (float(origin[0]), float(origin[1])), scale, ang)
        au = {k: float(v) for k, v in zip(_AU_NAMES, aus[i]) if v > 0}
        _draw_face(painter, ident, au, float(blink[i]))
        ring = painter.px(rim)
        x0, y0 = ring.min(0)
        x1, y1 = ring.max(0)
        boxes[i] = (x0, y0, x1 - x0, y1 - y0)
        nose[i] = nose_px
        # lighting: global gain and a turning linear gradient
        gain = 1.0 + cfg.light_gain * light[0, i]
        ga = math.pi * light[1, i]
        gmap = gain * (1.0 + cfg.light_gradient * (math.cos(ga) * xx + math.sin(ga) * yy))
        if cfg.blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), cfg.blur)
        frames[i] = np.clip(img.astype(np.float32) * gmap[..., None], 0, 255).astype(np.uint8)
    return FaceClip(frames=frames, times_s=times, boxes=boxes, nose=nose, label=name, strength=strength,
                    identity=ident, seed=int(seed), aus=aus)


def haar_detection_rate(clip: FaceClip, step: int = 1, min_iou: float = 0.3, detector=None) -> float:
    """Fraction of frames where a face detector finds a box overlapping the true face box (IoU >= min_iou).

    ``detector``: any object with ``detect(rgb) -> [Detection]``; default OpenCV's Haar
    ``haarcascade_frontalface_default.xml`` through ``cv2.CascadeClassifier``.
    """
    casc = _haar() if detector is None else None
    hits = 0
    idx = range(0, len(clip), max(1, step))
    for i in idx:
        if casc is not None:
            gray = cv2.cvtColor(clip.frames[i], cv2.COLOR_RGB2GRAY)
            min_side = max(24, int(0.35 * clip.boxes[i, 3]))
            boxes = casc.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(min_side, min_side))
        else:
            boxes = [d.box for d in detector.detect(clip.frames[i])]
        if any(_iou(b, clip.boxes[i]) >= min_iou for b in boxes):
            hits += 1
    return hits / max(1, len(idx))


def nose_centred_crops(clip: FaceClip, size: int = 200, face_fraction: float = 0.77,
                       follow: bool = False) -> FaceClip:
    """FerDVS-style crops of a (scene) clip: squares centred on the nose, the face ``face_fraction`` of the side.

    ``follow=False`` keeps the crop of the first frame for the whole clip (the FerDVS sources were registered
    to their first frame, so head motion stays visible); ``follow=True`` re-centres on every frame.
    Boxes and nose positions are mapped into the crops.
    """
    if int(size) < 8 or not 0.05 < face_fraction <= 1.5:
        raise ConfigError(f"nose_centred_crops: need size >= 8 and 0.05 < face_fraction <= 1.5, got {size}, "
                          f"{face_fraction}")
    n = len(clip)
    frames = np.empty((n, size, size, 3), np.uint8)
    boxes = np.empty((n, 4))
    nose = np.empty((n, 2))
    for i in range(n):
        j = i if follow else 0
        side = clip.boxes[j, 3] / face_fraction
        k = size / side
        cx, cy = clip.nose[j]
        m = np.array([[k, 0.0, size / 2.0 - k * cx], [0.0, k, size / 2.0 - k * cy]])
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        frames[i] = cv2.warpAffine(clip.frames[i], m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)
        x, y, w, h = clip.boxes[i]
        boxes[i] = (k * x + m[0, 2], k * y + m[1, 2], k * w, k * h)
        nose[i] = (k * clip.nose[i, 0] + m[0, 2], k * clip.nose[i, 1] + m[1, 2])
    return replace(clip, frames=frames, boxes=boxes, nose=nose)


_CASCADE = None


def _haar():
    global _CASCADE
    if _CASCADE is None:
        _CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    return _CASCADE


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax, ay, aw, ah = map(float, a)
    bx, by, bw, bh = map(float, b)
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / max(aw * ah + bw * bh - inter, 1e-9)
