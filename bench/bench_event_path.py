"""Benchmark: the live event path, CDR bytes -> decode -> per-face buffer -> Spiking-FER tensor.

Simulates a 1 Mev/s DVS stream delivered as 1 kHz dv_ros2_msgs/EventArray messages (1,000 events each) on a
DAVIS346 sensor (346x260) with one tracked face (150 px box): 85% of the events fall on the face, the rest
anywhere. Every message is decoded (events/cdr.py) and appended to FaceEventBuffers; every complete
15,000-event window is turned into the (6, 2, 128, 128) tensor (no window skipped: the worst case, ~57
windows/s). Message bytes are made before timing; only the path is timed, with process CPU time.

Runs: (1) deferred routing (``defer_events=10000``, what the pipeline uses) with a 100 Hz poll, as the node's
worker polls: the CPU target and the minutes-long memory soak; (2) routing every message and polling after every
message (the simplest use; informational); (3) as (1) plus the background-activity filter (memory only).

Targets: CPU < 5% of one core per second of stream; memory flat over minutes of stream (RSS sampled every
15 simulated seconds; growth after 30 s below 5 MiB). Stage shares come from a separate short run that times
every stage of every message. Writes bench/results/event_path.json.

Usage: .venv/bin/python bench/bench_event_path.py [--seconds 180] [--other-seconds 60] [--denoise-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

from _machine import describe_machine, write_report
from fer_perception.events.batch import EventBatch
from fer_perception.events.buffer import FaceEventBuffers
from fer_perception.events.cdr import decode_event_array, encode_event_array
from fer_perception.events.denoise import BackgroundActivityFilter
from fer_perception.events.representation import SpikingFerConfig, spiking_fer_frames
from fer_perception.results import Roi

WIDTH, HEIGHT = 346, 260
FACE = Roi(100, 50, 150, 150)
RATE = 1_000_000        # events per second
MSG_HZ = 1000           # messages per second
CPU_TARGET_PCT = 5.0
RSS_GROWTH_LIMIT = 5 * 1024 * 1024


def machine() -> dict:
    return describe_machine()


def rss_bytes() -> int:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Stream:
    """Pre-drawn pixel/polarity pool; each simulated second gets fresh timestamps and message bytes."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        n_face = int(RATE * 0.85)
        x = np.concatenate([rng.integers(FACE.x, FACE.x + FACE.width, n_face), rng.integers(0, WIDTH, RATE - n_face)])
        y = np.concatenate([rng.integers(FACE.y, FACE.y + FACE.height, n_face),
                            rng.integers(0, HEIGHT, RATE - n_face)])
        perm = rng.permutation(RATE)
        self.x, self.y = x[perm].astype(np.uint16), y[perm].astype(np.uint16)
        self.p = rng.integers(0, 2, RATE).astype(np.uint8)
        self.per = RATE // MSG_HZ
        self.dt_ns = 1_000_000_000 // RATE

    def second(self, s: int) -> list:
        """The ``MSG_HZ`` serialized messages of simulated second ``s`` (microsecond timestamps, as dv-ros2)."""
        t = s * 1_000_000_000 + 1000 + np.arange(RATE, dtype=np.int64) * self.dt_ns
        msgs = []
        for k in range(MSG_HZ):
            sl = slice(k * self.per, (k + 1) * self.per)
            b = EventBatch(self.x[sl], self.y[sl], t[sl], self.p[sl], WIDTH, HEIGHT, int(t[sl][-1]), "dvs")
            msgs.append(encode_event_array(b))
        return msgs


def make_path(denoise: bool, defer: int = 0):
    cfg = SpikingFerConfig()
    faces = FaceEventBuffers(capacity_events=60_000, capacity_ns=2_000_000_000, width=WIDTH, height=HEIGHT,
                             square_roi=cfg.square_roi, roi_scale=cfg.roi_scale, defer_events=defer)
    faces.update_faces({"face_0": FACE})
    baf = BackgroundActivityFilter(WIDTH, HEIGHT, dt_ns=5_000_000) if denoise else None
    return cfg, faces, baf, np.empty(cfg.shape, np.float32)


def stage_breakdown(seconds: int, denoise: bool, defer: int, poll_every: int, stream: Stream) -> dict:
    """CPU % of one core per stage, timing each stage of each message (adds timer overhead; separate run)."""
    cfg, faces, baf, out = make_path(denoise, defer)
    stage = {"decode": 0.0, "denoise": 0.0, "buffer": 0.0, "tensor": 0.0}
    clock = time.process_time
    for s in range(seconds):
        for k, data in enumerate(stream.second(s)):
            c0 = clock()
            batch = decode_event_array(data)
            c1 = clock()
            if baf is not None:
                batch = baf(batch)
            c2 = clock()
            faces.append(batch)
            c3 = clock()
            if k % poll_every == poll_every - 1:
                faces.flush()
                c3 = clock()
                for _fid, roi, win in faces.ready_windows(cfg.events_per_window):
                    spiking_fer_frames(win, roi, cfg, out=out)
            c4 = clock()
            stage["decode"] += c1 - c0
            stage["denoise"] += c2 - c1
            stage["buffer"] += c3 - c2
            stage["tensor"] += c4 - c3
    return {k: v / seconds * 100.0 for k, v in stage.items()}


