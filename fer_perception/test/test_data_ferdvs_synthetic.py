"""Synthetic event data: `fer-perception synth events` writes a dataset the FerDVS reader accepts; in-memory
clips are seeded and balanced."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception import cli
from fer_perception.data.ferdvs import FerDVSDataset, read_folds
from fer_perception.data.splits import subject_kfold
from fer_perception.labels import FERDVS_CLASSES

pytest.importorskip("fer_perception.synth.ferdvs_writer")


def test_synth_events_cli_roundtrip(tmp_path, capsys):
    assert cli.main(["synth", "events", "--out", str(tmp_path), "--dataset", "Tiny", "--subjects", "2",
                     "--frames", "16", "--seed", "5"]) == 0
    assert "wrote 12 sequences of 2 subjects" in capsys.readouterr().out
    entries = read_folds(tmp_path / "FerDVS" / "Tiny" / "folds.csv")
    assert len(entries) == 12 and len(entries[0].test_folds) == 10
    assert sorted(e.label for e in entries) == sorted(list(range(6)) * 2)
    ds = FerDVSDataset(tmp_path, "Tiny")
    ds.check_files()
    ev = ds.load_events(0)
    assert len(ev) > 1000 and ev["x"].max() < 200 and ev["y"].max() < 200
    x, y = ds[0]
    assert tuple(x.shape) == (6, 2, 128, 128) and float(x.sum()) > 0
    assert y == entries[0].label
    # writing again into the same folder is refused (named), --overwrite allows it
    assert cli.main(["synth", "events", "--out", str(tmp_path), "--dataset", "Tiny", "--subjects", "1",
                     "--frames", "8"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_generate_clips_seeded_and_balanced():
    from fer_perception.data.synthetic_events import clips_to_inputs, generate_clips

    a = generate_clips(6, seed=11, face_overrides={"n_frames": 12})
    b = generate_clips(6, seed=11, face_overrides={"n_frames": 12})
    c = generate_clips(6, seed=12, face_overrides={"n_frames": 12})
    assert [k.expression for k in a] == list(FERDVS_CLASSES)
    assert [k.label for k in a] == list(range(6))
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.events, q.events)
    assert len({k.identity_seed for k in a}) == 6  # one identity per clip
    assert not {k.identity_seed for k in a} & {k.identity_seed for k in c}
    x, y = clips_to_inputs(a[:2])
    assert x.shape == (2, 6, 2, 128, 128) and y.tolist() == [0, 1]


def test_generate_clips_rejects_bad_arguments():
    from fer_perception.data.synthetic_events import generate_clips
    from fer_perception.errors import ConfigError

    with pytest.raises(ConfigError, match="number of clips"):
        generate_clips(0, 1)
    with pytest.raises(ConfigError, match="subset of"):
        generate_clips(1, 1, classes=("joy",))


def test_subject_split_on_synthetic_rows(tmp_path):
    # the writer shares subjects between train and test in its official-style columns; the subject split does not
    from fer_perception.data.splits import official_split
    from fer_perception.data.ferdvs import FoldEntry

    rows = [FoldEntry(f"S{s:03d}", q, q % 6, tuple(bool((s * 6 + q) % 5 == 0) for _ in range(10)))
            for s in range(10) for q in range(6)]
    assert official_split(rows, 0).shared_subjects
    assert not subject_kfold(rows, 0, n_folds=5, seed=1).shared_subjects
