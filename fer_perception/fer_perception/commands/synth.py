"""`fer-perception synth`: synthetic FerDVS event datasets, and the synthetic demo Spiking-FER weights.

``synth events`` renders seeded cartoon faces going from neutral to one of the six FerDVS expressions, turns
them into events with the project's DVS emulator (the paper's v2e settings by default) and writes them in the
FerDVS layout, ready for ``fer-perception train snn``. ``synth train-demo`` does the whole chain that made
``weights/spiking_fer_synthetic_demo.pt``: dataset, training, an evaluation on clips from a seed training never
used, the weights and their JSON card.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path

NAME = "synth"
HELP = "make synthetic event datasets (FerDVS layout) and train the synthetic demo SNN weights"
DESCRIPTION = __doc__.split("\n\n", 1)[1]
EPILOG = """\
examples:
  # 20 subjects x 6 expressions x 2 clips, paper emulator settings, then train on it
  fer-perception synth events --out synth --subjects 20 --clips-per-class 2
  fer-perception train snn --root synth --dataset SyntheticDVS --split subject --width 0.25 --epochs 20 --out runs/s
  # with sensor noise (leak, shot noise, low-pass) like a live camera
  fer-perception synth events --out synth_noisy --preset noisy
  # re-create the demo weights (1,440 clips to render, then about 15 minutes of training on 2 CPU cores)
  fer-perception synth train-demo --work out/demo_train
