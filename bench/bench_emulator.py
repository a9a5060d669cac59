"""Benchmark: the DVS emulator (frames/s) and the synthetic face renderer (frames/s, clip time).

Targets:
- emulator, paper preset, 200x200 (FerDVS geometry): >= 300 frames/s (10x real time at 30 fps), so a synthetic
  dataset of hundreds of clips converts in minutes;
- emulator, paper preset, 640x480: >= 30 frames/s (real time at 30 fps, for `fer-perception convert`);
- renderer: a 64-frame 200x200 clip in < 1 s (the dataset generator's budget); 640x480 scenes reported.
The noisy preset (leak, shot noise, low-pass) is reported without a target.

Each case runs several times; the best repetition's wall time gives the rate (the machine is shared, the
best run is the least disturbed); the CPU time per repetition is reported beside it. torch is not used.
Writes bench/results/emulator.json.

Usage: .venv/bin/python bench/bench_emulator.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from _machine import describe_machine
from fer_perception.synth.emulator import DvsEmulator, EmulatorConfig
from fer_perception.synth.faces import SyntheticFaceConfig, render_clip


def machine() -> dict:
    return describe_machine()


def measure(fn, reps: int):
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), float(np.median(walls)), float(np.median(cpus)), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--out", default="bench/results/emulator.json")
    args = ap.parse_args(argv)
    reps = 2 if args.quick else 5
    cv2.setNumThreads(1)

    small = render_clip("surprise", 1, SyntheticFaceConfig.ferdvs(n_frames=64))
    scene = render_clip("happy", 2, SyntheticFaceConfig.scene(n_frames=64))

    def emulate(clip, cfg):
        return lambda: DvsEmulator(cfg, seed=0).emulate(clip.frames, clip.times_s)

    cases = [
        # name, fn, frames processed per call, target frames/s (None: report only), unit
        ("emulator paper 200x200", emulate(small, EmulatorConfig.paper()), 63, 300.0),
        ("emulator paper 640x480", emulate(scene, EmulatorConfig.paper(width=640, height=480)), 63, 30.0),
        ("emulator noisy 200x200", emulate(small, EmulatorConfig.noisy()), 63, None),
        ("emulator noisy 640x480", emulate(scene, EmulatorConfig.noisy(width=640, height=480)), 63, None),
        ("render 64-frame clip 200x200", lambda: render_clip("fear", 3, SyntheticFaceConfig.ferdvs(n_frames=64)),
         64, 64.0),
        ("render 64-frame scene 640x480", lambda: render_clip("fear", 3, SyntheticFaceConfig.scene(n_frames=64)),
         64, None),
    ]
    results = []
    for name, fn, frames, target in cases:
        best, median, cpu, out = measure(fn, reps)
        r = {
            "name": name,
            "frames": frames,
            "best_s": best,
            "median_s": median,
            "cpu_s": cpu,
            "frames_per_s": frames / best,
            "frames_per_s_median": frames / median,
            "target_frames_per_s": target,
            "pass": (frames / best >= target) if target is not None else None,
        }
        if hasattr(out, "t"):
            r["events"] = int(len(out))
            r["mev_per_s"] = len(out) / best / 1e6
        results.append(r)

    print(f"{'case':<32} {'frames/s':>10} {'median':>10} {'cpu s':>8} {'events':>9} {'target':>8} {'pass':>5}")
    for r in results:
        tgt = f"{r['target_frames_per_s']:.0f}" if r["target_frames_per_s"] else "-"
        ok = "-" if r["pass"] is None else ("yes" if r["pass"] else "NO")
        ev = str(r.get("events", "-"))
        print(f"{r['name']:<32} {r['frames_per_s']:>10.1f} {r['frames_per_s_median']:>10.1f} {r['cpu_s']:>8.3f} "
              f"{ev:>9} {tgt:>8} {ok:>5}")
    clip_s = next(r["best_s"] for r in results if r["name"].startswith("render 64-frame clip"))
    print(f"64-frame 200x200 clip renders in {clip_s * 1e3:.0f} ms (target < 1000 ms)")
    report = {
        "benchmark": "emulator",
        "machine": machine(),
        "repetitions": reps,
        "results": results,
        "pass": all(r["pass"] is not False for r in results),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
