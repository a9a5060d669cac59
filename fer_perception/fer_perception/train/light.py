"""``fer-perception train light``: the small CPU expression CNN (:mod:`fer_perception.models.light_fer`).

Data sources (one of):

- ``--csv fer2013.csv``: the FER2013 CSV (``emotion,pixels,Usage``); Training rows train, PublicTest
  validates, PrivateTest is the test set (without a Usage column: a seeded 80/10/10 split).
- ``--folder DIR``: ``DIR/train/<class>/*.png`` and ``DIR/test/<class>/*.png`` with FER2013 class names
  (angry, disgust, fear, happy, sad, surprise, neutral) or indices; 10 % of train validates.
- ``--synthetic N``: N synthetic subjects rendered by :mod:`fer_perception.synth.faces`, 7 classes
  (:data:`fer_perception.labels.SYNTHETIC_CLASSES`); the test set is fresh subjects. This is how the demo
  weights ``weights/light_fer_synthetic_demo.pt`` are made.

Writes ``OUT/light_fer.pt`` (our frame checkpoint; ``--export`` for another path), ``OUT/metrics.json`` and
``OUT/confusion_matrix.png``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

from fer_perception.errors import ConfigError

TRAIN_NAME = "light"
TRAIN_HELP = "train the small CPU expression CNN on FER2013 (CSV or folders) or synthetic faces"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fer_perception.train.common import add_trainer_arguments

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", help="FER2013 CSV file (emotion,pixels,Usage)")
    src.add_argument("--folder", help="folder with train/<class>/ and test/<class>/ images")
    src.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic subjects (demo weights)")
    p.add_argument("--size", type=int, default=48, choices=(48, 64), help="input size in pixels [48]")
    p.add_argument("--color", choices=("gray", "rgb"), default="gray", help="input colour [gray]")
    p.add_argument("--width", type=int, default=16, help="channel width of the first stage [16]")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (cosine schedule) [2e-3]")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share when none is given [0.1]")
    p.add_argument("--export", help="where to write the trained checkpoint [OUT/light_fer.pt]")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the file size)")
    add_trainer_arguments(p, epochs=30, batch_size=64)


def _synthetic(n: int, seed: int, val_fraction: float):
    from fer_perception.data.synthetic_faces import expression_crops
    from fer_perception.labels import SYNTHETIC_CLASSES

    if n < 4:
        raise ConfigError(f"--synthetic needs at least 4 subjects, got {n}")
    base = 1000 + 100_000 * seed
    n_val = max(1, int(round(n * val_fraction)))
    tr = expression_crops(range(base, base + n), frames_per_clip=3)
    va = expression_crops(range(base + n, base + n + n_val), frames_per_clip=2)
    te = expression_crops(range(base + 50_000, base + 50_000 + max(n_val, 10)), frames_per_clip=2)
    return tr, va, te, SYNTHETIC_CLASSES, f"synthetic faces: {n} train / {n_val} val subjects"


def _fer2013_csv(path: str, seed: int, val_fraction: float):
    from fer_perception.data.fer2013 import load_fer2013_csv
    from fer_perception.labels import FER2013_CLASSES

    data = load_fer2013_csv(path)
    if set(np.unique(data.usage)) >= {"Training", "PublicTest", "PrivateTest"}:
        parts = [data.split(u) for u in ("Training", "PublicTest", "PrivateTest")]
        out = [(d.images, d.labels) for d in parts]
    else:
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(data))
        nv = max(1, int(len(idx) * val_fraction))
        out = [(data.images[i], data.labels[i]) for i in (idx[2 * nv:], idx[:nv], idx[nv:2 * nv])]
    return out[0], out[1], out[2], FER2013_CLASSES, f"FER2013 CSV {os.path.basename(path)}"


def _folder(root: str, seed: int, val_fraction: float, size: int):
    from fer_perception.data.image_folder import scan_image_folder
    from fer_perception.data.utkface import load_rgb
    from fer_perception.labels import FER2013_CLASSES

    def load(split):
        d = scan_image_folder(os.path.join(root, split), FER2013_CLASSES)
        return np.stack([load_rgb(p, size) for p in d.paths]), d.labels

    x, y = load("train")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    nv = max(1, int(len(idx) * val_fraction))
    return (x[idx[nv:]], y[idx[nv:]]), (x[idx[:nv]], y[idx[:nv]]), load("test"), FER2013_CLASSES, f"folder {root}"


def run(args: argparse.Namespace) -> int:
    import lightning.pytorch as pl
    import torch

    from fer_perception.models.frame_checkpoint import save_frame_checkpoint
    from fer_perception.models.light_fer import LightFER, LightFerConfig
    from fer_perception.runtime.frame_models import Preprocess
    from fer_perception.train.common import TrainerOptions, git_commit, make_trainer, utc_now, write_report
    from fer_perception.train.frame_common import make_classifier_task, predict_logits, tensor_loader

    opts = TrainerOptions.from_args(args)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    pl.seed_everything(opts.seed, workers=True)
    if args.synthetic is not None:
        tr, va, te, classes, source = _synthetic(args.synthetic, opts.seed, args.val_fraction)
    elif args.csv:
        tr, va, te, classes, source = _fer2013_csv(args.csv, opts.seed, args.val_fraction)
    else:
        tr, va, te, classes, source = _folder(args.folder, opts.seed, args.val_fraction, args.size)
    cfg = LightFerConfig(n_classes=len(classes), in_channels=1 if args.color == "gray" else 3,
                         input_size=args.size, width=args.width).validate()
    pre = Preprocess.from_dict(cfg.preprocess())
    xs = [pre(list(part[0])) for part in (tr, va, te)]
    model = LightFER(cfg)
    task = make_classifier_task(model, len(classes), optimizer="adamw", lr=args.lr, weight_decay=1e-4,
                                scheduler={"kind": "cosine", "epochs": opts.epochs}, label_smoothing=0.05)
    trainer, _ckpt = make_trainer(opts, monitor="val_acc", mode="max")
    trainer.fit(task, tensor_loader(xs[0], tr[1], batch_size=opts.batch_size, shuffle=True, seed=opts.seed),
                tensor_loader(xs[1], va[1], batch_size=256, shuffle=False))
    if task.best_state is not None:
        model.load_state_dict(task.best_state)
    pred = predict_logits(model, xs[2])[0].argmax(1)
    extra: Dict[str, Any] = {"model": "light", "config": cfg.to_dict(), "source": source,
                             "n_train": len(tr[1]), "n_val": len(va[1]), "n_test": len(te[1]),
                             "best_val_acc": task.best_acc, "epochs": opts.epochs, "created": utc_now(),
                             "git_commit": git_commit()}
    metrics = write_report(opts.out, title=f"light FER ({source})", classes=classes, y_true=te[1], y_pred=pred,
                           extra=extra, csv_path=_csv_metrics(opts.out))
    path = args.export or os.path.join(opts.out, "light_fer.pt")
    meta = {k: v for k, v in extra.items() if k != "config"}
    meta.update(test_accuracy=metrics["test"]["accuracy"], test_balanced_accuracy=metrics["test"]["balanced_accuracy"])
    save_frame_checkpoint(path, model, kind="light", config=cfg.to_dict(), classes=classes,
                          preprocess=pre.to_dict(), meta=meta, half=args.half)
    print(f"test accuracy {metrics['test']['accuracy']:.3f} (n={len(te[1])}); checkpoint {path}")
    return 0


def _csv_metrics(out: str):
    from pathlib import Path

    p = Path(out) / "logs" / "csv" / "metrics.csv"
    return p if p.is_file() else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_perception.train.light", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