def run(seconds: int, denoise: bool, stream: Stream, defer: int = 0, poll_every: int = 1,
        cpu_target: bool = False) -> dict:
    cfg, faces, baf, out = make_path(denoise, defer)
    cpu_total = 0.0
    windows = 0
    events = 0
    samples = []
    clock = time.process_time
    for s in range(seconds):
        msgs = stream.second(s)
        c_start = clock()
        for k, data in enumerate(msgs):
            batch = decode_event_array(data)
            if baf is not None:
                batch = baf(batch)
            faces.append(batch)
            if k % poll_every == poll_every - 1:
                for _fid, roi, win in faces.ready_windows(cfg.events_per_window):
                    spiking_fer_frames(win, roi, cfg, out=out)
                    windows += 1
            events += len(batch)
        cpu_total += clock() - c_start
        del msgs
        if s % 15 == 14 or s == seconds - 1:
            samples.append({"sim_s": s + 1, "rss_mib": rss_bytes() / 2**20,
                            "buffered_events": faces.buffered_events, "buffer_bytes": faces.nbytes})
    pct = cpu_total / seconds * 100.0
    warm = [smp["rss_mib"] for smp in samples if smp["sim_s"] >= min(30, seconds)]
    growth = (max(warm) - warm[0]) * 2**20 if len(warm) > 1 else 0.0
    return {
        "name": "decode+buffer+tensor" + (" + BA filter" if denoise else "")
        + (f", routed per {defer} events, polled at {MSG_HZ // poll_every} Hz" if defer else ", per message"),
        "denoise": denoise,
        "defer_events": defer,
        "poll_hz": MSG_HZ // poll_every,
        "simulated_s": seconds,
        "events_in": seconds * RATE,
        "events_after_filter": events,
        "windows": windows,
        "cpu_s": cpu_total,
        "cpu_pct_of_one_core": pct,
        "stage_cpu_pct": stage_breakdown(min(seconds, 5), denoise, defer, poll_every, stream),
        "us_per_message": cpu_total / (seconds * MSG_HZ) * 1e6,
        "rss_samples": samples,
        "rss_growth_after_warmup_mib": growth / 2**20,
        "dropped": faces.dropped_by_reason,
        "cpu_target_pct": CPU_TARGET_PCT,
        "cpu_pass": (pct < CPU_TARGET_PCT) if cpu_target else None,
        "memory_pass": growth < RSS_GROWTH_LIMIT,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=180, help="simulated seconds of stream (default 180)")
    ap.add_argument("--other-seconds", type=int, default=60,
                    help="simulated seconds of the per-message routing run (default 60)")
    ap.add_argument("--denoise-seconds", type=int, default=30, help="simulated seconds with the BA filter (0: skip)")
    ap.add_argument("--out", default="bench/results/event_path.json")
    args = ap.parse_args(argv)
    stream = Stream()
    runs = [run(args.seconds, False, stream, defer=10_000, poll_every=10, cpu_target=True),
            run(args.other_seconds, False, stream)]
    if args.denoise_seconds > 0:
        runs.append(run(args.denoise_seconds, True, stream, defer=10_000, poll_every=10))

    print(f"stream: {RATE / 1e6:.0f} Mev/s as {MSG_HZ} Hz EventArray messages, {WIDTH}x{HEIGHT}, one face {FACE}")
    nw = max(len(r["name"]) for r in runs)
    print(f"{'path':<{nw}} {'sim s':>6} {'windows':>8} {'us/msg':>8} {'CPU % core':>11} {'target':>7} "
          f"{'RSS growth MiB':>15}  result")
    for r in runs:
        ok = r["cpu_pass"] is not False and r["memory_pass"]
        print(f"{r['name']:<{nw}} {r['simulated_s']:>6} {r['windows']:>8} {r['us_per_message']:8.1f} "
              f"{r['cpu_pct_of_one_core']:11.2f} {'<5' if r['cpu_pass'] is not None else '-':>7} "
              f"{r['rss_growth_after_warmup_mib']:15.2f}  {'PASS' if ok else 'FAIL'}")
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stage_cpu_pct"].items())
        print(f"    stage CPU % of one core (separate timed run): {stages}")
        print("    RSS MiB at simulated s: " + ", ".join(f"{s['sim_s']}:{s['rss_mib']:.1f}" for s in r["rss_samples"]))
    ok = all(r["cpu_pass"] is not False and r["memory_pass"] for r in runs)
    report = {
        "benchmark": "event_path",
        "machine": machine(),
        "stream": {"events_per_s": RATE, "messages_per_s": MSG_HZ, "sensor": [WIDTH, HEIGHT],
                   "face_roi": FACE.as_tuple(), "events_on_face": 0.85},
        "method": "process CPU time of decode -> FaceEventBuffers -> spiking_fer_frames per simulated second; "
                  "message bytes made before timing; RSS from /proc/self/statm",
        "targets": {"cpu_pct_of_one_core": f"< {CPU_TARGET_PCT}", "rss_growth_after_warmup_mib": "< 5"},
        "runs": runs,
        "pass": ok,
    }
    write_report(report, args.out, ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
