"""Benchmark: the node's event callback path (LiveRunner.on_event_message, without ROS) at 5 Mev/s.

Target (issue 5): 5 Mev/s delivered as 1 kHz dv_ros2_msgs/EventArray messages of 5,000 events keeps up
(nothing dropped, every message decoded and queued) using < 20% of one core in the callback thread.

Method: the main thread plays the subscription callback, paced at 1 kHz in real time (sleep to each
deadline; a late message is sent at once, so the offered rate never drops below the target for long); every
message is a distinct pre-encoded CDR buffer. The worker thread runs behind it with a real Pipeline that has no
models (it takes the batches as the node's worker does: on_events, then poll). The CPU fraction is the callback
thread's CPU time (``time.thread_time``) over the wall time of the run; the worker's and the process's
CPU fractions are reported beside it. Also reported: the unpaced callback cost per message (median thread
CPU), i.e. the highest message rate one core could take. Writes bench/results/callback.json.

Usage: .venv/bin/python bench/bench_callback.py [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from _machine import describe_machine
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import encode_event_array
from fer_perception.pipeline import Pipeline, PipelineConfig
from fer_perception.runtime.live import LiveConfig, LiveRunner

EVENTS_PER_MSG = 5000
RATE_HZ = 1000.0
TARGET_CPU_FRACTION = 0.20
W, H = 346, 260
OUT = Path(__file__).resolve().parent / "results" / "callback.json"


def machine() -> dict:
    return describe_machine()


def make_messages(n_msgs: int, seed: int = 0) -> list:
    """``n_msgs`` distinct EventArray CDR buffers of 5,000 events, 1 ms apart, microsecond timestamps."""
    rng = np.random.default_rng(seed)
    out = []
    t0 = 1_700_000_000 * 1_000_000_000
    for k in range(n_msgs):
        t = t0 + k * 1_000_000 + np.sort(rng.integers(0, 1000, EVENTS_PER_MSG)) * 1000
        b = EventBatch.from_arrays(rng.integers(0, W, EVENTS_PER_MSG), rng.integers(0, H, EVENTS_PER_MSG), t,
                                   rng.integers(0, 2, EVENTS_PER_MSG), W, H, int(t[-1]), "dvs")
        out.append(encode_event_array(b))
    return out


class WorkerCpu:
    """Thread CPU time of the runner's worker thread, read from inside it after every step."""

    def __init__(self, runner: LiveRunner) -> None:
        self.cpu = 0.0
        step = runner.step

        def timed(*a, **kw):
            c0 = time.thread_time()
            try:
                return step(*a, **kw)
            finally:
                self.cpu += time.thread_time() - c0

        runner.step = timed


def paced_run(messages: list, seconds: float) -> dict:
    cfg = PipelineConfig(snn_checkpoint="", expression_model="none", age_gender_checkpoint="", annotate=False,
                         event_faces_from="none")
    pipe = Pipeline(cfg, load_missing=False)
    runner = LiveRunner(pipe, lambda out: None, LiveConfig(event_frame_hz=0.0))
    worker = WorkerCpu(runner)
    runner.start()
    n = int(seconds * RATE_HZ)
    period = 1.0 / RATE_HZ
    late = 0
    cb_cpu = 0.0
    p0 = time.process_time()
    t_start = time.perf_counter()
    for k in range(n):
        deadline = t_start + k * period
        now = time.perf_counter()
        if now < deadline:
            time.sleep(deadline - now)
        elif now - deadline > 0.005:
            late += 1
        c0 = time.thread_time()
        runner.on_event_message(messages[k % len(messages)])
        cb_cpu += time.thread_time() - c0
    wall = time.perf_counter() - t_start
    runner.wait_idle(30.0)
    proc = time.process_time() - p0
    d = runner.diagnostics()
    runner.stop()
    received = d["received"]["events"]
    return {
        "messages": n,
        "events": received,
        "wall_s": wall,
        "offered_mev_per_s": received / wall / 1e6,
        "callback_cpu_s": cb_cpu,
        "callback_cpu_fraction": cb_cpu / wall,
        "callback_us_per_msg": cb_cpu / n * 1e6,
        "worker_cpu_fraction": worker.cpu / wall,
        "process_cpu_fraction": proc / wall,
        "late_messages_over_5ms": late,
        "processed_events": d["processed"]["events"],
        "dropped_messages": sum(d["drops"].values()),
        "malformed": d["malformed"],
    }


def unpaced_cost(messages: list, reps: int) -> dict:
    runner = LiveRunner(Pipeline(PipelineConfig(snn_checkpoint="", expression_model="none",
                                                age_gender_checkpoint="", annotate=False,
                                                event_faces_from="none"), load_missing=False),
                        config=LiveConfig(event_frame_hz=0.0, max_queued_messages=16))
    times = []
    for k in range(reps):
        c0 = time.thread_time()
        runner.on_event_message(messages[k % len(messages)])
        times.append(time.thread_time() - c0)
    med = float(np.median(times))
    return {"reps": reps, "thread_cpu_median_us": med * 1e6,
            "max_msgs_per_s_one_core": 1.0 / med if med > 0 else float("inf"),
            "max_mev_per_s_one_core": EVENTS_PER_MSG / med / 1e6 if med > 0 else float("inf")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true", help="1 s run")
    args = ap.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    messages = make_messages(200)
    unpaced = unpaced_cost(messages, 2000)
    run = paced_run(messages, seconds)
    ok = (run["callback_cpu_fraction"] < TARGET_CPU_FRACTION and run["dropped_messages"] == 0
          and run["processed_events"] == run["events"] and run["malformed"] == 0)
    result = {
        "benchmark": "callback",
        "machine": machine(),
        "method": "1 kHz paced EventArray callbacks (5,000 events each) into LiveRunner.on_event_message; "
                  "callback thread CPU (thread_time) / wall; worker = real Pipeline without models",
        "targets": {"offered_mev_per_s": EVENTS_PER_MSG * RATE_HZ / 1e6,
                    "callback_cpu_fraction_max": TARGET_CPU_FRACTION, "dropped_messages": 0},
        "paced": run,
        "unpaced": unpaced,
        "pass": bool(ok),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("offered rate", f"{run['offered_mev_per_s']:.2f} Mev/s ({run['messages']} msgs in {run['wall_s']:.2f} s)"),
        ("callback CPU (one core)", f"{100 * run['callback_cpu_fraction']:.1f} %  (target < "
                                    f"{100 * TARGET_CPU_FRACTION:.0f} %)"),
        ("callback per message", f"{run['callback_us_per_msg']:.1f} us"),
        ("worker CPU", f"{100 * run['worker_cpu_fraction']:.1f} %"),
        ("process CPU", f"{100 * run['process_cpu_fraction']:.1f} %"),
        ("dropped / malformed", f"{run['dropped_messages']} / {run['malformed']}"),
        ("events processed", f"{run['processed_events']} of {run['events']}"),
        ("unpaced callback", f"{unpaced['thread_cpu_median_us']:.1f} us/msg -> "
                             f"{unpaced['max_mev_per_s_one_core']:.0f} Mev/s on one core"),
        ("result", "PASS" if ok else "FAIL"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"bench_callback on {result['machine']['cpu']}, {os.cpu_count()} CPUs, "
          f"load {result['machine']['load_avg_1min']}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print(f"wrote {OUT}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
