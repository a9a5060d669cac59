"""``fer-perception train dan``: DAN (:mod:`fer_perception.models.dan`) on RAF-DB or AffectNet.

Dataset layouts (see :mod:`fer_perception.data.rafdb` and :mod:`fer_perception.data.affectnet`):

- ``--rafdb ROOT``: ``ROOT/EmoLabel/list_patition_label.txt`` ("train_00001.jpg 5", labels 1..7) and
  ``ROOT/Image/aligned/train_00001_aligned.jpg`` (the layout DAN's code reads), or ``ROOT/train/<class>/``
  and ``ROOT/test/<class>/``. 7 classes in RAF-DB order; the test split is the test set.
- ``--affectnet ROOT``: ``ROOT/training.csv`` + ``ROOT/validation.csv`` (columns subDirectory_filePath,
  expression) over ``ROOT/Manually_Annotated_Images/``, or ``ROOT/train/<class>/`` and ``ROOT/val/<class>/``;
  ``--classes 8`` (default) or ``7``; the validation split is the test set, as in the paper.
- ``--synthetic N``: synthetic faces (7 classes), for smoke tests only.

Recipe (docs/facts.md#dan): cross-entropy + affinity loss + partition loss (weights 1). RAF-DB: SGD lr 0.1,
momentum 0.9, weight decay 1e-4, StepLR(10, 0.1), batch 256, 40 epochs. AffectNet: Adam lr 1e-4,
ExponentialLR(0.6), class-balanced sampling. Augmentation: horizontal flip, small rotation/scale/shift and
brightness/contrast jitter on the batch, then random erasing (scale 0.02-0.25, as the official recipe).
The trunk starts from ``--backbone-weights`` (a ResNet-18 state_dict with torchvision key names, e.g. DAN's
MS-Celeb ``resnet18_msceleb.pth``) or ``--init`` (a DAN checkpoint, official or ours, to fine-tune);
otherwise from scratch. Writes ``OUT/dan.pt`` (our checkpoint),
``OUT/metrics.json`` and ``OUT/confusion_matrix.png``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

from fer_perception.errors import CheckpointError, ConfigError

TRAIN_NAME = "dan"
TRAIN_HELP = "train DAN (ResNet-18 + attention heads) on RAF-DB or AffectNet"

RECIPES: Dict[str, Dict[str, Any]] = {
    "rafdb": {"optimizer": "sgd", "lr": 0.1, "scheduler": {"kind": "step", "step": 10, "gamma": 0.1},
              "batch_size": 256, "epochs": 40, "balanced": False},
    "affectnet": {"optimizer": "adam", "lr": 1e-4, "scheduler": {"kind": "exp", "gamma": 0.6},
                  "batch_size": 256, "epochs": 10, "balanced": True},
    "synthetic": {"optimizer": "adam", "lr": 1e-4, "scheduler": None, "batch_size": 16, "epochs": 2,
                  "balanced": False},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fer_perception.train.common import add_trainer_arguments

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--rafdb", help="RAF-DB basic root (EmoLabel/ + Image/aligned/, or train/ + test/)")
    src.add_argument("--affectnet", help="AffectNet root (training.csv + validation.csv, or train/ + val/)")
    src.add_argument("--synthetic", type=int, metavar="N", help="N synthetic subjects (smoke tests)")
    p.add_argument("--classes", type=int, choices=(7, 8), default=8, help="AffectNet task: 7 or 8 classes [8]")
    p.add_argument("--num-head", type=int, default=4, help="attention heads [4]")
    p.add_argument("--size", type=int, default=224, help="input size [224, the official]")
    p.add_argument("--lr", type=float, help="learning rate [recipe: RAF-DB 0.1 SGD, AffectNet 1e-4 Adam]")
    p.add_argument("--backbone-weights", help="ResNet-18 state_dict (torchvision keys) for the trunk")
    p.add_argument("--init", help="DAN checkpoint (official or ours) to start from")
    p.add_argument("--export", help="where to write the trained checkpoint [OUT/dan.pt]")
    add_trainer_arguments(p, epochs=0, batch_size=0)


def load_backbone_weights(dan, path: str) -> None:
    """Copy a torchvision-keyed ResNet-18 state_dict (``fc`` ignored) into ``dan.features`` strictly."""
    from fer_perception.models.frame_checkpoint import load_state_dict_strict, torch_load

    blob = torch_load(path)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a ResNet-18 state_dict (or {{'state_dict': ...}})")
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    mapped = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        if head in ("fc", "feature", "classifier"):
            continue
        if head not in names:
            raise CheckpointError(f"{path}: key {k!r} is not a ResNet-18 trunk key")
        mapped[f"{names[head]}.{rest}"] = v
    load_state_dict_strict(dan.features, mapped, source=path)


def dan_extra_loss(n_classes: int):
    """``extra_loss(outputs, y)`` = affinity(features, y) + partition(heads), and the affinity module."""
    from fer_perception.models.dan import AffinityLoss, PartitionLoss

    affinity = AffinityLoss(n_classes)
    partition = PartitionLoss()

    def extra(outputs, y):
        _logits, feats, heads = outputs
        return affinity(feats, y) + partition(heads)

    return extra, affinity


def run(args: argparse.Namespace) -> int:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader

    from fer_perception.models.dan import DAN, DAN_PREPROCESS, load_dan
    from fer_perception.models.frame_checkpoint import save_frame_checkpoint
    from fer_perception.runtime.frame_models import Preprocess
    from fer_perception.train.common import TrainerOptions, git_commit, make_trainer, utc_now, write_report
    from fer_perception.train.frame_common import (
        ImageFileDataset, class_balanced_sampler, make_classifier_task, predict_logits, tensor_loader,
    )

    family = "rafdb" if args.rafdb else "affectnet" if args.affectnet else "synthetic"
    recipe = RECIPES[family]
    if not args.epochs:
        args.epochs = recipe["epochs"]
    if not args.batch_size:
        args.batch_size = recipe["batch_size"]
    opts = TrainerOptions.from_args(args)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    pl.seed_everything(opts.seed, workers=True)
    if args.size < 32:
        raise ConfigError(f"--size must be >= 32, got {args.size}")
    pre = Preprocess.from_dict(dict(DAN_PREPROCESS, size=int(args.size)))
    if family == "synthetic":
        from fer_perception.data.synthetic_faces import expression_crops
        from fer_perception.labels import SYNTHETIC_CLASSES

        n = max(2, int(args.synthetic))
        tr = expression_crops(range(7000, 7000 + n), size=args.size)
        te = expression_crops(range(9000, 9000 + max(2, n // 2)), size=args.size)
        classes, source = SYNTHETIC_CLASSES, f"synthetic faces ({n} subjects)"
        train_labels = tr[1]
        train_dl = tensor_loader(pre(list(tr[0])), tr[1], batch_size=opts.batch_size, shuffle=True, seed=opts.seed)
        test_x, test_y = pre(list(te[0])), te[1]
        val_dl = tensor_loader(test_x, test_y, batch_size=64, shuffle=False)
    else:
        if family == "rafdb":
            from fer_perception.data.rafdb import load_rafdb

            train, test = load_rafdb(args.rafdb, "train"), load_rafdb(args.rafdb, "test")
            source = f"RAF-DB {args.rafdb}"
        else:
            from fer_perception.data.affectnet import load_affectnet

            train = load_affectnet(args.affectnet, "train", args.classes)
            test = load_affectnet(args.affectnet, "val", args.classes)
            source = f"AffectNet-{args.classes} {args.affectnet}"
        classes, train_labels = train.classes, train.labels
        sampler = class_balanced_sampler(train.labels, len(classes), opts.seed) if recipe["balanced"] else None
        gen = torch.Generator().manual_seed(opts.seed)
        train_dl = DataLoader(ImageFileDataset(train.paths, list(train.labels), pre), batch_size=opts.batch_size,
                              shuffle=sampler is None, sampler=sampler, num_workers=opts.workers, generator=gen)
        test_ds = ImageFileDataset(test.paths, list(test.labels), pre)
        val_dl = DataLoader(test_ds, batch_size=64, num_workers=opts.workers)
        test_x, test_y = None, test.labels
    if args.init:
        model, init_classes, _ = load_dan(args.init, classes)
        if model.num_class != len(classes):
            raise ConfigError(f"--init has {model.num_class} classes, the data {len(classes)}")
        model.train()
    else:
        model = DAN(num_class=len(classes), num_head=args.num_head)
        if args.backbone_weights:
            load_backbone_weights(model, args.backbone_weights)
    extra, affinity = dan_extra_loss(len(classes))
    task = make_classifier_task(model, len(classes), optimizer=recipe["optimizer"], lr=args.lr or recipe["lr"],
                                weight_decay=1e-4, scheduler=recipe["scheduler"], extra_loss=extra,
                                extra_params=[affinity], erasing=True)
    trainer, _ckpt = make_trainer(opts, monitor="val_acc", mode="max")
    trainer.fit(task, train_dl, val_dl)
    if task.best_state is not None:
        model.load_state_dict(task.best_state)
    if test_x is not None:
        pred = predict_logits(model, test_x)[0].argmax(1)
    else:
        model.eval()
        preds = []
        with torch.inference_mode():
            for xb, _ in val_dl:
                preds.append(model(xb)[0].argmax(1).numpy())
        pred = np.concatenate(preds)
    extra_meta: Dict[str, Any] = {"model": "dan", "source": source, "recipe": recipe, "epochs": opts.epochs,
                                  "n_train": int(len(train_labels)), "best_val_acc": task.best_acc,
                                  "created": utc_now(), "git_commit": git_commit()}
    from pathlib import Path

    csvp = Path(opts.out) / "logs" / "csv" / "metrics.csv"
    metrics = write_report(opts.out, title=f"DAN ({source[:40]})", classes=classes, y_true=test_y, y_pred=pred,
                           extra=extra_meta, csv_path=csvp if csvp.is_file() else None)
    path = args.export or os.path.join(opts.out, "dan.pt")
    meta = dict(extra_meta, test_accuracy=metrics["test"]["accuracy"],
                test_balanced_accuracy=metrics["test"]["balanced_accuracy"])
    save_frame_checkpoint(path, model, kind="dan", config={"num_class": len(classes), "num_head": model.num_head},
                          classes=classes, preprocess=pre.to_dict(), meta=meta)
    print(f"test accuracy {metrics['test']['accuracy']:.3f} (n={len(test_y)}); checkpoint {path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_perception.train.dan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
