"""Shared pieces of every ``fer-perception train <kind>`` module: Lightning trainer options, logging,
checkpoint resumption, and the end-of-run report (metrics.json, confusion_matrix.png, learning_curves.png).

Nothing here imports torch or Lightning at module import time (the CLI builds its parser from these modules).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import logging
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from fer_perception.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TrainerOptions:
    """Lightning trainer settings every training kind shares."""

    out: str
    epochs: int
    batch_size: int = 32
    workers: int = 0
    seed: int = 0
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    precision: str = "32-true"
    resume: Optional[str] = None
    limit_train_batches: Optional[float] = None
    progress: bool = True
    threads: int = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainerOptions":
        opts = cls(
            out=str(args.out), epochs=int(args.epochs), batch_size=int(args.batch_size), workers=int(args.workers),
            seed=int(args.seed), devices=str(args.devices), num_nodes=int(args.num_nodes),
            strategy=str(args.strategy), accelerator=str(args.accelerator), precision=str(args.precision),
            resume=args.resume, limit_train_batches=args.limit_train_batches,
            progress=not getattr(args, "no_progress", False), threads=int(getattr(args, "threads", 0) or 0),
        )
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.num_nodes < 1:
            raise ConfigError(f"--num-nodes must be >= 1, got {self.num_nodes}")


def default_workers() -> int:
    n = os.cpu_count() or 1
    return 0 if n <= 2 else min(8, n - 1)


def add_trainer_arguments(p: argparse.ArgumentParser, *, epochs: int, batch_size: int) -> None:
    """The options every training kind accepts (Lightning, logging, resumption)."""
    g = p.add_argument_group("training run")
    g.add_argument("--out", required=True, help="output folder: checkpoints, logs and the report go here")
    g.add_argument("--epochs", type=int, default=epochs, help=f"training epochs [{epochs}]")
    g.add_argument("--batch-size", type=int, default=batch_size, help=f"batch size per device [{batch_size}]")
    g.add_argument("--seed", type=int, default=0, help="seed of everything (weights, shuffling, augmentations) [0]")
    g.add_argument("--workers", type=int, default=default_workers(),
                   help="DataLoader worker processes per device [0 on <= 2 CPUs, else CPUs-1 up to 8]")
    g.add_argument("--resume", metavar="CKPT",
                   help="resume from a Lightning .ckpt; 'last' = OUT/checkpoints/last.ckpt")
    g.add_argument("--limit-train-batches", type=float, default=None,
                   help="use only this many (int) or this fraction (float) of training batches per epoch")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch jobs)")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    d = p.add_argument_group("devices (passed to Lightning's Trainer)")
    d.add_argument("--accelerator", default="auto", help="cpu, gpu, cuda, mps or auto [auto]")
    d.add_argument("--devices", default="auto", help="number of devices, a list like 0,1, or auto [auto]")
    d.add_argument("--num-nodes", type=int, default=1, help="machines for multi-node DDP [1]")
    d.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn, fsdp, ... [auto]")
    d.add_argument("--precision", default="32-true", help="32-true, 16-mixed, bf16-mixed [32-true]")


def parse_devices(value: str):
    """Lightning ``devices``: ``"auto"``, an int, or a list of indices (``"0,1"``)."""
    v = str(value).strip()
    if v == "auto" or v == "-1":
        return v if v == "auto" else -1
    if "," in v:
        try:
            return [int(x) for x in v.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--devices {value!r}: expected auto, a count, or indices like 0,1") from None
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"--devices {value!r}: expected auto, a count, or indices like 0,1") from None


def resolve_resume(opts: TrainerOptions) -> Optional[str]:
    if not opts.resume:
        return None
    path = Path(opts.out) / "checkpoints" / "last.ckpt" if opts.resume == "last" else Path(opts.resume)
    if not path.is_file():
        raise ConfigError(f"--resume: checkpoint {path} does not exist")
    return str(path)


def make_trainer(opts: TrainerOptions, monitor: str = "val_acc", mode: str = "max", callbacks: Sequence = ()):
    """A Lightning ``Trainer`` with CSV + TensorBoard logs and best/last ``.ckpt`` files under ``opts.out``."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    version = "csv"
    if opts.resume:  # a resumed run logs beside the earlier logs; the report merges them (csv_logs)
        k = 1
        while (out / "logs" / f"csv-resume-{k}").exists():
            k += 1
        version = f"csv-resume-{k}"
    loggers = [CSVLogger(str(out), name="logs", version=version)]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="logs", version="tensorboard", default_hp_metric=False))
    except (ImportError, ModuleNotFoundError) as exc:  # tensorboard is optional
        log.warning("TensorBoard logging disabled: %s", exc)
    ckpt = ModelCheckpoint(
        dirpath=str(out / "checkpoints"), filename="best-{epoch:03d}-{" + monitor + ":.4f}", monitor=monitor,
        mode=mode, save_top_k=1, save_last=True,
    )
    cbs: List[Any] = [ckpt, *callbacks]
    if opts.progress:

        class _Bar(TQDMProgressBar):
            def get_metrics(self, trainer, pl_module):  # the joined logger versions say nothing useful
                items = super().get_metrics(trainer, pl_module)
                items.pop("v_num", None)
                return items

        cbs.append(_Bar(refresh_rate=1))
    kwargs: Dict[str, Any] = dict(
        max_epochs=opts.epochs, accelerator=opts.accelerator, devices=parse_devices(opts.devices),
        num_nodes=opts.num_nodes, strategy=opts.strategy, precision=opts.precision, logger=loggers,
        callbacks=cbs, default_root_dir=str(out), enable_progress_bar=opts.progress, log_every_n_steps=1,
        deterministic=False,
    )
    if opts.limit_train_batches is not None:
        lim = opts.limit_train_batches
        kwargs["limit_train_batches"] = int(lim) if float(lim).is_integer() and lim >= 1 else float(lim)
    try:
        trainer = pl.Trainer(**kwargs)
    except Exception as exc:  # Lightning raises MisconfigurationException/ValueError for bad device options
        raise ConfigError(f"Lightning rejected the device options: {exc}") from exc
    return trainer, ckpt


