"""Synthetic FerDVS datasets: rendered face clips through the DVS emulator, written in the FerDVS layout.

The result looks exactly like the converted datasets of Spiking-FER (docs/facts.md#spiking-fer), so the reader
(:mod:`fer_perception.data.ferdvs`), the training command and the evaluation treat it the same way::

    <root>/FerDVS/<dataset>/folds.csv                  subject;sequence;label;fold0..fold9 (no header, label 1-based)
    <root>/FerDVS/<dataset>/<subject>/<seq:03d>.h5     dataset "events" (N, 4) uint32 [t_us, x, y, p], 200x200

Subjects are identities (``S001``, ``S002``, ...): every clip of a subject uses the same
:class:`~fer_perception.synth.faces.Identity`. Each subject gets ``clips_per_class`` clips of each of the six
FerDVS expressions, numbered 001.. in a seeded random order (like the CK+ sessions). The fold columns follow the
official files: each column independently marks a random, label-stratified ``test_fraction`` of the sequences
as test (``1``); a sequence may be test in several folds or in none, and subjects are shared between train and
test (use :func:`fer_perception.data.splits.subject_kfold` for subject-independent splits).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import cv2
import numpy as np

from fer_perception.errors import ConfigError, DatasetError
from fer_perception.events.batch import EventBatch
from fer_perception.labels import FERDVS_CLASSES
from fer_perception.synth.emulator import DvsEmulator, EmulatorConfig
from fer_perception.synth.faces import FaceClip, SyntheticFaceConfig, make_identity, render_clip

PathLike = Union[str, Path]


def derive_seed(*parts: int) -> int:
    """A 31-bit seed derived from integer parts (stable across platforms and numpy versions)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Frames ``(N, H, W[, 3])`` resized to ``width`` x ``height`` (area interpolation when shrinking)."""
    n, h, w = frames.shape[:3]
    if (w, h) == (width, height):
        return frames
    interp = cv2.INTER_AREA if width < w and height < h else cv2.INTER_LINEAR
    out = np.empty((n, height, width) + frames.shape[3:], frames.dtype)
    for i in range(n):
        out[i] = cv2.resize(frames[i], (width, height), interpolation=interp)
    return out


def clip_to_events(clip: FaceClip, config: Optional[EmulatorConfig] = None, seed: Optional[int] = None) -> EventBatch:
    """The events a DVS would record of ``clip`` (default: the paper's v2e settings, seeded by the clip seed).

    Frames are resized to the emulator's sensor size when it has one and it differs from the clip's.
    """
    cfg = config or EmulatorConfig.paper()
    frames = clip.frames
    h, w = frames.shape[1:3]
    frames = resize_frames(frames, int(cfg.width or w), int(cfg.height or h))
    emu = DvsEmulator(cfg, seed=clip.seed if seed is None else seed)
    return emu.emulate(frames, clip.times_s)


def events_array(batch: EventBatch) -> np.ndarray:
    """``(N, 4)`` uint32 ``[t_us, x, y, p]`` as stored in FerDVS ``.h5`` files (p 1 = ON)."""
    if len(batch) and int(batch.t.min()) < 0:
        raise DatasetError("events before t=0 cannot be stored as uint32 microseconds")
    return np.stack([(batch.t // 1000).astype(np.uint32), batch.x.astype(np.uint32), batch.y.astype(np.uint32),
                     (batch.p > 0).astype(np.uint32)], axis=1) if len(batch) else np.zeros((0, 4), np.uint32)


def write_h5(path: PathLike, batch: EventBatch, attrs: Optional[dict] = None) -> Path:
    """Write one FerDVS event file (dataset ``events``, (N, 4) uint32); optional attributes on the dataset."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("events", data=events_array(batch))
        for k, v in (attrs or {}).items():
            ds.attrs[k] = v
    return path


def official_style_folds(labels: Sequence[int], n_folds: int = 10, test_fraction: float = 0.2,
                         seed: int = 0) -> np.ndarray:
    """``(N, n_folds)`` 0/1 matrix: column k marks a random label-stratified ``test_fraction`` as test."""
    if n_folds < 1:
        raise ConfigError(f"n_folds must be >= 1, got {n_folds}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    out = np.zeros((len(labels), n_folds), np.uint8)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xF01D])
    for k in range(n_folds):
        for lab in np.unique(labels):
            idx = np.flatnonzero(labels == lab)
            n_test = max(1, int(round(test_fraction * len(idx)))) if len(idx) > 1 else 0
            out[rng.choice(idx, n_test, replace=False), k] = 1
    return out


@dataclass
class SyntheticFerDVS:
    """What :func:`write_synthetic_ferdvs` wrote."""

    directory: Path
    dataset: str
    subjects: List[str]
    rows: List[tuple] = field(default_factory=list)  # (subject, sequence, label 1-based, n_events)

    @property
    def n_sequences(self) -> int:
        return len(self.rows)

    @property
    def folds_csv(self) -> Path:
        return self.directory / "folds.csv"


def write_synthetic_ferdvs(
    root: PathLike,
    dataset: str = "SyntheticDVS",
    n_subjects: int = 10,
    clips_per_class: int = 1,
    seed: int = 0,
    face_config: Optional[SyntheticFaceConfig] = None,
    emulator_config: Optional[EmulatorConfig] = None,
    n_folds: int = 10,
    test_fraction: float = 0.2,
    classes: Sequence[str] = FERDVS_CLASSES,
    overwrite: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
) -> SyntheticFerDVS:
    """Render, convert and write a synthetic FerDVS dataset under ``<root>/FerDVS/<dataset>/``.

    Args:
        root: the folder that holds (or will hold) ``FerDVS/``.
        dataset: the dataset folder name.
        n_subjects: identities; subject ``S%03d`` (1-based) uses ``make_identity(derive_seed(seed, i))``.
        clips_per_class: clips of each class per subject.
        seed: everything (identities, clips, sequence order, thresholds, folds) derives from it.
        face_config: rendering (default: :meth:`SyntheticFaceConfig.ferdvs`, 200x200 nose-centred).
        emulator_config: conversion (default: :meth:`EmulatorConfig.paper`).
        n_folds, test_fraction: fold columns as in the official files.
        classes: the expressions to render, a subset of :data:`FERDVS_CLASSES` (labels keep the FerDVS order).
        overwrite: allow writing into an existing non-empty dataset folder (its files are replaced).
        progress: called as ``progress(done, total)`` after each clip.
    """
    if n_subjects < 1 or clips_per_class < 1:
        raise ConfigError(f"n_subjects and clips_per_class must be >= 1, got {n_subjects}, {clips_per_class}")
    if not dataset or "/" in dataset or "\\" in dataset or dataset in (".", ".."):
        raise ConfigError(f"invalid dataset name {dataset!r}")
    unknown = [c for c in classes if c not in FERDVS_CLASSES]
    if unknown or not classes:
        raise ConfigError(f"classes must be a non-empty subset of {FERDVS_CLASSES}, got {list(classes)}")
    fcfg = face_config or SyntheticFaceConfig.ferdvs()
    ecfg = emulator_config or EmulatorConfig.paper()
    ecfg = replace(ecfg, width=ecfg.width or 200, height=ecfg.height or 200)
    out = Path(root) / "FerDVS" / dataset
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"{out} exists and is not empty; choose another dataset name or pass overwrite")
    out.mkdir(parents=True, exist_ok=True)

    total = n_subjects * clips_per_class * len(classes)
    done = 0
    rows = []
    subjects = []
    for s in range(n_subjects):
        subject = f"S{s + 1:03d}"
        subjects.append(subject)
        ident = make_identity(derive_seed(seed, s, 1))
        order = [c for c in classes for _ in range(clips_per_class)]
        rng = np.random.default_rng(derive_seed(seed, s, 2))
        order = [order[i] for i in rng.permutation(len(order))]
        for q, name in enumerate(order, start=1):
            clip_seed = derive_seed(seed, s, 3, q)
            clip = render_clip(name, clip_seed, fcfg, identity=ident)
            batch = clip_to_events(clip, ecfg, seed=derive_seed(seed, s, 4, q))
            label = FERDVS_CLASSES.index(name) + 1
            write_h5(out / subject / f"{q:03d}.h5", batch,
                     attrs={"label": name, "clip_seed": clip_seed, "identity_seed": ident.seed,
                            "generator": "fer_perception.synth"})
            rows.append((subject, q, label, len(batch)))
            done += 1
            if progress is not None:
                progress(done, total)
    folds = official_style_folds([r[2] for r in rows], n_folds, test_fraction, derive_seed(seed, 5))
    lines = [";".join([subj, f"{q:03d}", str(lab)] + [str(int(v)) for v in folds[i]])
             for i, (subj, q, lab, _) in enumerate(rows)]
    (out / "folds.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return SyntheticFerDVS(out, dataset, subjects, rows)