"""

log = logging.getLogger(__name__)

DEMO_NAME = "spiking_fer_synthetic_demo"


def default_demo_weights() -> Path:
    return Path(__file__).resolve().parent.parent / "weights" / f"{DEMO_NAME}.pt"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="synth_command", metavar="WHAT")
    sub.required = True
    e = sub.add_parser("events", help="write a synthetic FerDVS event dataset",
                       description="Render face clips, emulate a DVS, write <out>/FerDVS/<dataset>/ (h5 + folds.csv).",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    e.add_argument("--out", required=True, help="root folder; the dataset goes to OUT/FerDVS/DATASET")
    e.add_argument("--dataset", default="SyntheticDVS", help="dataset folder name [SyntheticDVS]")
    e.add_argument("--subjects", type=int, default=20, help="identities [20]")
    e.add_argument("--clips-per-class", type=int, default=1, help="clips of each expression per subject [1]")
    e.add_argument("--seed", type=int, default=0, help="seed of everything [0]")
    e.add_argument("--preset", choices=["paper", "noisy"], default="paper",
                   help="emulator settings: paper (v2e settings of Spiking-FER, noise-free) or noisy [paper]")
    e.add_argument("--frames", type=int, default=48, help="video frames per clip at 30 fps [48]")
    e.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder's files")
    e.set_defaults(_synth=run_events)

    d = sub.add_parser("train-demo", help="train the synthetic demo Spiking-FER weights end to end",
                       description=("Write a synthetic dataset, train a narrow Spiking-FER on it (Lightning), "
                                    "evaluate on clips from an unseen seed, write the weights and their JSON card."),
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    d.add_argument("--work", default="out/demo_train", help="working folder (dataset, logs) [out/demo_train]")
    d.add_argument("--weights", default=None,
                   help=f"where to write the .pt (and .json card) [package weights/{DEMO_NAME}.pt]")
    d.add_argument("--subjects", type=int, default=120, help="training identities [120]")
    d.add_argument("--clips-per-class", type=int, default=2, help="clips per expression per subject [2]")
    d.add_argument("--seed", type=int, default=0, help="dataset and training seed [0]")
    d.add_argument("--heldout-seed", type=int, default=9001, help="seed of the held-out evaluation clips [9001]")
    d.add_argument("--heldout-clips", type=int, default=120, help="held-out clips [120]")
    d.add_argument("--width", type=float, default=0.25, help="channel width multiplier [0.25]")
    d.add_argument("--epochs", type=int, default=25, help="epochs [25]")
    d.add_argument("--batch-size", type=int, default=16, help="batch size [16]")
    d.add_argument("--size", type=int, default=64,
                   help="input side: the official representation resized to SIZE (128 in the paper) [64]")
    d.add_argument("--optimizer", choices=["sgd", "adam"], default="adam",
                   help="adam (default: converges within a CPU-sized schedule) or sgd (the paper's) [adam]")
    d.add_argument("--lr", type=float, default=3e-3, help="learning rate [3e-3]")
    d.add_argument("--edas", default="window,flip,background_activity",
                   help="augmentations [window,flip,background_activity]")
    d.add_argument("--threads", type=int, default=2, help="torch CPU threads [2]")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(_synth=run_train_demo)


def run(args: argparse.Namespace) -> int:
    return int(args._synth(args) or 0)


def _progress(label: str):
    state = {"t": time.time()}

    def cb(done: int, total: int) -> None:
        if done == total or time.time() - state["t"] > 5:
            state["t"] = time.time()
            print(f"\r{label}: {done}/{total} clips", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return cb


def run_events(args: argparse.Namespace) -> int:
    from fer_perception.synth.emulator import EmulatorConfig
    from fer_perception.synth.faces import SyntheticFaceConfig
    from fer_perception.synth.ferdvs_writer import write_synthetic_ferdvs

    res = write_synthetic_ferdvs(
        args.out, args.dataset, n_subjects=args.subjects, clips_per_class=args.clips_per_class, seed=args.seed,
        face_config=SyntheticFaceConfig.ferdvs(n_frames=args.frames),
        emulator_config=EmulatorConfig.preset(args.preset),
        overwrite=args.overwrite, progress=_progress("rendering and emulating"),
    )
    n_ev = [r[3] for r in res.rows]
    print(f"wrote {res.n_sequences} sequences of {len(res.subjects)} subjects to {res.directory} "
          f"(events per clip: median {sorted(n_ev)[len(n_ev) // 2]}, min {min(n_ev)})")
    return 0


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def evaluate_on_heldout(model, n_clips: int, seed: int, config=None):
    """(accuracy, per-class recall dict, confusion matrix) on ``n_clips`` fresh clips from ``seed``."""
    from fer_perception.data.synthetic_events import clips_to_inputs, generate_clips, predict_frames
    from fer_perception.labels import FERDVS_CLASSES
    from fer_perception.train.common import classification_metrics, confusion_matrix

    clips = generate_clips(n_clips, seed)
    x, y = clips_to_inputs(clips, config)
    pred = predict_frames(model, x).argmax(axis=1)
    return classification_metrics(confusion_matrix(y, pred, len(FERDVS_CLASSES)), FERDVS_CLASSES)


def run_train_demo(args: argparse.Namespace) -> int:
    from fer_perception.data.augment import parse_edas
    from fer_perception.models.checkpoint import load_checkpoint, save_checkpoint
    from fer_perception.synth.emulator import EmulatorConfig
    from fer_perception.synth.faces import SyntheticFaceConfig
    from fer_perception.synth.ferdvs_writer import write_synthetic_ferdvs
    from fer_perception.train.common import TrainerOptions, git_commit, utc_now
    from fer_perception.train.snn import SnnTrainConfig, train

    work = Path(args.work)
    weights = Path(args.weights) if args.weights else default_demo_weights()
    dataset = f"SyntheticDVS_s{args.seed}_n{args.subjects}x{args.clips_per_class}"
    t0 = time.time()
    ddir = work / "FerDVS" / dataset
    reused = (ddir / "folds.csv").is_file()
    if not reused:
        if ddir.exists():
            shutil.rmtree(ddir)
        write_synthetic_ferdvs(work, dataset, n_subjects=args.subjects, clips_per_class=args.clips_per_class,
                               seed=args.seed, face_config=SyntheticFaceConfig.ferdvs(),
                               emulator_config=EmulatorConfig.paper(), progress=_progress("training data"))
    t_data = time.time() - t0
    opts = TrainerOptions(out=str(work / "run"), epochs=args.epochs, batch_size=args.batch_size, workers=0,
                          seed=args.seed, accelerator="cpu", devices="1", progress=not args.no_progress,
                          threads=args.threads)
    command = "fer-perception synth train-demo " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["synth", "train-demo"] \
        else f"fer-perception synth train-demo --seed {args.seed} --subjects {args.subjects} --epochs {args.epochs}"
    cfg = SnnTrainConfig(
        root=str(work), trainer=opts, kind="snn", dataset=dataset, fold=0, split="subject", n_folds=10,
        split_seed=args.seed, edas=parse_edas(args.edas), width=args.width, learning_rate=args.lr,
        optimizer=args.optimizer, size=args.size,
        synthetic=True, timecode_rows=0,
        extra_provenance={"generator": "fer_perception.synth (cartoon faces + DVS emulator, paper settings)",
                          "heldout_seed": args.heldout_seed, "command": command},
    )
    t1 = time.time()
    metrics = train(cfg)
    t_train = time.time() - t1

    model, meta = load_checkpoint(Path(opts.out) / "last.pt", kind="snn")
    t2 = time.time()
    from fer_perception.data.ferdvs import FerDVSConfig

    held = evaluate_on_heldout(model, args.heldout_clips, args.heldout_seed, FerDVSConfig(size=meta.input_size))
    t_eval = time.time() - t2
    meta_d = meta.to_dict()
    meta_d["provenance"]["heldout_accuracy"] = held["accuracy"]
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(weights, model, meta_d)
    import torch

    card = {
        "name": DEMO_NAME,
        "synthetic": True,
        "warning": "SYNTHETIC DEMO WEIGHTS - not for real faces. Trained only on rendered cartoon faces turned into "
                   "events by the project's emulator; they show the pipeline working end to end. Real use needs "
                   "weights trained on real event data (e.g. `fer-perception train snn` on FerDVS).",
        "file": weights.name,
        "sha256": sha256(weights),
        "size_bytes": weights.stat().st_size,
        "model": {"kind": "snn", "architecture": "SEW-ResNet-18 (ADD), IF neurons, Spiking-FER readout",
                  "width": args.width, "timesteps": meta.timesteps,
                  "input": [meta.timesteps, 2, meta.input_size, meta.input_size],
                  "parameters": int(sum(p.numel() for p in model.parameters()))},
        "classes": list(meta.classes),
        "representation": meta.representation,
        "training": {
            "command": command, "dataset": dataset, "subjects": args.subjects, "clips_per_class": args.clips_per_class,
            "sequences": int(metrics["split"]["n_train"] + metrics["split"]["n_test"]),
            "split": metrics.get("split", {}).get("kind"), "seed": args.seed, "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": (f"Adam lr {args.lr} wd 5e-4, cosine over the epochs (short CPU schedule; the paper "
                          f"uses SGD lr 5e-3 momentum 0.9 wd 5e-4 over 500 epochs)") if args.optimizer == "adam"
            else f"SGD lr {args.lr} momentum 0.9 wd 5e-4, cosine",
            "edas": list(parse_edas(args.edas)), "emulator": "EmulatorConfig.paper()",
            "validation_accuracy": metrics["test"]["accuracy"], "torch": torch.__version__,
            "dataset_reused": reused,
            "seconds": {"data": round(t_data, 1), "train": round(t_train, 1), "heldout_eval": round(t_eval, 1)},
            "threads": args.threads,
        },
        "heldout": {"seed": args.heldout_seed, "clips": args.heldout_clips, "accuracy": held["accuracy"],
                    "balanced_accuracy": held["balanced_accuracy"],
                    "per_class_recall": {c: v["recall"] for c, v in held["per_class"].items()},
                    "confusion_matrix": held["confusion_matrix"],
                    "note": "fresh identities, motion, lighting and sensor mismatch from a seed training never used"},
        "commit": git_commit(), "date": utc_now(),
    }
    weights.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"demo weights: {weights} ({card['size_bytes'] / 1e6:.1f} MB); validation accuracy "
          f"{metrics['test']['accuracy']:.3f}, held-out accuracy {held['accuracy']:.3f} on {args.heldout_clips} clips; "
          f"data {t_data:.0f} s, training {t_train:.0f} s")
    return 0
