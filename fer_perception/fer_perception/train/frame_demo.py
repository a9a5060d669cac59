"""The synthetic demo weights of the frame path, made with the project's own training code.

``python -m fer_perception.train.frame_demo light|agegender [--epochs N] [--subjects N]`` trains on
synthetic faces (:mod:`fer_perception.data.synthetic_faces`) and installs
``weights/light_fer_synthetic_demo.pt`` or ``weights/age_gender_synthetic_demo.pt`` with a JSON card beside
it (data, recipe, metrics on fresh synthetic subjects, sha256, commit). These weights only know the cartoon
faces of the generator: real use needs weights trained on real data (``fer-perception train light --csv``,
``train agegender --utkface``, or official DAN checkpoints).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Optional, Sequence

from fer_perception.errors import ConfigError

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
NAMES = {"light": "light_fer_synthetic_demo", "agegender": "age_gender_synthetic_demo"}
DEFAULTS = {"light": {"subjects": 300, "epochs": 6}, "agegender": {"subjects": 800, "epochs": 20}}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_card(kind: str, checkpoint: str, command: Sequence[str], card_path: Optional[str] = None) -> dict:
    """Write the JSON card of a demo checkpoint (read back from the checkpoint itself)."""
    from fer_perception.models.frame_checkpoint import read_frame_checkpoint

    blob = read_frame_checkpoint(checkpoint, kind)
    meta = blob.get("meta", {})
    card = {
        "name": NAMES.get(kind, os.path.splitext(os.path.basename(checkpoint))[0]),
        "file": os.path.basename(checkpoint),
        "kind": kind,
        "synthetic": True,
        "warning": "trained only on the cartoon faces of fer_perception.synth.faces; not for real faces",
        "classes": list(blob.get("classes", [])),
        "config": blob.get("config", {}),
        "preprocess": blob.get("preprocess", {}),
        "training_data": meta.get("source"),
        "training_command": " ".join(command),
        "metrics_on_fresh_synthetic_subjects": {
            k: v for k, v in meta.items() if k.startswith(("test_", "age_", "gender_"))
        },
        "best_validation": {k: v for k, v in meta.items() if k.startswith("best_val")},
        "epochs": meta.get("epochs"),
        "created": meta.get("created"),
        "git_commit": meta.get("git_commit"),
        "bytes": os.path.getsize(checkpoint),
        "sha256": sha256(checkpoint),
    }
    path = card_path or os.path.splitext(checkpoint)[0] + ".json"
    with open(path, "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    return card


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_perception.train.frame_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=sorted(NAMES))
    p.add_argument("--subjects", type=int, help="synthetic training subjects")
    p.add_argument("--epochs", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights-dir", default=WEIGHTS_DIR)
    p.add_argument("--from-checkpoint", help="install an already trained checkpoint (and write its card)")
    p.add_argument("--command", help="training command to record with --from-checkpoint")
    a = p.parse_args(argv)
    target = os.path.join(a.weights_dir, NAMES[a.kind] + ".pt")
    os.makedirs(a.weights_dir, exist_ok=True)
    if a.from_checkpoint:
        shutil.copyfile(a.from_checkpoint, target)
        command = (a.command or "").split()
    else:
        d = DEFAULTS[a.kind]
        train_argv = ["--synthetic", str(a.subjects or d["subjects"]), "--epochs", str(a.epochs or d["epochs"]),
                      "--no-progress", "--threads", str(a.threads), "--export", target]
        with tempfile.TemporaryDirectory() as out:
            if a.kind == "light":
                from fer_perception.train import light as mod
            else:
                from fer_perception.train import agegender as mod
            rc = mod.main(train_argv + ["--out", out])
            if rc:
                raise ConfigError(f"training {a.kind} failed with exit code {rc}")
        command = ["fer-perception", "train", a.kind, *train_argv[:-2], "--export", os.path.basename(target)]
    card = write_card(a.kind, target, command)
    if card["bytes"] > 2_000_000:
        print(f"warning: {target} is {card['bytes']} bytes (> 2 MB)", file=sys.stderr)
    print(json.dumps(card["metrics_on_fresh_synthetic_subjects"], indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
