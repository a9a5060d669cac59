"""UTKFace: images named ``[age]_[gender]_[race]_[datetime].jpg`` (gender 0 male, 1 female; race 0-4).

Race codes: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. A few released names are malformed (missing
fields); :func:`scan_utkface` skips them with one warning and counts them. :func:`age_group` buckets ages for
the bias breakdown of the evaluation.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional

import numpy as np

from fer_perception.errors import DatasetError

log = logging.getLogger(__name__)

RACES = ("white", "black", "asian", "indian", "others")
GENDERS = ("male", "female")
AGE_GROUPS = ((0, 12), (13, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 200))
_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)(?:\..*)?\.(?:jpe?g|png)$", re.IGNORECASE)
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class UtkRecord(NamedTuple):
    path: str
    age: int
    gender: int
    race: int


@dataclass
class UtkFaceIndex:
    """The usable records of a folder and the names that were skipped as malformed."""

    records: List[UtkRecord]
    skipped: List[str] = field(default_factory=list)

    def arrays(self):
        """``(ages, genders, races)`` int64 arrays."""
        a = np.asarray([(r.age, r.gender, r.race) for r in self.records], np.int64).reshape(-1, 3)
        return a[:, 0], a[:, 1], a[:, 2]


def parse_utkface_name(name: str) -> Optional[UtkRecord]:
    """The labels in a UTKFace file name, or None when the name is malformed (age must be 0..120)."""
    base = os.path.basename(name)
    m = _NAME.match(base)
    if not m:
        return None
    age, gender, race = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if age > 120:
        return None
    return UtkRecord(name, age, gender, race)


def scan_utkface(folder: "str | os.PathLike", recursive: bool = True) -> UtkFaceIndex:
    """Index every image in ``folder``; malformed names are skipped, counted and warned about once."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DatasetError(f"UTKFace folder not found: {folder}")
    records, skipped = [], []
    walker = os.walk(folder) if recursive else [(folder, [], os.listdir(folder))]
    for root, _dirs, files in walker:
        for fn in sorted(files):
            if not fn.lower().endswith(IMAGE_EXTS):
                continue
            rec = parse_utkface_name(fn)
            if rec is None:
                skipped.append(fn)
            else:
                records.append(rec._replace(path=os.path.join(root, fn)))
    if skipped:
        log.warning("UTKFace: skipped %d malformed file name(s), e.g. %s", len(skipped), skipped[:3])
    if not records:
        raise DatasetError(f"{folder}: no UTKFace images named [age]_[gender]_[race]_[datetime].jpg")
    records.sort(key=lambda r: r.path)
    return UtkFaceIndex(records, skipped)


def age_group(ages) -> np.ndarray:
    """Index into :data:`AGE_GROUPS` of each age."""
    a = np.asarray(ages, dtype=np.float64)
    uppers = np.asarray([hi for _lo, hi in AGE_GROUPS], dtype=np.float64)
    return np.searchsorted(uppers, np.floor(a), side="left").clip(0, len(AGE_GROUPS) - 1)


def age_group_name(i: int) -> str:
    lo, hi = AGE_GROUPS[int(i)]
    return f"{lo}+" if hi >= 200 else f"{lo}-{hi}"


def load_rgb(path: str, size: Optional[int] = None) -> np.ndarray:
    """Read one image as RGB uint8 (resized to ``size`` x ``size`` when given)."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if size is not None and img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img
