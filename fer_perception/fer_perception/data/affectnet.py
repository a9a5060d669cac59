"""AffectNet (manually annotated part) from its release CSVs, or a class-folder layout.

CSV layout (``root`` holds both)::

    root/training.csv, root/validation.csv   columns include subDirectory_filePath and expression
    root/Manually_Annotated_Images/<subDirectory_filePath>

``expression`` 0..7 = neutral, happy, sad, surprise, fear, disgust, anger, contempt (AffectNet-8 order,
:data:`fer_perception.labels.AFFECTNET8_CLASSES`); 8 none, 9 uncertain and 10 no-face are dropped, and with
``n_classes=7`` contempt (7) is dropped too. Images listed but absent are skipped and counted (AffectNet
copies are often partial). Folder layout: ``root/train/<class>/*`` and ``root/val/<class>/*``.
"""

from __future__ import annotations

import csv
import logging
import os

import numpy as np

from fer_perception.errors import DatasetError
from fer_perception.labels import AFFECTNET7_CLASSES, AFFECTNET8_CLASSES
from fer_perception.data.image_folder import LabelledImages, scan_image_folder

log = logging.getLogger(__name__)
CSV_FILES = {"train": "training.csv", "val": "validation.csv"}
IMAGE_DIR = "Manually_Annotated_Images"


def load_affectnet(root: "str | os.PathLike", split: str = "train", n_classes: int = 8) -> LabelledImages:
    """The AffectNet images of ``split`` ("train" or "val") for the 8- or 7-class task."""
    root = os.fspath(root)
    if split not in CSV_FILES:
        raise DatasetError(f"AffectNet split must be one of {sorted(CSV_FILES)}, got {split!r}")
    if n_classes not in (7, 8):
        raise DatasetError(f"AffectNet n_classes must be 7 or 8, got {n_classes}")
    classes = AFFECTNET8_CLASSES if n_classes == 8 else AFFECTNET7_CLASSES
    csv_path = os.path.join(root, CSV_FILES[split])
    if not os.path.isfile(csv_path):
        if os.path.isdir(os.path.join(root, split)):
            data = scan_image_folder(os.path.join(root, split), AFFECTNET8_CLASSES)
            keep = data.labels < n_classes
            return LabelledImages([p for p, k in zip(data.paths, keep) if k], data.labels[keep], classes)
        raise DatasetError(f"{root}: neither {CSV_FILES[split]} nor {split}/<class>/ folders found")
    paths, labels, missing = [], [], 0
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "subDirectory_filePath" not in fields or "expression" not in fields:
            raise DatasetError(f"{csv_path}: needs columns subDirectory_filePath and expression, got {fields}")
        for lineno, row in enumerate(reader, start=2):
            try:
                lab = int(row["expression"])
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"{csv_path} line {lineno}: bad expression {row['expression']!r}") from exc
            if not 0 <= lab < n_classes:
                continue
            path = os.path.join(root, IMAGE_DIR, row["subDirectory_filePath"])
            if not os.path.isfile(path):
                missing += 1
                continue
            paths.append(path)
            labels.append(lab)
    if missing:
        log.warning("AffectNet %s: %d listed image(s) are missing and were skipped", split, missing)
    if not paths:
        raise DatasetError(f"{csv_path}: no usable images for the {n_classes}-class task")
    return LabelledImages(paths, np.asarray(labels, np.int64), classes)
