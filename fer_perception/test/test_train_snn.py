"""Spiking-FER training: loss falls on a learnable toy task; the CLI writes checkpoints, logs, report; resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("spikingjelly")

from fer_perception import cli  # noqa: E402
from fer_perception.data.ferdvs import (  # noqa: E402
    FerDVSConfig, FerDVSDataset, FoldEntry, make_events, write_events, write_folds)
from fer_perception.errors import ConfigError  # noqa: E402
from fer_perception.train import common  # noqa: E402


def band_tree(root: Path, name="Toy", n_subjects=10, seqs=3, n_events=1500, seed=0):
    """Label L = events only in the L-th horizontal band of the 200x200 sensor (easy to learn)."""
    rng = np.random.default_rng(seed)
    entries = []
    for s in range(n_subjects):
        for q in range(1, seqs + 1):
            label = (s + q) % 6
            t = np.sort(rng.integers(0, 100_000, n_events))
            y = label * 33 + rng.integers(0, 33, n_events)
            ev = make_events(t, rng.integers(0, 200, n_events), y, rng.integers(0, 2, n_events))
            write_events(root / "FerDVS" / name / f"S{s:03d}" / f"{q:03d}.h5", ev)
            entries.append(FoldEntry(f"S{s:03d}", q, label, tuple(bool((s + q + k) % 4 == 0) for k in range(10))))
    write_folds(root / "FerDVS" / name / "folds.csv", entries)
    return entries


def test_loss_falls_on_toy_task(tmp_path):
    from fer_perception.train._spiking_fer_module import SpikingFerLightning

    torch.manual_seed(0)
    torch.set_num_threads(1)
    band_tree(tmp_path, n_subjects=4, seqs=3)
    cfg = FerDVSConfig(size=32, events_per_frame=200)
    ds = FerDVSDataset(tmp_path, "Toy", config=cfg)
    x = torch.stack([ds[i][0] for i in range(12)])
    y = torch.tensor([ds[i][1] for i in range(12)])
    assert tuple(x.shape) == (12, 6, 2, 32, 32)
    module = SpikingFerLightning("snn", 6, 6, width=0.125, learning_rate=0.05, epochs=10, input_size=32, dropout=0.0)
    (opt,), _ = module.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    adam = SpikingFerLightning("snn", 6, 6, width=0.125, optimizer="adam", input_size=32)
    (adam_opt,), (sched,) = adam.configure_optimizers()
    assert isinstance(adam_opt, torch.optim.Adam)
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    module.log = lambda *a, **k: None  # no trainer attached
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = module.training_step((x, y), 0)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2]), losses


def test_cli_train_writes_report_checkpoints_and_resumes(tmp_path, capsys):
    from fer_perception.models.checkpoint import load_checkpoint

    band_tree(tmp_path / "data")
    out = tmp_path / "run"
    base = ["train", "snn", "--root", str(tmp_path / "data"), "--dataset", "Toy", "--split", "subject",
            "--n-folds", "5", "--fold", "1", "--width", "0.125", "--size", "32", "--events-per-frame", "200",
            "--batch-size", "8", "--edas", "flip,event_drop,crop,mirror", "--out", str(out), "--no-progress",
            "--threads", "1", "--accelerator", "cpu", "--devices", "1"]
    assert cli.main(base + ["--epochs", "1"]) == 0
    for name in ("best.pt", "last.pt", "metrics.json", "confusion_matrix.png", "learning_curves.png", "split.json",
                 "checkpoints/last.ckpt", "logs/csv/metrics.csv"):
        assert (out / name).is_file(), name
    assert any((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"]["kind"] == "subject" and metrics["split"]["subject_independent"] is True
    assert metrics["test"]["n"] == metrics["split"]["n_test"] > 0
    assert len(metrics["test"]["confusion_matrix"]) == 6
    assert metrics["config"]["edas"] == ["flip", "event_drop", "crop", "mirror"]
    model, meta = load_checkpoint(out / "last.pt", kind="snn")
    assert meta.width == 0.125 and meta.input_size == 32
    assert meta.provenance["split"] == "subject" and meta.provenance["synthetic"] is False
    assert meta.representation["events_per_frame"] == 200
    # the Lightning checkpoint has the official layout (model. prefix + hyper_parameters) and loads too
    ck_model, ck_meta = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ck_meta.source == "official" and ck_meta.kind == "snn"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ck_model.state_dict()[k], v)
    # resume for a second epoch
    assert cli.main(base + ["--epochs", "2", "--resume", "last"]) == 0
    _, meta2 = load_checkpoint(out / "last.pt")
    assert meta2.provenance["epoch"] == 1
    assert (out / "logs" / "csv-resume-1" / "metrics.csv").is_file()
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [e for e, _ in history["val_acc"]] == [0, 1]  # both runs' epochs in the report
    assert "test accuracy" in capsys.readouterr().out


def test_cnn_baseline_trains_and_saves(tmp_path):
    from fer_perception.models.checkpoint import load_checkpoint

    band_tree(tmp_path / "data", n_subjects=4, seqs=2, n_events=600)
    out = tmp_path / "cnn"
    assert cli.main(["train", "cnn", "--root", str(tmp_path / "data"), "--dataset", "Toy", "--fold", "0",
                     "--width", "0.125", "--size", "32", "--events-per-frame", "100", "--epochs", "1",
                     "--batch-size", "4", "--out", str(out), "--no-progress", "--accelerator", "cpu",
                     "--devices", "1"]) == 0
    model, meta = load_checkpoint(out / "last.pt", kind="cnn")
    assert meta.kind == "cnn" and meta.provenance["split"] == "official"
    assert model.encoder.conv1.weight.shape[1] == 12  # 2T stacked channels
    split = json.loads((out / "split.json").read_text())
    assert split["kind"] == "official" and split["n_test"] + split["n_train"] == 8


def test_cli_errors(tmp_path, capsys):
    band_tree(tmp_path, n_subjects=3, seqs=2, n_events=50)
    args = ["train", "snn", "--root", str(tmp_path), "--dataset", "Toy", "--out", str(tmp_path / "o"), "--epochs", "1"]
    assert cli.main(args[:6] + ["--dataset", "Missing"] + args[6:]) == 2
    assert "no folds.csv for dataset 'Missing'" in capsys.readouterr().err
    assert cli.main(args + ["--edas", "flip,spin"]) == 2
    assert "unknown augmentation(s) spin" in capsys.readouterr().err
    assert cli.main(args + ["--resume", "last"]) == 2
    assert "last.ckpt does not exist" in capsys.readouterr().err
    assert cli.main(args + ["--split", "subject"]) == 2  # 3 subjects cannot fill 10 folds
    assert "cannot fill 10" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "nosuchkind"])


def test_train_dispatcher_discovers_kinds():
    from fer_perception.commands import train as train_cmd

    kinds = dict(train_cmd.discover())
    assert kinds["snn"] is kinds["cnn"]
    assert kinds["snn"].__name__ == "fer_perception.train.snn"
    parser = cli.build_parser()
    args = parser.parse_args(["train", "cnn", "--root", "r", "--out", "o"])
    assert args.train_kind == "cnn" and args.epochs == 500 and args.batch_size == 32 and args.lr == 5e-3


def test_devices_parsing_and_metrics(tmp_path):
    assert common.parse_devices("auto") == "auto"
    assert common.parse_devices("2") == 2
    assert common.parse_devices("0,1") == [0, 1]
    with pytest.raises(ConfigError, match="--devices"):
        common.parse_devices("two")
    cm = common.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    m = common.classification_metrics(cm, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="outside 0..2"):
        common.confusion_matrix([3], [0], 3)
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,step,train_loss_epoch,val_acc\n0,3,1.5,\n0,3,,0.25\n1,7,1.1,\n1,7,,0.5\n")
    series = common.read_csv_metrics(csv_path)
    assert series == {"train_loss_epoch": [(0, 1.5), (1, 1.1)], "val_acc": [(0, 0.25), (1, 0.5)]}
    resumed = tmp_path / "resumed.csv"
    resumed.write_text("epoch,step,val_acc\n1,7,0.75\n2,9,0.8\n")
    merged = common.read_csv_metrics([csv_path, resumed])
    assert merged["val_acc"] == [(0, 0.25), (1, 0.75), (2, 0.8)]
    common.plot_learning_curves(series, tmp_path / "c.png", "t")
    assert (tmp_path / "c.png").stat().st_size > 1000
