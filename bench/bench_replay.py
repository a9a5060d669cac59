"""Replay throughput: the built-in sample (all paths) and an event-only 1 Mev/s recording.

Targets: the sample replays faster than real time on 2 cores; the event-only path runs >= 5x real time on a
1 Mev/s recording (1 kHz messages of 1,000 events, every 15,000-event window through Spiking-FER).
Real-time factor = recording duration / replay time. Both wall-clock and process CPU time are reported: on a
shared machine the wall clock also measures the other processes, CPU time does not.
Writes bench/results/replay.json. Usage: .venv/bin/python bench/bench_replay.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import describe_machine

ROOT = Path(__file__).resolve().parent
TARGET_SAMPLE = 1.0
TARGET_EVENTS = 5.0


def machine() -> dict:
    return describe_machine()


def make_event_bag(path: Path, seconds: float, rate_hz: float = 1e6, msg_events: int = 1000,
                   width: int = 346, height: int = 260) -> int:
    """A recording of ``rate_hz`` events/s: a moving, textured face-sized blob plus uniform background."""
    from fer_perception.bag.writer import BagWriter
    from fer_perception.events.batch import EventBatch
    from fer_perception.events.cdr import encode_event_array

    rng = np.random.default_rng(0)
    n_msgs = int(seconds * rate_hz / msg_events)
    dt = int(1e9 * msg_events / rate_hz)
    t0 = 1_700_000_000_000_000_000
    with BagWriter(path, overwrite=True) as bag:
        for k in range(n_msgs):
            n_face = int(msg_events * 0.8)
            cx = width / 2 + 40 * np.sin(k * dt / 1e9 * 2.0)
            x = np.concatenate([rng.normal(cx, 30, n_face), rng.uniform(0, width, msg_events - n_face)])
            y = np.concatenate([rng.normal(height / 2, 35, n_face), rng.uniform(0, height, msg_events - n_face)])
            x = np.clip(x, 0, width - 1).astype(np.uint16)
            y = np.clip(y, 0, height - 1).astype(np.uint16)
            t = t0 + k * dt + np.sort(rng.integers(0, dt, msg_events)) // 1000 * 1000
            b = EventBatch(x, y, t.astype(np.int64), rng.integers(0, 2, msg_events).astype(np.uint8), width, height,
                           int(t[-1]), "dvs")
            bag.write_raw("/dvs/events", "dv_ros2_msgs/msg/EventArray", int(t[-1]), encode_event_array(b))
    return n_msgs * msg_events


def timed_replay(bag: Path, out: Path, settings: dict, **kw) -> dict:
    from fer_perception.commands.replay import load_config, replay_bag

    cfg = load_config(None, settings)
    c0, w0 = time.process_time(), time.perf_counter()
    s = replay_bag(bag, out, cfg, overwrite=True, progress=False, **kw)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"duration_s": s["duration_s"], "wall_s": wall, "cpu_s": cpu, "rt_factor_wall": s["duration_s"] / wall,
            "rt_factor_cpu": s["duration_s"] / cpu, "windows": s["pipeline"]["windows"],
            "frames": s["pipeline"]["frames"], "events": s["pipeline"]["events"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter recordings")
    ap.add_argument("--threads", type=int, default=2, help="torch threads [2]")
    ap.add_argument("--snn", default="demo", help="SNN checkpoint [demo]")
    ap.add_argument("--only", choices=("sample", "events"), help="run one case only")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from fer_perception.commands.demo import DEMO_SETTINGS
    from fer_perception.sample import SampleConfig, make_sample

    tmp = Path(tempfile.mkdtemp(prefix="bench_replay_"))
    rows = []
    try:
        # 1. the sample, every path, demo settings (event model after every message, like the node)
        if args.only != "events":
            scfg = SampleConfig(identities=1) if args.quick else SampleConfig()
            sample = make_sample(tmp / "sample", scfg)
            settings = {**DEMO_SETTINGS, "snn_checkpoint": args.snn, "threads": args.threads}
            r = timed_replay(sample.bag, tmp / "out_sample", settings)
            rows.append({"case": "sample, all paths (demo settings: RGB faces route events)", **r,
                         "target_rt": TARGET_SAMPLE})
        # 2. event-only 1 Mev/s, fixed face region (no detector), every window
        seconds = 2.0 if args.quick else 5.0
        n_ev = make_event_bag(tmp / "events_1mev", seconds) if args.only != "sample" else 0
        ev_settings = {"snn_checkpoint": args.snn, "expression_model": "none", "age_gender_checkpoint": "",
                       "event_faces_from": "none", "event_fallback_roi": [93, 50, 160, 160], "annotate": False,
                       "threads": args.threads}
        for poll_ms in ((0.0, 100.0) if args.only != "sample" else ()):
            r = timed_replay(tmp / "events_1mev", tmp / f"out_ev_{int(poll_ms)}", ev_settings, event_frame_hz=0.0,
                             poll_every_ms=poll_ms)
            how = "every message" if not poll_ms else f"{poll_ms:.0f} ms (batched)"
            rows.append({"case": f"event-only 1 Mev/s, poll {how}", **r, "target_rt": TARGET_EVENTS,
                         "events_per_s": n_ev / seconds})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in rows:
        r["pass_wall"] = r["rt_factor_wall"] >= r["target_rt"]
        r["pass_cpu"] = r["rt_factor_cpu"] >= r["target_rt"]
    print(f"{'case':<62} {'bag s':>6} {'wall s':>7} {'cpu s':>7} {'RT wall':>8} {'RT cpu':>7} {'target':>6} "
          f"{'windows':>7} {'frames':>6}")
    for r in rows:
        print(f"{r['case']:<62} {r['duration_s']:6.1f} {r['wall_s']:7.1f} {r['cpu_s']:7.1f} "
              f"{r['rt_factor_wall']:7.2f}x {r['rt_factor_cpu']:6.2f}x {r['target_rt']:5.1f}x {r['windows']:7d} "
              f"{r['frames']:6d}")
    out = {"area": "replay", "machine": machine(), "snn_checkpoint": args.snn, "threads": args.threads,
           "quick": args.quick, "results": rows,
           "targets": {"sample_rt_factor": TARGET_SAMPLE, "event_only_1mevps_rt_factor": TARGET_EVENTS},
           "notes": "RT = recording seconds / replay seconds; cpu uses process CPU time (load-independent)."}
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "replay.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {ROOT / 'results' / 'replay.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
