"""``fer-perception train snn|cnn``: Spiking-FER (SEW-ResNet-18 SNN) or its CNN baseline on a FerDVS dataset.

Recipe of the paper (docs/facts.md#spiking-fer): SGD lr 5e-3, momentum 0.9, weight decay 5e-4, cosine annealing over the
epochs (500), batch 32, cross-entropy, T = 6 frames of 2,500 events at 128x128, augmentations chosen with
``--edas``. The test split of the fold doubles as validation set, as in the official code; the report says
which numbers come from the last epoch and which from the epoch that scored best on that test set.

Outputs in ``--out``: ``best.pt`` / ``last.pt`` (our checkpoint format, for ``replay`` and the node),
``checkpoints/*.ckpt`` (Lightning, for ``--resume``), ``logs/csv`` and ``logs/tensorboard``, ``split.json``,
``metrics.json``, ``confusion_matrix.png``, ``learning_curves.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from fer_perception.errors import ConfigError
from fer_perception.labels import FERDVS_CLASSES
from fer_perception.train.common import TrainerOptions, add_trainer_arguments, git_commit, utc_now

log = logging.getLogger(__name__)

TRAIN_NAME = "snn"
TRAIN_NAMES: Tuple[str, ...] = ("snn", "cnn")
TRAIN_HELP = "Spiking-FER SNN (SEW-ResNet-18, IF neurons) on a FerDVS event dataset"
TRAIN_HELPS = {
    "snn": TRAIN_HELP,
    "cnn": "the Spiking-FER CNN baseline (ResNet-18 on the 2T stacked frames) on a FerDVS event dataset",
}
TRAIN_DESCRIPTION = __doc__.split("\n\n", 1)[1]
TRAIN_EPILOG = """\
examples:
  # official fold 0 of CK+DVS with all six augmentations, as in the paper (500 epochs)
  fer-perception train snn --dataset CKPlusDVS --root data --fold 0 --edas all --out runs/ck_f0
  # subject-independent 10-fold split (no subject in train and test), fold 3, seeded
  fer-perception train snn --dataset ADFESDVS --root data --split subject --fold 3 --split-seed 1 --out runs/ad_s3
  # the CNN baseline, 2 GPUs with DDP
  fer-perception train cnn --dataset CKPlusDVS --root data --fold 0 --devices 2 --strategy ddp --out runs/cnn
  # a narrow network on a synthetic dataset (see `fer-perception synth events`), CPU
  fer-perception train snn --dataset SyntheticDVS --root synth --width 0.25 --epochs 10 --out runs/demo
  # continue an interrupted run
  fer-perception train snn --dataset CKPlusDVS --root data --fold 0 --out runs/ck_f0 --resume last

