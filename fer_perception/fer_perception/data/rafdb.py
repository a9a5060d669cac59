"""RAF-DB (basic emotion subset) in the layout DAN's training code reads, or a class-folder layout.

Official layout (``root`` = the ``raf-basic`` folder)::

    root/EmoLabel/list_patition_label.txt     lines "train_00001.jpg 5" / "test_0001.jpg 7"; labels 1..7
    root/Image/aligned/train_00001_aligned.jpg

Labels 1..7 are surprise, fear, disgust, happiness, sadness, anger, neutral
(:data:`fer_perception.labels.RAFDB_CLASSES`, 0-based here). The split is the file name prefix.

Folder layout: ``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg`` (class name or 0-based index).
"""

from __future__ import annotations

import os

import numpy as np

from fer_perception.errors import DatasetError
from fer_perception.labels import RAFDB_CLASSES
from fer_perception.data.image_folder import LabelledImages, scan_image_folder

LABEL_FILE = os.path.join("EmoLabel", "list_patition_label.txt")
IMAGE_DIR = os.path.join("Image", "aligned")
SPLITS = ("train", "test")


def load_rafdb(root: "str | os.PathLike", split: str = "train") -> LabelledImages:
    """The RAF-DB images of ``split`` ("train" or "test") with 0-based labels in RAF-DB order."""
    root = os.fspath(root)
    if split not in SPLITS:
        raise DatasetError(f"RAF-DB split must be one of {SPLITS}, got {split!r}")
    label_file = os.path.join(root, LABEL_FILE)
    if not os.path.isfile(label_file):
        if os.path.isdir(os.path.join(root, split)):
            return scan_image_folder(os.path.join(root, split), RAFDB_CLASSES)
        raise DatasetError(f"{root}: neither {LABEL_FILE} (official layout) nor {split}/<class>/ folders found")
    paths, labels = [], []
    with open(label_file) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise DatasetError(f"{label_file} line {lineno}: expected '<name>.jpg <label 1..7>', got {line!r}")
            name, lab = parts[0], int(parts[1])
            if not 1 <= lab <= len(RAFDB_CLASSES):
                raise DatasetError(f"{label_file} line {lineno}: label {lab} outside 1..{len(RAFDB_CLASSES)}")
            if not name.startswith(split):
                continue
            stem, ext = os.path.splitext(name)
            path = os.path.join(root, IMAGE_DIR, f"{stem}_aligned{ext}")
            if not os.path.isfile(path):
                raise DatasetError(f"{label_file} line {lineno}: image {path} is missing")
            paths.append(path)
            labels.append(lab - 1)
    if not paths:
        raise DatasetError(f"{label_file}: no {split} entries")
    return LabelledImages(paths, np.asarray(labels, np.int64), RAFDB_CLASSES)
