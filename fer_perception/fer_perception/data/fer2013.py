"""The FER2013 CSV format: header ``emotion,pixels,Usage``; ``pixels`` holds 48*48 space-separated gray values.

``emotion`` is 0..6 in :data:`fer_perception.labels.FER2013_CLASSES` order (angry, disgust, fear, happy, sad,
surprise, neutral); ``Usage`` is ``Training``, ``PublicTest`` or ``PrivateTest`` (absent in some copies: then
every row counts as Training). Rows with a bad label or pixel count raise :class:`DatasetError` naming the line.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from fer_perception.errors import DatasetError
from fer_perception.labels import FER2013_CLASSES

SIZE = 48
USAGES = ("Training", "PublicTest", "PrivateTest")


@dataclass
class Fer2013:
    """Images ``(N, 48, 48)`` uint8, labels ``(N,)`` int64, usage ``(N,)`` str."""

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    classes: tuple = FER2013_CLASSES

    def split(self, usage: str | Sequence[str]) -> "Fer2013":
        want = [usage] if isinstance(usage, str) else list(usage)
        m = np.isin(self.usage, want)
        return Fer2013(self.images[m], self.labels[m], self.usage[m], self.classes)

    def __len__(self) -> int:
        return len(self.labels)


def load_fer2013_csv(path: "str | os.PathLike", usage: Optional[str | Sequence[str]] = None,
                     limit: Optional[int] = None) -> Fer2013:
    """Read a FER2013 CSV (optionally only rows of ``usage``; at most ``limit`` rows)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"FER2013 CSV not found: {path}")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "emotion" not in header or "pixels" not in header:
            raise DatasetError(f"{path}: header must contain 'emotion' and 'pixels', got {header}")
        ie, ip = header.index("emotion"), header.index("pixels")
        iu = header.index("Usage") if "Usage" in header else None
        wanted = None if usage is None else ({usage} if isinstance(usage, str) else set(usage))
        labels, pixels, usages = [], [], []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            u = row[iu].strip() if iu is not None else "Training"
            if wanted is not None and u not in wanted:
                continue
            try:
                lab = int(row[ie])
            except (ValueError, IndexError) as exc:
                raise DatasetError(f"{path} line {lineno}: bad emotion value") from exc
            if not 0 <= lab < len(FER2013_CLASSES):
                raise DatasetError(f"{path} line {lineno}: emotion {lab} outside 0..{len(FER2013_CLASSES) - 1}")
            values = row[ip].split()
            if len(values) != SIZE * SIZE:
                raise DatasetError(f"{path} line {lineno}: {len(values)} pixel values, expected {SIZE * SIZE}")
            labels.append(lab)
            pixels.append(" ".join(values))
            usages.append(u)
            if limit is not None and len(labels) >= limit:
                break
    if not labels:
        raise DatasetError(f"{path}: no rows" + (f" with Usage in {sorted(wanted)}" if wanted else ""))
    flat = np.array(" ".join(pixels).split(), dtype=np.int64)
    if flat.min() < 0 or flat.max() > 255:
        raise DatasetError(f"{path}: pixel values outside 0..255")
    images = flat.astype(np.uint8).reshape(len(labels), SIZE, SIZE)
    return Fer2013(images, np.asarray(labels, np.int64), np.asarray(usages))


def write_fer2013_csv(path: "str | os.PathLike", images: np.ndarray, labels: Sequence[int],
                      usage: Optional[Sequence[str]] = None) -> None:
    """Write images ``(N, 48, 48)`` uint8 in the FER2013 CSV format (for tests and conversions)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE) or images.dtype != np.uint8:
        raise DatasetError(f"FER2013 images must be (N, 48, 48) uint8, got {images.shape} {images.dtype}")
    usage = list(usage) if usage is not None else ["Training"] * len(images)
    with open(os.fspath(path), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for img, lab, u in zip(images, labels, usage):
            w.writerow([int(lab), " ".join(map(str, img.reshape(-1).tolist())), u])
