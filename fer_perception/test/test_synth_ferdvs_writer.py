"""Synthetic FerDVS datasets: exact on-disk layout, readable by the FerDVS reader, seeded, folds like the official."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from fer_perception.data.ferdvs import FerDVSDataset, read_events, read_folds
from fer_perception.errors import ConfigError, DatasetError
from fer_perception.labels import FERDVS_CLASSES
from fer_perception.synth.emulator import EmulatorConfig
from fer_perception.synth.faces import SyntheticFaceConfig, render_clip
from fer_perception.synth.ferdvs_writer import (
    clip_to_events,
    events_array,
    official_style_folds,
    write_synthetic_ferdvs,
)

FAST = SyntheticFaceConfig.ferdvs(n_frames=10)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return root, write_synthetic_ferdvs(root, n_subjects=2, clips_per_class=1, seed=3, face_config=FAST)


def test_layout_and_h5_format(written):
    root, info = written
    d = Path(root) / "FerDVS" / "SyntheticDVS"
    assert info.directory == d and info.subjects == ["S001", "S002"]
    assert sorted(p.name for p in (d / "S001").iterdir()) == [f"{q:03d}.h5" for q in range(1, 7)]
    with h5py.File(d / "S002" / "004.h5", "r") as f:
        assert list(f.keys()) == ["events"]
        ev = f["events"][()]
    assert ev.dtype == np.uint32 and ev.ndim == 2 and ev.shape[1] == 4 and len(ev) > 1000
    assert ev[:, 1].max() < 200 and ev[:, 2].max() < 200 and set(np.unique(ev[:, 3])) <= {0, 1}
    assert np.all(np.diff(ev[:, 0].astype(np.int64)) >= 0)


def test_folds_csv_format(written):
    _, info = written
    lines = info.folds_csv.read_text().strip().splitlines()
    assert len(lines) == 12
    for line in lines:
        cols = line.split(";")
        assert len(cols) == 13 and cols[0].startswith("S") and len(cols[1]) == 3
        assert 1 <= int(cols[2]) <= 6 and set(cols[3:]) <= {"0", "1"}
    # every subject has each class once, labels 1-based in FerDVS order
    for subj in info.subjects:
        assert sorted(int(c.split(";")[2]) for c in lines if c.startswith(subj)) == [1, 2, 3, 4, 5, 6]


def test_the_reader_loads_it(written):
    root, info = written
    entries = read_folds(info.folds_csv)
    assert len(entries) == 12 and len(entries[0].test_folds) == 10
    ds = FerDVSDataset(root, "SyntheticDVS")
    frames, label = ds[0]
    assert tuple(frames.shape) == (6, 2, 128, 128) and float(frames.sum()) > 0
    assert label == entries[0].label
    ev = read_events(info.directory / entries[0].relative_path())
    assert len(ev) == info.rows[0][3]


def test_deterministic_and_refuses_to_overwrite(written, tmp_path):
    root, info = written
    again = write_synthetic_ferdvs(tmp_path, n_subjects=2, clips_per_class=1, seed=3, face_config=FAST)
    assert again.rows == info.rows
    assert again.folds_csv.read_text() == info.folds_csv.read_text()
    with pytest.raises(DatasetError, match="not empty"):
        write_synthetic_ferdvs(tmp_path, n_subjects=1, seed=3, face_config=FAST)


def test_the_file_label_matches_the_rendered_expression(written):
    _, info = written
    with h5py.File(info.directory / "S001" / "001.h5", "r") as f:
        name = f["events"].attrs["label"]
    assert FERDVS_CLASSES.index(name) + 1 == info.rows[0][2]


def test_official_style_folds_are_stratified_and_independent():
    labels = np.repeat(np.arange(1, 7), 20)
    folds = official_style_folds(labels, 10, 0.2, seed=0)
    assert folds.shape == (120, 10)
    for k in range(10):
        for lab in range(1, 7):
            assert folds[labels == lab, k].sum() == 4
    assert not all(np.array_equal(folds[:, 0], folds[:, k]) for k in range(1, 10))
    assert (folds.sum(1) > 1).any()  # a sequence may be test in several folds, as in the official files
    with pytest.raises(ConfigError, match="test_fraction"):
        official_style_folds(labels, 10, 1.5)


def test_clip_to_events_resizes_to_the_sensor():
    clip = render_clip("happy", 0, SyntheticFaceConfig(width=100, height=100, n_frames=6))
    ev = clip_to_events(clip, EmulatorConfig.paper())
    assert ev.width == 200 and ev.height == 200 and int(ev.x.max()) > 100
    arr = events_array(ev)
    np.testing.assert_array_equal(arr[:, 0], ev.t // 1000)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="classes"):
        write_synthetic_ferdvs(tmp_path, classes=("neutral",))
    with pytest.raises(ConfigError, match="n_subjects"):
        write_synthetic_ferdvs(tmp_path, n_subjects=0)
