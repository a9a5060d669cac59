"""`fer-perception train KIND`: train a model; one KIND per module in :mod:`fer_perception.train`.

A training module defines ``TRAIN_NAME`` (or ``TRAIN_NAMES``, a tuple, when it trains several kinds),
``TRAIN_HELP`` (one line; ``TRAIN_HELPS`` may give one per name), optionally ``TRAIN_DESCRIPTION`` and
``TRAIN_EPILOG``, ``add_arguments(parser)`` and ``run(args) -> int``. ``run`` finds the chosen kind in
``args.train_kind``. Modules whose name starts with ``_`` are helpers and are skipped; training modules import
torch and Lightning inside their functions, so building this parser stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
from typing import Dict, List, Tuple

NAME = "train"
HELP = "train a model: Spiking-FER (snn, cnn) on event datasets, frame models on image datasets"
DESCRIPTION = """\
Train a model with PyTorch Lightning: a progress bar, CSV and TensorBoard logs, best/last checkpoints in the
format the node and replay load, Lightning checkpoints to --resume from, multi-GPU/multi-node with
--devices/--num-nodes/--strategy, and a report at the end (metrics.json, confusion_matrix.png,
learning_curves.png). Run `fer-perception train KIND --help` for the options of one kind.
"""

log = logging.getLogger(__name__)


def discover() -> List[Tuple[str, object]]:
    """``[(kind, module), ...]`` for every training module in :mod:`fer_perception.train`, in name order."""
    import fer_perception.train as pkg

    found: Dict[str, object] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        try:
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        except ImportError as exc:  # a training module whose optional dependency is missing
            log.debug("skipping training module %s: %s", info.name, exc)
            continue
        names = getattr(mod, "TRAIN_NAMES", None) or (
            (getattr(mod, "TRAIN_NAME"),) if hasattr(mod, "TRAIN_NAME") else ())
        if not names or not hasattr(mod, "run") or not hasattr(mod, "add_arguments"):
            continue
        for name in names:
            if name in found:
                raise RuntimeError(f"training kind {name!r} defined twice: {found[name].__name__} and {mod.__name__}")
            found[name] = mod
    preferred = ["snn", "cnn", "dan", "light", "agegender"]
    order = [n for n in preferred if n in found] + sorted(n for n in found if n not in preferred)
    return [(n, found[n]) for n in order]


def _help(mod, name: str) -> str:
    helps = getattr(mod, "TRAIN_HELPS", None) or {}
    return helps.get(name) or getattr(mod, "TRAIN_HELP", name)


def add_arguments(p: argparse.ArgumentParser) -> None:
    kinds = discover()
    sub = p.add_subparsers(dest="train_kind", metavar="KIND")
    sub.required = True
    lines = ["kinds:"] + [f"  {name:<10} {_help(mod, name)}" for name, mod in kinds]
    p.epilog = "\n".join(lines) + "\n\nexamples:\n" + "\n".join(
        f"  fer-perception train {name} --help" for name, _ in kinds[:3]
    ) + "\n  fer-perception train snn --dataset CKPlusDVS --root data --fold 0 --edas all --out runs/ck_f0\n"
    for name, mod in kinds:
        kp = sub.add_parser(
            name, help=_help(mod, name),
            description=getattr(mod, "TRAIN_DESCRIPTION", _help(mod, name)),
            epilog=getattr(mod, "TRAIN_EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(kp)
        kp.set_defaults(_train_run=mod.run)


def run(args: argparse.Namespace) -> int:
    fn = getattr(args, "_train_run", None)
    if fn is None:  # pragma: no cover - argparse requires a kind
        raise SystemExit("fer-perception train: choose a KIND (see --help)")
    return int(fn(args) or 0)