# ---------------------------------------------------------------------------------------------------------
# Provenance and report


def git_commit(path: Optional[str] = None) -> Optional[str]:
    """The commit of the repository holding this file (None outside a git checkout)."""
    here = path or os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """``cm[i, j]`` = items of true class i predicted as j."""
    yt = np.asarray(y_true, np.int64)
    yp = np.asarray(y_pred, np.int64)
    if yt.shape != yp.shape:
        raise ConfigError(f"confusion_matrix: {yt.shape} labels vs {yp.shape} predictions")
    if len(yt) and (yt.min() < 0 or yp.min() < 0 or yt.max() >= n_classes or yp.max() >= n_classes):
        raise ConfigError(f"confusion_matrix: labels outside 0..{n_classes - 1}")
    return np.bincount(yt * n_classes + yp, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(cm: np.ndarray, classes: Sequence[str]) -> Dict[str, Any]:
    """Accuracy, balanced accuracy, per-class recall/precision from a confusion matrix."""
    cm = np.asarray(cm, np.float64)
    total = cm.sum()
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    diag = np.diag(cm)
    recall = np.divide(diag, support, out=np.zeros_like(diag), where=support > 0)
    precision = np.divide(diag, predicted, out=np.zeros_like(diag), where=predicted > 0)
    present = support > 0
    return {
        "n": int(total),
        "accuracy": float(diag.sum() / total) if total else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {"recall": float(recall[i]), "precision": float(precision[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.8 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def csv_logs(out: Path) -> List[Path]:
    """The CSV metric files of a run folder, first run first, then each resumption."""
    logs = Path(out) / "logs"
    first = [logs / "csv" / "metrics.csv"]
    resumed = sorted(logs.glob("csv-resume-*/metrics.csv"), key=lambda p: int(p.parent.name.rsplit("-", 1)[1]))
    return [p for p in first + resumed if p.is_file()]


def read_csv_metrics(paths) -> Dict[str, List[tuple]]:
    """Lightning CSVLogger ``metrics.csv`` file(s) as ``{metric: [(epoch, value), ...]}`` (epoch-level rows).

    With several files (a run and its resumptions) a later file's value for an epoch replaces an earlier one.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    merged: Dict[str, Dict[int, float]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                epoch = row.get("epoch")
                if epoch in (None, ""):
                    continue
                for key, value in row.items():
                    if key in ("epoch", "step") or value in (None, "") or key.endswith("_step"):
                        continue
                    try:
                        merged.setdefault(key, {})[int(float(epoch))] = float(value)
                    except (TypeError, ValueError):
                        continue
    return {k: sorted(v.items()) for k, v in merged.items()}


def plot_learning_curves(series: Dict[str, List[tuple]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, pts in sorted(series.items()):
        if not pts:
            continue
        name = key[:-6] if key.endswith("_epoch") else key
        epochs, values = zip(*pts)
        if "loss" in key:
            ax_loss.plot(epochs, values, marker=".", label=name)
        elif "acc" in key:
            ax_acc.plot(epochs, values, marker=".", label=name)
    for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_acc.set_ylim(0, 1)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    out: Path, *, title: str, classes: Sequence[str], y_true: Sequence[int], y_pred: Sequence[int],
    extra: Dict[str, Any], csv_path=None,
) -> Dict[str, Any]:
    """Write ``metrics.json``, ``confusion_matrix.png`` and ``learning_curves.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    metrics = {"classes": list(classes), **extra, "test": classification_metrics(cm, classes)}
    series = read_csv_metrics(csv_path) if csv_path is not None else {}
    metrics["history"] = {k: [[e, v] for e, v in pts] for k, pts in series.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    acc = metrics["test"]["accuracy"]
    plot_confusion(cm, classes, out / "confusion_matrix.png", f"{title}: accuracy {acc:.3f} (n={len(y_true)})")
    plot_learning_curves(series, out / "learning_curves.png", title)
    return metrics


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
