"""Benchmark: the event training data path (augmentations, dataset items) and Spiking-FER training steps.

Targets: each event augmentation on a 40k-event clip (a typical FerDVS/synthetic clip) takes <= 5 ms of CPU;
a full dataset item (h5 read + all six augmentations + representation) <= 20 ms of CPU, i.e. well below the
~100 ms of CPU one training sample of even the narrow demo SNN costs, so data loading never bounds training;
the demo recipe (width 0.25, 64 px, 1,296 training clips, 25 epochs) estimated from the measured step time fits in
15 minutes of one core. Times are process CPU times (single-threaded; the development machine is a shared,
loaded 2-core VM where wall time mostly measures the neighbours); wall medians are reported beside them.
Writes bench/results/train.json.

Usage: .venv/bin/python bench/bench_train.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from _machine import describe_machine
from fer_perception.data import augment as A
from fer_perception.data.ferdvs import FerDVSDataset, FoldEntry, make_events, write_events, write_folds

TARGET_EVENT_AUG_MS = 5.0
TARGET_ITEM_MS = 20.0
TARGET_DEMO_MIN = 15.0
DEMO_SAMPLES = 1296 * 25  # demo recipe: 1,296 training clips x 25 epochs at 64 px


def machine() -> dict:
    return describe_machine()


def timeit(fn, reps: int) -> dict:
    fn()
    walls, cpus = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - t0)
    return {"reps": reps, "cpu_median_ms": 1e3 * float(np.median(cpus)),
            "wall_median_ms": 1e3 * float(np.median(walls))}


def clip(n: int = 40_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 1_500_000, n)), rng.integers(0, 200, n), rng.integers(0, 200, n),
                       rng.integers(0, 2, n))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    reps = 5 if args.quick else 20
    rows = []
    ev = clip()
    rng = np.random.default_rng(1)
    sensor = (200, 200)
    event_augs = {
        "flip": lambda: A.flip_lr(ev, sensor),
        "background_activity": lambda: A.add_background_activity(ev, sensor, rng),
        "reverse": lambda: A.reverse_time(ev),
        "event_drop (random 50%)": lambda: A.drop_random(ev, rng, 0.5),
        "event_drop (time 50%)": lambda: A.drop_by_time(ev, rng, 0.5),
        "event_drop (area 25%)": lambda: A.drop_by_area(ev, sensor, rng, 0.25),
    }
    for name, fn in event_augs.items():
        r = timeit(fn, reps)
        rows.append({"name": f"{name}, 40k events", **r, "target_cpu_ms": TARGET_EVENT_AUG_MS,
                     "pass": r["cpu_median_ms"] <= TARGET_EVENT_AUG_MS})
    frames = (np.random.default_rng(2).random((6, 2, 200, 200)) > 0.9).astype(np.float32)
    for name, fn in {"crop (6x2x200x200 -> 128)": lambda: A.random_resized_crop(frames, rng, 128),
                     "mirror (6x2x128x128)": lambda: A.face_mirror(frames[..., :128, :128], True)}.items():
        rows.append({"name": name, **timeit(fn, reps)})

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        entries = []
        for i in range(4):
            write_events(root / "FerDVS" / "Bench" / f"S{i:03d}" / "001.h5", clip(seed=10 + i))
            entries.append(FoldEntry(f"S{i:03d}", 1, i % 6, (i == 0,)))
        write_folds(root / "FerDVS" / "Bench" / "folds.csv", entries)
        plain = FerDVSDataset(root, "Bench")
        full = FerDVSDataset(root, "Bench", augment=A.Augmenter("all"))
        r = timeit(lambda: plain[1], reps)
        rows.append({"name": "dataset item, no augmentation (h5 read + representation)", **r,
                     "target_cpu_ms": TARGET_ITEM_MS, "pass": r["cpu_median_ms"] <= TARGET_ITEM_MS})
        r = timeit(lambda: full[1], reps)
        rows.append({"name": "dataset item, all six augmentations", **r,
                     "target_cpu_ms": TARGET_ITEM_MS, "pass": r["cpu_median_ms"] <= TARGET_ITEM_MS})

    from fer_perception.train._spiking_fer_module import SpikingFerLightning

    demo_estimate = None
    for width, size in ((0.25, 64), (0.25, 128), (1.0, 128)):
        module = SpikingFerLightning("snn", 6, 6, width=width, input_size=size)
        module.log = lambda *a, **k: None
        (opt,), _ = module.configure_optimizers()
        b = 8
        x = (torch.rand(b, 6, 2, size, size) > 0.95).float()
        y = torch.randint(0, 6, (b,))

        def step():
            opt.zero_grad()
            module.training_step((x, y), 0).backward()
            opt.step()

        r = timeit(step, 2 if args.quick else 4)
        per_sample = r["cpu_median_ms"] / b
        row = {"name": f"SNN training step, width {width}, {size} px, batch {b}, 1 thread", **r,
               "cpu_ms_per_sample": per_sample}
        if (width, size) == (0.25, 64):
            demo_estimate = DEMO_SAMPLES * per_sample / 60e3
            row.update({"demo_recipe_estimate_min": demo_estimate, "target_min": TARGET_DEMO_MIN,
                        "pass": demo_estimate <= TARGET_DEMO_MIN})
        rows.append(row)

    print(f"{'benchmark':<62} {'cpu ms':>9} {'wall ms':>9}  target  pass")
    for r in rows:
        tgt = r.get("target_cpu_ms", r.get("target_min", ""))
        print(f"{r['name']:<62} {r['cpu_median_ms']:>9.2f} {r['wall_median_ms']:>9.2f}  {tgt!s:>6}  "
              f"{r.get('pass', '')}")
    if demo_estimate is not None:
        print(f"demo recipe estimate: {demo_estimate:.1f} min of one core for {DEMO_SAMPLES} training samples")
    result = {
        "benchmark": "train", "machine": machine(),
        "method": "median process CPU time per call (one thread); wall median beside it (shared, loaded machine)",
        "targets": {"event_aug_cpu_ms": TARGET_EVENT_AUG_MS, "dataset_item_cpu_ms": TARGET_ITEM_MS,
                    "demo_recipe_min": TARGET_DEMO_MIN},
        "results": rows, "pass": all(r.get("pass", True) for r in rows),
    }
    out = Path(__file__).resolve().parent / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