--root is the folder holding FerDVS/<Dataset>/folds.csv (the official repository's data/ folder).
"""


@dataclass
class SnnTrainConfig:
    """Everything a Spiking-FER training run depends on (written to metrics.json and the checkpoints)."""

    root: str
    trainer: TrainerOptions
    kind: str = "snn"
    dataset: str = "CKPlusDVS"
    fold: int = 0
    split: str = "official"
    n_folds: int = 10
    split_seed: int = 0
    edas: Tuple[str, ...] = ()
    width: float = 1.0
    timesteps: int = 6
    events_per_frame: int = 2500
    size: int = 128
    learning_rate: float = 5e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    optimizer: str = "sgd"
    timecode_rows: Optional[int] = None
    classes: Tuple[str, ...] = FERDVS_CLASSES
    sensor_size: Tuple[int, int] = (200, 200)
    synthetic: bool = False
    extra_provenance: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.kind not in TRAIN_NAMES:
            raise ConfigError(f"training kind must be one of {TRAIN_NAMES}, got {self.kind!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"--optimizer must be sgd or adam, got {self.optimizer!r}")
        if not 0 < self.width <= 4:
            raise ConfigError(f"--width must be in (0, 4], got {self.width}")
        if self.timesteps < 1 or self.events_per_frame < 1 or self.size < 8:
            raise ConfigError("--timesteps and --events-per-frame must be positive, --size at least 8")
        self.trainer.validate()


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fer_perception.data.augment import AUGMENTATIONS
    from fer_perception.data.splits import SPLIT_KINDS

    d = p.add_argument_group("data")
    d.add_argument("--root", required=True, help="folder holding FerDVS/<Dataset>/folds.csv")
    d.add_argument("--dataset", default="CKPlusDVS",
                   help="CKPlusDVS, ADFESDVS, CASIADVS, MMIDVS or any folder with the same layout [CKPlusDVS]")
    d.add_argument("--fold", type=int, default=0, help="fold to hold out as test set [0]")
    d.add_argument("--split", choices=SPLIT_KINDS, default="official",
                   help="official: the folds.csv columns (subjects shared between train and test); "
                        "subject: subject-independent stratified k-fold [official]")
    d.add_argument("--n-folds", type=int, default=10, help="folds of the subject split [10]")
    d.add_argument("--split-seed", type=int, default=0, help="seed of the subject split [0]")
    d.add_argument("--edas", default="",
                   help=f"augmentations, comma-separated, applied in the official order: {','.join(AUGMENTATIONS)}; "
                        "'all' for the six, '' for none; our extra 'window' trains on random event windows of the "
                        "clip instead of its central one [none]")
    d.add_argument("--timecode-rows", type=int, default=None,
                   help="drop events in this many bottom rows "
                        "(default: 15 on CKPlusDVS, its burned-in timecode; 0 elsewhere)")
    m = p.add_argument_group("model and optimiser")
    m.add_argument("--width", type=float, default=1.0,
                   help="channel width multiplier (1.0 = the paper's 11.4 M parameters) [1.0]")
    m.add_argument("--timesteps", type=int, default=6, help="T, frames per sample [6]")
    m.add_argument("--events-per-frame", type=int, default=2500, help="events per frame [2500]")
    m.add_argument("--size", type=int, default=128, help="input side in pixels after the nearest resize [128]")
    m.add_argument("--lr", type=float, default=5e-3, help="SGD learning rate [5e-3]")
    m.add_argument("--momentum", type=float, default=0.9, help="SGD momentum [0.9]")
    m.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay [5e-4]")
    m.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                   help="sgd (the paper's) or adam (converges in fewer epochs on short CPU runs) [sgd]")
    add_trainer_arguments(p, epochs=500, batch_size=32)


def config_from_args(args: argparse.Namespace, kind: str) -> SnnTrainConfig:
    from fer_perception.data.augment import parse_edas

    cfg = SnnTrainConfig(
        root=str(args.root), trainer=TrainerOptions.from_args(args), kind=kind, dataset=args.dataset,
        fold=int(args.fold), split=args.split, n_folds=int(args.n_folds), split_seed=int(args.split_seed),
        edas=parse_edas(args.edas), width=float(args.width), timesteps=int(args.timesteps),
        events_per_frame=int(args.events_per_frame), size=int(args.size), learning_rate=float(args.lr),
        momentum=float(args.momentum),
        weight_decay=float(args.weight_decay), optimizer=args.optimizer, timecode_rows=args.timecode_rows,
    )
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    kind = getattr(args, "train_kind", TRAIN_NAME)
    cfg = config_from_args(args, kind)
    metrics = train(cfg)
    test = metrics["test"]
    print(f"{kind} on {cfg.dataset} ({cfg.split} split, fold {cfg.fold}): test accuracy {test['accuracy']:.4f} "
          f"(last epoch), balanced {test['balanced_accuracy']:.4f}; report in {cfg.trainer.out}")
    return 0


# ---------------------------------------------------------------------------------------------------------


def build_datasets(cfg: SnnTrainConfig):
    """(train dataset, test dataset, Split) for ``cfg``."""
    from fer_perception.data.augment import AugmentConfig, Augmenter
    from fer_perception.data.ferdvs import FerDVSConfig, FerDVSDataset, dataset_dir, read_folds
    from fer_perception.data.splits import make_split

    entries = read_folds(dataset_dir(cfg.root, cfg.dataset) / "folds.csv", n_classes=len(cfg.classes))
    split = make_split(cfg.split, entries, cfg.fold, cfg.n_folds, cfg.split_seed)
    dcfg = FerDVSConfig(
        sensor_size=tuple(cfg.sensor_size), timesteps=cfg.timesteps, events_per_frame=cfg.events_per_frame,
        size=cfg.size, timecode_rows=cfg.timecode_rows, layout="snn", seed=cfg.trainer.seed,
    )
    aug_cfg = AugmentConfig(window_events=cfg.timesteps * cfg.events_per_frame)
    aug = Augmenter(cfg.edas, cfg.sensor_size, aug_cfg) if cfg.edas else None
    train_ds = FerDVSDataset(cfg.root, cfg.dataset, split.train, dcfg, aug, entries=entries)
    test_ds = FerDVSDataset(cfg.root, cfg.dataset, split.test, dcfg, None, entries=entries)
    train_ds.check_files()
    test_ds.check_files()
    return train_ds, test_ds, split


def checkpoint_meta(cfg: SnnTrainConfig, split_info: Dict[str, Any]) -> Dict[str, Any]:
    from fer_perception.data.ferdvs import CKPLUS_TIMECODE_ROWS

    rows = cfg.timecode_rows if cfg.timecode_rows is not None else (
        CKPLUS_TIMECODE_ROWS if cfg.dataset == "CKPlusDVS" else 0)
    return {
        "classes": list(cfg.classes),
        "representation": {
            "events_per_frame": cfg.events_per_frame, "timesteps": cfg.timesteps, "size": cfg.size,
            "crop_size": max(cfg.sensor_size), "binarize": True, "keep": "central", "timecode_rows": rows,
        },
        "provenance": {
            "dataset": cfg.dataset, "fold": cfg.fold, "split": cfg.split, "split_seed": cfg.split_seed,
            "subject_independent": bool(split_info.get("subject_independent")),
            "edas": list(cfg.edas), "seed": cfg.trainer.seed, "epochs": cfg.trainer.epochs,
            "commit": git_commit(), "date": utc_now(), "synthetic": bool(cfg.synthetic),
            **cfg.extra_provenance,
        },
        "hyper_parameters": {
            "learning_rate": cfg.learning_rate, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay,
            "batch_size": cfg.trainer.batch_size, "epochs": cfg.trainer.epochs, "mode": cfg.kind,
            "optimizer": cfg.optimizer,
        },
    }


def predict(model, dataset, batch_size: int = 32, device: str = "cpu"):
    """(labels, predictions) of ``model`` (our SpikingFER/CNNBaseline) over ``dataset``, no augmentation."""
    import numpy as np
    import torch

    model = model.to(device).eval()
    ys, ps = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            x = torch.stack([it[0] for it in items]).transpose(0, 1).contiguous().to(device)
            ps.append(model(x).argmax(dim=1).cpu().numpy())
            ys.append(np.array([it[1] for it in items]))
    if not ys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ys).astype(np.int64), np.concatenate(ps).astype(np.int64)


def train(cfg: SnnTrainConfig) -> Dict[str, Any]:
    """Run the training described by ``cfg``; returns the metrics written to ``metrics.json``."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader

    from fer_perception.models.checkpoint import load_checkpoint
    from fer_perception.train._spiking_fer_module import SaveOurCheckpoints, SpikingFerLightning
    from fer_perception.train.common import csv_logs, make_trainer, resolve_resume, write_report

    cfg.validate()
    opts = cfg.trainer
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    pl.seed_everything(opts.seed, workers=True, verbose=False)

    train_ds, test_ds, split = build_datasets(cfg)
    split_info = split.describe()
    if cfg.split == "official" and split.shared_subjects:
        log.warning("official fold %d: %d subject(s) have sequences in both train and test; the accuracy is not "
                    "subject-independent (use --split subject for that)", cfg.fold, len(split.shared_subjects))
    split_doc = {"dataset": cfg.dataset, "root": str(cfg.root), **split_info}
    (out / "split.json").write_text(json.dumps(split_doc, indent=2) + "\n")
    log.info("%s: %d training and %d test sequences (%s split, fold %d)", cfg.dataset, len(train_ds), len(test_ds),
             cfg.split, cfg.fold)

    module = SpikingFerLightning(
        mode=cfg.kind, n_classes=len(cfg.classes), timesteps=cfg.timesteps, width=cfg.width,
        learning_rate=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        epochs=opts.epochs, input_size=cfg.size, dropout=cfg.dropout, optimizer=cfg.optimizer,
    )
    meta = checkpoint_meta(cfg, split_info)
    ours = SaveOurCheckpoints(out, meta)
    trainer, _ = make_trainer(opts, monitor="val_acc", mode="max", callbacks=[ours])
    loader_kw = dict(batch_size=opts.batch_size, num_workers=opts.workers, persistent_workers=opts.workers > 0)
    train_loader = DataLoader(train_ds, shuffle=True, drop_last=False, **loader_kw)
    test_loader = DataLoader(test_ds, shuffle=False, **loader_kw)
    trainer.fit(module, train_loader, test_loader, ckpt_path=resolve_resume(opts))

    if not trainer.is_global_zero:
        return {}
    y_true, y_pred = predict(module.model, test_ds, opts.batch_size)
    best_metrics = None
    if (out / "best.pt").is_file():
        best_model, best_meta = load_checkpoint(out / "best.pt", kind=cfg.kind)
        bt, bp = predict(best_model, test_ds, opts.batch_size)
        from fer_perception.train.common import classification_metrics, confusion_matrix

        best_metrics = classification_metrics(confusion_matrix(bt, bp, len(cfg.classes)), cfg.classes)
        best_metrics["epoch"] = best_meta.provenance.get("epoch")
        best_metrics.pop("confusion_matrix", None)
    cfg_dict = asdict(cfg)
    extra = {
        "kind": cfg.kind, "dataset": cfg.dataset, "split": split_info, "config": cfg_dict,
        "test_note": "test = model after the last epoch; best_on_test = epoch chosen by test accuracy (as the "
                     "official code's ModelCheckpoint(monitor='val_acc') does, with the test set as validation "
                     "set): optimistic",
        "best_on_test": best_metrics, "commit": meta["provenance"]["commit"], "date": utc_now(),
        "checkpoints": {"best": str(out / "best.pt"), "last": str(out / "last.pt"),
                        "lightning_last": str(out / "checkpoints" / "last.ckpt")},
    }
    title = f"{cfg.kind} on {cfg.dataset}, {cfg.split} fold {cfg.fold}"
    return write_report(out, title=title, classes=cfg.classes, y_true=y_true, y_pred=y_pred, extra=extra,
                        csv_path=csv_logs(out))
