"""FerDVS layout: folds.csv parsing (including malformed rows), h5 event files, dataset items, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_perception.data import ferdvs
from fer_perception.data.ferdvs import (
    FerDVSConfig, FerDVSDataset, FoldEntry, dataset_dir, make_events, parse_folds, read_events, read_folds,
    write_events, write_folds,
)
from fer_perception.data.splits import make_split, official_split, subject_kfold
from fer_perception.errors import ConfigError, DatasetError

GOOD = "S005;001;5;0;0;0;1;1;0;0;1;0;0\nS010;001;2;0;1;0;1;0;0;1;0;0;1\n\nS010;002;3;0;0;0;1;0;0;0;0;1;0\n"


def random_events(rng, n=4000, w=200, h=200, duration_us=200_000):
    t = np.sort(rng.integers(0, duration_us, n))
    return make_events(t, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n))


def make_tree(root: Path, name="TinyDVS", n_subjects=6, seqs=3, n_events=4000, seed=0):
    """A tiny FerDVS tree: each label i has its events in the i-th horizontal band (learnable, checkable)."""
    rng = np.random.default_rng(seed)
    entries = []
    for s in range(n_subjects):
        for q in range(1, seqs + 1):
            label = (s * seqs + q) % 6
            ev = random_events(rng, n_events)
            ev["y"] = (label * 30 + ev["y"] % 30).astype(np.int16)
            subject = f"S{s:03d}"
            write_events(root / "FerDVS" / name / subject / f"{q:03d}.h5", ev)
            folds = tuple(bool((s + k) % 3 == 0) for k in range(10))
            entries.append(FoldEntry(subject, q, label, folds))
    write_folds(root / "FerDVS" / name / "folds.csv", entries)
    return entries


def test_parse_official_rows():
    entries = parse_folds(GOOD)
    assert len(entries) == 3
    e = entries[0]
    assert (e.subject, e.sequence, e.label) == ("S005", 1, 4)  # 1-based 5 -> 0-based 4 (disgust)
    assert e.test_folds == (False, False, False, True, True, False, False, True, False, False)
    assert e.relative_path() == "S005/001.h5"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("S005;001;5;0;0\nS006;001;2;0\n", "fold columns"),
        ("S005;abc;5;0;0\n", "sequence 'abc'"),
        ("S005;001;x;0;0\n", "label 'x'"),
        ("S005;001;0;0;0\n", "label 0 outside 1..6"),
        ("S005;001;7;0;0\n", "label 7 outside 1..6"),
        ("S005;001;3;0;2\n", "fold1 value '2'"),
        ("S005;001;3\n", "at least 4 columns"),
        ("S005;001;3;1\nS005;001;3;0\n", "duplicate row"),
        ("../x;001;3;1\n", "invalid subject"),
        ("\n\n", "no rows"),
    ],
)
def test_parse_rejects_malformed_rows(text, fragment):
    with pytest.raises(DatasetError, match=fragment):
        parse_folds(text, "folds.csv")


def test_malformed_row_names_line(tmp_path):
    p = tmp_path / "folds.csv"
    p.write_text(GOOD + "S011;002;9;0;0;0;0;0;0;0;0;0;0\n")
    with pytest.raises(DatasetError, match=r"folds.csv:5: label 9"):
        read_folds(p)
    with pytest.raises(DatasetError, match="does not exist"):
        read_folds(tmp_path / "missing.csv")


def test_folds_roundtrip(tmp_path):
    entries = parse_folds(GOOD)
    write_folds(tmp_path / "folds.csv", entries)
    assert read_folds(tmp_path / "folds.csv") == entries
    assert (tmp_path / "folds.csv").read_text().splitlines()[0] == "S005;001;5;0;0;0;1;1;0;0;1;0;0"


def test_dataset_dir_layouts(tmp_path):
    make_tree(tmp_path, n_subjects=3, seqs=1, n_events=10)
    d = tmp_path / "FerDVS" / "TinyDVS"
    assert dataset_dir(tmp_path, "TinyDVS") == d
    assert dataset_dir(tmp_path / "FerDVS", "TinyDVS") == d
    assert dataset_dir(d, "TinyDVS") == d
    with pytest.raises(DatasetError, match="TinyDVS"):  # lists what exists
        dataset_dir(tmp_path, "CKPlusDVS")
    with pytest.raises(DatasetError, match="invalid dataset name"):
        dataset_dir(tmp_path, "../etc")


def test_h5_roundtrip_and_errors(tmp_path):
    import h5py

    rng = np.random.default_rng(1)
    ev = random_events(rng, 100)
    write_events(tmp_path / "a.h5", ev)
    back = read_events(tmp_path / "a.h5")
    assert back.dtype == ferdvs.EVENT_DTYPE
    np.testing.assert_array_equal(back, ev)
    with h5py.File(tmp_path / "raw.h5", "w") as f:  # the official file layout, written independently
        f.create_dataset("events", data=np.array([[10, 1, 2, 1], [20, 3, 4, 0]], np.uint32))
    raw = read_events(tmp_path / "raw.h5")
    assert raw["t"].tolist() == [10, 20] and raw["x"].tolist() == [1, 3] and raw["p"].tolist() == [1, 0]
    with h5py.File(tmp_path / "noev.h5", "w") as f:
        f.create_dataset("spikes", data=np.zeros((2, 4), np.uint32))
    with pytest.raises(DatasetError, match="no dataset 'events'.*spikes"):
        read_events(tmp_path / "noev.h5")
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f.create_dataset("events", data=np.zeros((2, 3), np.uint32))
    with pytest.raises(DatasetError, match=r"shape \(2, 3\)"):
        read_events(tmp_path / "shape.h5")
    with h5py.File(tmp_path / "float.h5", "w") as f:
        f.create_dataset("events", data=np.zeros((2, 4), np.float32))
    with pytest.raises(DatasetError, match="dtype float32"):
        read_events(tmp_path / "float.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        read_events(tmp_path / "junk.h5")
    with pytest.raises(DatasetError, match="does not exist"):
        read_events(tmp_path / "none.h5")


def test_dataset_items(tmp_path):
    pytest.importorskip("fer_perception.events.representation")
    entries = make_tree(tmp_path, n_subjects=2, seqs=3, n_events=3000)
    ds = FerDVSDataset(tmp_path, "TinyDVS")
    assert len(ds) == 6
    ds.check_files()
    x, y = ds[0]
    assert tuple(x.shape) == (6, 2, 128, 128) and str(x.dtype) == "torch.float32"
    assert y == entries[0].label
    assert set(np.unique(x.numpy())) <= {0.0, 1.0}
    # label L has its events in rows 30L..30L+29 of 200 -> rows ~19L..19L+19 of 128
    rows = np.nonzero(x.numpy().sum(axis=(0, 1, 3)))[0]
    assert rows.min() >= int(30 * y * 128 / 200) - 1 and rows.max() <= int((30 * y + 30) * 128 / 200) + 1
    cnn = FerDVSDataset(tmp_path, "TinyDVS", config=FerDVSConfig(layout="cnn"))
    xc, _ = cnn[0]
    assert tuple(xc.shape) == (12, 128, 128)
    np.testing.assert_array_equal(xc.numpy(), x.numpy().reshape(12, 128, 128))


def test_dataset_missing_file_and_bad_events(tmp_path):
    pytest.importorskip("fer_perception.events.representation")
    make_tree(tmp_path, n_subjects=2, seqs=2, n_events=500)
    (tmp_path / "FerDVS" / "TinyDVS" / "S001" / "002.h5").unlink()
    ds = FerDVSDataset(tmp_path, "TinyDVS")
    with pytest.raises(DatasetError, match=r"1 event file\(s\) missing: .*S001/002.h5"):
        ds.check_files()
    with pytest.raises(DatasetError, match="S001/002.h5 does not exist"):
        ds[3]
    ev = make_events([0, 1], [5, 250], [5, 5], [1, 0])
    write_events(tmp_path / "FerDVS" / "TinyDVS" / "S001" / "002.h5", ev)
    with pytest.raises(DatasetError, match="outside the 200x200 sensor"):
        ds[3]
    with pytest.raises(DatasetError, match="outside the 4 rows"):
        FerDVSDataset(tmp_path, "TinyDVS", indices=[0, 9])


def test_ckplus_timecode_rows_removed(tmp_path):
    ev = make_events(np.arange(4), [10, 10, 10, 10], [0, 184, 185, 199], [1, 1, 1, 1])
    entries = [FoldEntry("S001", 1, 0, (True,)), FoldEntry("S002", 1, 1, (False,))]
    for name in ("CKPlusDVS", "ADFESDVS"):
        write_events(tmp_path / "FerDVS" / name / "S001" / "001.h5", ev)
        write_events(tmp_path / "FerDVS" / name / "S002" / "001.h5", ev)
        write_folds(tmp_path / "FerDVS" / name / "folds.csv", entries)
    assert FerDVSDataset(tmp_path, "CKPlusDVS").load_events(0)["y"].tolist() == [0, 184]
    assert FerDVSDataset(tmp_path, "ADFESDVS").load_events(0)["y"].tolist() == [0, 184, 185, 199]
    cfg = FerDVSConfig(timecode_rows=0)
    assert len(FerDVSDataset(tmp_path, "CKPlusDVS", config=cfg).load_events(0)) == 4


def test_official_split_from_columns():
    entries = parse_folds(GOOD)
    split = official_split(entries, 1)  # fold1: only S010/001 is a test item
    assert split.test == (1,) and split.train == (0, 2)
    assert split.shared_subjects == ("S010",)
    with pytest.raises(DatasetError, match="0 training and 3 test"):
        official_split(entries, 3)
    with pytest.raises(ConfigError, match="fold 10 outside 0..9"):
        official_split(entries, 10)


def test_official_split_on_tree(tmp_path):
    entries = make_tree(tmp_path, n_subjects=6, seqs=3, n_events=10)
    split = official_split(entries, 0)
    assert set(split.train) | set(split.test) == set(range(len(entries)))
    assert not set(split.train) & set(split.test)
    assert all(entries[i].test_folds[0] for i in split.test)
    desc = split.describe()
    assert desc["kind"] == "official" and desc["n_test"] == len(split.test)


def test_official_folds_mix_subjects():
    # subject S1 has a sequence in train and one in test: the official folds are not subject-independent
    entries = [FoldEntry("S1", 1, 0, (True,)), FoldEntry("S1", 2, 1, (False,)), FoldEntry("S2", 1, 2, (False,))]
    split = official_split(entries, 0)
    assert split.shared_subjects == ("S1",)
    assert split.describe()["subject_independent"] is False


def test_subject_kfold_grouped_stratified_seeded():
    rng = np.random.default_rng(0)
    entries = []
    for s in range(40):
        for q in range(int(rng.integers(1, 6))):
            entries.append(FoldEntry(f"S{s:03d}", q + 1, int(rng.integers(0, 6)), (False,)))
    seen_test = []
    for k in range(5):
        split = subject_kfold(entries, k, n_folds=5, seed=3)
        assert not split.shared_subjects
        assert split.describe()["subject_independent"] is True
        assert set(split.train) | set(split.test) == set(range(len(entries)))
        seen_test.extend(split.test)
    assert sorted(seen_test) == list(range(len(entries)))  # every item tested exactly once
    # stratification: each fold's class histogram is close to the overall proportions
    overall = np.bincount([e.label for e in entries], minlength=6) / len(entries)
    for k in range(5):
        split = subject_kfold(entries, k, n_folds=5, seed=3)
        hist = np.bincount([entries[i].label for i in split.test], minlength=6) / len(split.test)
        assert np.abs(hist - overall).max() < 0.12
    a = subject_kfold(entries, 0, 5, seed=3)
    assert a == subject_kfold(entries, 0, 5, seed=3)
    assert any(subject_kfold(entries, 0, 5, seed=s).test != a.test for s in range(4, 10))
    with pytest.raises(DatasetError, match="cannot fill"):
        subject_kfold(entries[:3], 0, n_folds=10)
    with pytest.raises(ConfigError, match="unknown split"):
        make_split("random", entries, 0)
