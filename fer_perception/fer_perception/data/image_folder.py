"""A labelled list of image files, and the ``root/<split>/<class>/*.jpg`` folder layout shared by datasets.

Class folders are named by class name (any alias :func:`fer_perception.labels.canonical` knows) or by
0-based index into the dataset's class order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from fer_perception.errors import DatasetError
from fer_perception.labels import canonical

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class LabelledImages:
    """Image paths with integer labels into ``classes``."""

    paths: List[str]
    labels: np.ndarray
    classes: Tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))


def class_index(name: str, classes: Sequence[str]) -> int:
    """Index of folder ``name`` in ``classes``: by number or by (canonical) class name; -1 if unknown."""
    if name.isdigit():
        i = int(name)
        return i if 0 <= i < len(classes) else -1
    canon = [canonical(c) for c in classes]
    c = canonical(name)
    return canon.index(c) if c in canon else -1


def scan_image_folder(root: "str | os.PathLike", classes: Sequence[str]) -> LabelledImages:
    """Read ``root/<class>/*`` into a :class:`LabelledImages`; unknown class folders raise DatasetError."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"image folder not found: {root}")
    paths, labels = [], []
    for sub in sorted(os.listdir(root)):
        d = os.path.join(root, sub)
        if not os.path.isdir(d):
            continue
        idx = class_index(sub, classes)
        if idx < 0:
            raise DatasetError(f"{d}: folder name {sub!r} is not a class of {list(classes)} nor its index")
        for fn in sorted(os.listdir(d)):
            if fn.lower().endswith(IMAGE_EXTS):
                paths.append(os.path.join(d, fn))
                labels.append(idx)
    if not paths:
        raise DatasetError(f"{root}: no images in class sub-folders ({', '.join(classes)})")
    return LabelledImages(paths, np.asarray(labels, np.int64), tuple(classes))
