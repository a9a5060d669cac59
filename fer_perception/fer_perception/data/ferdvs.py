"""FerDVS datasets on disk: ``folds.csv`` parsing, per-sequence HDF5 event files, and a map-style dataset.

Layout (docs/facts.md#spiking-fer, as in the official Barchid/spiking-fer data module)::

    <root>/FerDVS/<Dataset>/folds.csv
    <root>/FerDVS/<Dataset>/<subject>/<sequence:03d>.h5      dataset "events", (N, 4) uint32 [t_us, x, y, p]

``folds.csv`` is ``;``-separated without header: ``subject;sequence;label;fold0;...;fold9`` with the label
1-based in :data:`fer_perception.labels.FERDVS_CLASSES` order and ``fold_k == 1`` meaning "test in fold k".
``<root>`` may also be the ``FerDVS`` folder itself or the dataset folder (the official repository keeps one
copy of MMIDVS outside ``FerDVS/``, so ``<root>/<Dataset>`` is accepted too).

Events are handled as a structured numpy array (:data:`EVENT_DTYPE`: ``t`` int64 microseconds, ``x``/``y``
int16, ``p`` uint8 with 1 = ON) so augmentations (:mod:`fer_perception.data.augment`) can work on them before the
Spiking-FER representation turns them into frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from fer_perception.errors import DatasetError
from fer_perception.events.batch import EventBatch
from fer_perception.labels import FERDVS_CLASSES

#: Datasets of the paper; any other folder name (e.g. a synthetic dataset) works the same way.
KNOWN_DATASETS: Tuple[str, ...] = ("CKPlusDVS", "ADFESDVS", "CASIADVS", "MMIDVS")
#: Sensor size of every FerDVS recording (faces cropped to 200x200 before conversion).
SENSOR_SIZE: Tuple[int, int] = (200, 200)  # (width, height)
#: Rows at the bottom of CK+DVS frames that carry events from the videos' burned-in timecode
#: (docs/facts.md#spiking-fer).
CKPLUS_TIMECODE_ROWS = 15
#: Structured event dtype used by the data pipeline and the augmentations.
EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.uint8)])

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class FoldEntry:
    """One row of ``folds.csv``: a labelled sequence and the folds in which it is a test sample."""

    subject: str
    sequence: int
    label: int  # 0-based, FERDVS_CLASSES order
    test_folds: Tuple[bool, ...]

    def relative_path(self) -> str:
        return f"{self.subject}/{self.sequence:03d}.h5"


def empty_events() -> np.ndarray:
    return np.zeros(0, dtype=EVENT_DTYPE)


def make_events(t, x, y, p) -> np.ndarray:
    """Build a structured event array from parallel array-likes (t in microseconds, p > 0 means ON)."""
    t = np.asarray(t)
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = np.asarray(x)
    ev["y"] = np.asarray(y)
    ev["p"] = np.asarray(p) > 0
    return ev


def events_to_batch(events: np.ndarray, sensor_size: Tuple[int, int] = SENSOR_SIZE) -> EventBatch:
    """A structured event array (t in microseconds) as an :class:`EventBatch` (t in nanoseconds)."""
    width, height = int(sensor_size[0]), int(sensor_size[1])
    return EventBatch.from_arrays(
        events["x"], events["y"], events["t"].astype(np.int64) * 1000, events["p"], width, height
    )


def batch_to_events(batch: EventBatch) -> np.ndarray:
    """An :class:`EventBatch` as a structured event array (t in integer microseconds)."""
    return make_events(batch.t // 1000, batch.x, batch.y, batch.p)


# ---------------------------------------------------------------------------------------------------------
# Locating a dataset and reading folds.csv


def dataset_dir(root: PathLike, dataset: str) -> Path:
    """The folder holding ``folds.csv`` for ``dataset`` under ``root``; :class:`DatasetError` if none."""
    root = Path(root)
    if not dataset or "/" in dataset or "\\" in dataset or dataset in (".", ".."):
        raise DatasetError(f"invalid dataset name {dataset!r}: expected a folder name such as CKPlusDVS")
    candidates = [root / "FerDVS" / dataset, root / dataset]
    if root.name == dataset:
        candidates.append(root)
    for cand in candidates:
        if (cand / "folds.csv").is_file():
            return cand
    if not root.exists():
        raise DatasetError(f"dataset root {root} does not exist")
    available = sorted(p.parent.name for p in list(root.glob("FerDVS/*/folds.csv")) + list(root.glob("*/folds.csv")))
    hint = f"; datasets found there: {', '.join(available)}" if available else ""
    raise DatasetError(
        f"no folds.csv for dataset {dataset!r} under {root} (looked in "
        f"{', '.join(str(c) for c in candidates)}){hint}"
    )


def parse_folds(text: str, source: str = "folds.csv", n_classes: int = len(FERDVS_CLASSES)) -> List[FoldEntry]:
    """Parse the content of a ``folds.csv``; every malformed row raises :class:`DatasetError` naming its line."""
    entries: List[FoldEntry] = []
    n_folds: Optional[int] = None
    seen = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        cols = [c.strip() for c in line.split(";")]
        where = f"{source}:{lineno}"
        if len(cols) < 4:
            raise DatasetError(
                f"{where}: expected subject;sequence;label;fold0..foldK (at least 4 columns), got {len(cols)}: {raw!r}"
            )
        if n_folds is None:
            n_folds = len(cols) - 3
        elif len(cols) - 3 != n_folds:
            raise DatasetError(f"{where}: {len(cols) - 3} fold columns, earlier rows have {n_folds}: {raw!r}")
        subject, seq_text, label_text = cols[:3]
        if not subject or subject in (".", "..") or "/" in subject or "\\" in subject:
            raise DatasetError(f"{where}: invalid subject {subject!r}")
        try:
            sequence = int(seq_text)
        except ValueError:
            raise DatasetError(f"{where}: sequence {seq_text!r} is not an integer") from None
        if sequence < 0:
            raise DatasetError(f"{where}: sequence {sequence} is negative")
        try:
            label = int(label_text)
        except ValueError:
            raise DatasetError(f"{where}: label {label_text!r} is not an integer") from None
        if not 1 <= label <= n_classes:
            raise DatasetError(f"{where}: label {label} outside 1..{n_classes} (labels are 1-based)")
        flags = []
        for k, c in enumerate(cols[3:]):
            if c not in ("0", "1"):
                raise DatasetError(f"{where}: fold{k} value {c!r} is not 0 or 1")
            flags.append(c == "1")
        key = (subject, sequence)
        if key in seen:
            raise DatasetError(f"{where}: duplicate row for {subject}/{sequence:03d} (first at line {seen[key]})")
        seen[key] = lineno
        entries.append(FoldEntry(subject, sequence, label - 1, tuple(flags)))
    if not entries:
        raise DatasetError(f"{source}: no rows")
    return entries


def read_folds(path: PathLike, n_classes: int = len(FERDVS_CLASSES)) -> List[FoldEntry]:
    """Read and validate a ``folds.csv`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"folds file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read folds file {path}: {exc}") from None
    return parse_folds(text, str(path), n_classes)


def write_folds(path: PathLike, entries: Sequence[FoldEntry]) -> None:
    """Write ``entries`` in the official ``folds.csv`` format (labels back to 1-based)."""
    lines = [
        ";".join([e.subject, f"{e.sequence:03d}", str(e.label + 1)] + ["1" if f else "0" for f in e.test_folds])
        for e in entries
    ]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Event files


def read_events(path: PathLike) -> np.ndarray:
    """Read one FerDVS ``.h5`` file into a structured event array (:data:`EVENT_DTYPE`)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"event file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "events" not in f:
                raise DatasetError(f"{path}: no dataset 'events' (found: {', '.join(sorted(f.keys())) or 'nothing'})")
            ds = f["events"]
            if not isinstance(ds, h5py.Dataset):
                raise DatasetError(f"{path}: 'events' is a group, expected an (N, 4) dataset")
            if ds.ndim != 2 or ds.shape[1] != 4:
                raise DatasetError(f"{path}: 'events' has shape {ds.shape}, expected (N, 4) [t_us, x, y, p]")
            if not np.issubdtype(ds.dtype, np.integer):
                raise DatasetError(f"{path}: 'events' has dtype {ds.dtype}, expected an integer type (uint32)")
            raw = ds[()]
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable HDF5 event file ({exc})") from None
    ev = np.empty(len(raw), dtype=EVENT_DTYPE)
    ev["t"] = raw[:, 0]
    ev["x"] = raw[:, 1]
    ev["y"] = raw[:, 2]
    ev["p"] = raw[:, 3] > 0
    return ev


def write_events(path: PathLike, events: np.ndarray) -> None:
    """Write a structured event array as a FerDVS ``.h5`` file ((N, 4) uint32 [t_us, x, y, p])."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.stack(
        [events["t"].astype(np.uint32), events["x"].astype(np.uint32), events["y"].astype(np.uint32),
         (events["p"] > 0).astype(np.uint32)],
        axis=1,
    ) if len(events) else np.zeros((0, 4), np.uint32)
    with h5py.File(path, "w") as f:
        f.create_dataset("events", data=arr)


def check_events(events: np.ndarray, sensor_size: Tuple[int, int], source: str) -> None:
    """Raise :class:`DatasetError` if events lie outside the sensor or time goes backwards."""
    if not len(events):
        return
    w, h = sensor_size
    if int(events["x"].min()) < 0 or int(events["y"].min()) < 0 or int(events["x"].max()) >= w \
            or int(events["y"].max()) >= h:
        raise DatasetError(
            f"{source}: events outside the {w}x{h} sensor (x {int(events['x'].min())}..{int(events['x'].max())}, "
            f"y {int(events['y'].min())}..{int(events['y'].max())})"
        )
    if np.any(np.diff(events["t"]) < 0):
        raise DatasetError(f"{source}: timestamps are not sorted")


# ---------------------------------------------------------------------------------------------------------
# Dataset


@dataclass
class FerDVSConfig:
    """How samples are read and turned into network input.

    ``timecode_rows``: events in this many bottom rows are removed before anything else; ``None`` means
    :data:`CKPLUS_TIMECODE_ROWS` for CKPlusDVS (its burned-in timecode) and 0 elsewhere.
    ``layout``: ``"snn"`` gives (T, 2, S, S) frames, ``"cnn"`` (2T, S, S) with channel = 2*t + polarity.
    """

    sensor_size: Tuple[int, int] = SENSOR_SIZE
    timesteps: int = 6
    events_per_frame: int = 2500
    size: int = 128
    timecode_rows: Optional[int] = None
    layout: str = "snn"
    seed: int = 0
    validate_events: bool = True

    def rows_to_drop(self, dataset: str) -> int:
        if self.timecode_rows is not None:
            return int(self.timecode_rows)
        return CKPLUS_TIMECODE_ROWS if dataset == "CKPlusDVS" else 0


class FerDVSDataset:
    """Map-style dataset (works with ``torch.utils.data.DataLoader``) over some rows of a FerDVS ``folds.csv``.

    ``dataset[i]`` returns ``(frames, label)``: float32 torch tensor, (T, 2, S, S) for the SNN or (2T, S, S) for
    the CNN, and the 0-based label. ``augment`` (an :class:`fer_perception.data.augment.Augmenter`) is applied
    with a generator derived from ``config.seed``, the index, the DataLoader worker seed and a draw counter,
    so runs seeded with Lightning's ``seed_everything`` are reproducible and every epoch sees new draws.
    """

    def __init__(
        self,
        root: PathLike,
        dataset: str,
        indices: Optional[Sequence[int]] = None,
        config: Optional[FerDVSConfig] = None,
        augment=None,
        entries: Optional[Sequence[FoldEntry]] = None,
    ) -> None:
        self.config = config or FerDVSConfig()
        if self.config.layout not in ("snn", "cnn"):
            raise DatasetError(f"layout must be 'snn' or 'cnn', got {self.config.layout!r}")
        self.dataset = dataset
        self.dir = dataset_dir(root, dataset)
        self.all_entries: List[FoldEntry] = list(entries) if entries is not None else read_folds(self.dir / "folds.csv")
        n = len(self.all_entries)
        idx = list(range(n)) if indices is None else [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise DatasetError(f"indices {bad[:5]} outside the {n} rows of {self.dir / 'folds.csv'}")
        self.indices = idx
        self.augment = augment
        self._draws = np.zeros(n, dtype=np.int64)
        self.timecode_rows = self.config.rows_to_drop(dataset)
        self._rep_config = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def entries(self) -> List[FoldEntry]:
        return [self.all_entries[i] for i in self.indices]

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.entries], dtype=np.int64)

    def path_of(self, entry: FoldEntry) -> Path:
        return self.dir / entry.subject / f"{entry.sequence:03d}.h5"

    def check_files(self) -> None:
        """Raise :class:`DatasetError` listing (the first few) sequence files that are missing."""
        missing = [str(self.path_of(e)) for e in self.entries if not self.path_of(e).is_file()]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(f"{len(missing)} event file(s) missing: {', '.join(missing[:5])}{more}")

    def load_events(self, i: int) -> np.ndarray:
        """The raw events of item ``i`` (timecode band removed, if configured)."""
        entry = self.all_entries[self.indices[i]]
        path = self.path_of(entry)
        ev = read_events(path)
        if self.config.validate_events:
            check_events(ev, self.config.sensor_size, str(path))
        if self.timecode_rows > 0:
            ev = ev[ev["y"] < self.config.sensor_size[1] - self.timecode_rows]
        return ev

    def _rng(self, i: int) -> np.random.Generator:
        worker_seed = 0
        try:
            import torch.utils.data

            info = torch.utils.data.get_worker_info()
            if info is not None:
                worker_seed = int(info.seed) % (2**63)
        except ImportError:  # pragma: no cover - torch is a hard dependency of training
            pass
        k = self.indices[i]
        draw = int(self._draws[k])
        self._draws[k] += 1
        return np.random.default_rng([int(self.config.seed), k, worker_seed, draw])

    def frames(self, i: int) -> np.ndarray:
        """Network input of item ``i`` as numpy float32 (augmented when an augmenter is set)."""
        ev = self.load_events(i)
        rng = self._rng(i) if self.augment is not None else None
        return events_to_input(ev, self.config, self.augment, rng)

    def __getitem__(self, i: int):
        import torch

        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i = i % len(self)
        x = self.frames(i)
        return torch.from_numpy(x), int(self.all_entries[self.indices[i]].label)


def representation_config(config: FerDVSConfig, size: Optional[int] = None):
    """The :class:`SpikingFerConfig` for ``config`` (full sensor, no ROI), optionally at another output size."""
    from fer_perception.events.representation import SpikingFerConfig

    return SpikingFerConfig(
        events_per_frame=config.events_per_frame, timesteps=config.timesteps,
        size=int(size if size is not None else config.size),
    )


def events_to_input(events: np.ndarray, config: FerDVSConfig, augment=None, rng=None) -> np.ndarray:
    """Events -> (augmented) Spiking-FER frames in the layout ``config.layout`` asks for, float32 numpy.

    Order as in the official code: event augmentations, the representation (at full sensor resolution when
    the random resized crop follows, else straight at ``config.size``), frame augmentations.
    """
    from fer_perception.events.representation import spiking_fer_frames

    if augment is not None:
        if rng is None:
            rng = np.random.default_rng(config.seed)
        events = augment.apply_events(events, rng)
        full = augment.needs_full_resolution
        rep = representation_config(config, size=max(config.sensor_size) if full else None)
        frames = spiking_fer_frames(events_to_batch(events, config.sensor_size), None, rep)
        frames = augment.apply_frames(frames, rng, out_size=config.size)
    else:
        frames = spiking_fer_frames(events_to_batch(events, config.sensor_size), None, representation_config(config))
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    if config.layout == "cnn":
        t, c, h, w = frames.shape
        frames = frames.reshape(t * c, h, w)
    return frames
