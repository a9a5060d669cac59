"""`fer-perception demo`: the main job - make the sample, replay it with the demo weights, evaluate, summarise."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

NAME = "demo"
HELP = "make the built-in sample, replay it with the demo weights, evaluate it and print a summary"
DESCRIPTION = """\
Runs the whole offline chain on the built-in sample recording, no ROS and no GPU needed:

  1. sample   synthetic faces -> DVS events + APS + RGB frames + labels   OUT/sample (reused when present)
  2. replay   the node's pipeline over every message, demo weights        OUT/replay (a rosbag2 + results)
  3. evaluate accuracy per path (events vs frames), latency, real-time factor  OUT/report/report.md

The demo weights are trained on synthetic faces only (their names say so): the numbers show that the pipeline
works end to end; they say nothing about real faces. Use `fer-perception replay` with your own bags and
checkpoints for that.
"""
EPILOG = """\
examples:
  fer-perception demo                      # writes out/demo
  fer-perception demo --out /tmp/fer_demo --storage mcap
  fer-perception demo --set smoothing=none # try a pipeline setting
"""

#: Pipeline settings of the demo. Faces are detected once, on the colour camera: those tracks feed the frame
#: models and, mapped to the event sensor (scale mapping), route the events - so the APS frames are not needed
#: (``event_faces_from="aps"`` uses them instead, at the cost of a second detection per timestamp). The event
#: crop is the pipeline's default (event_roi_scale 1.47, event_roi_offset_y 0.14): the FerDVS-style crop,
#: centred on the nose, from Haar boxes.
DEMO_SETTINGS = {
    "event_faces_from": "rgb",
    "frame_source": "rgb",
    "snn_checkpoint": "demo",
    "expression_model": "light",
    "expression_checkpoint": "demo",
    "age_gender_checkpoint": "demo",
    "tracker_min_hits": 1,
    # one torch thread: the demo SNN is small (64x64 input), and on a busy 2-core machine torch's second
    # thread mostly spins (measured: 120 ms instead of ~10 ms CPU per window under load)
    "threads": 1,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", default="out/demo", help="output folder [out/demo]")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="bag storage [sqlite3]")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pipeline setting (repeatable)")
    p.add_argument("--force-sample", action="store_true", help="re-make the sample even if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from fer_perception.commands.evaluate import print_table
    from fer_perception.commands.replay import load_config, parse_overrides, replay_bag
    from fer_perception.commands.sample import make_with_progress
    from fer_perception.evaluate import evaluate_run
    from fer_perception.report import write_report
    from fer_perception.sample import SampleConfig, make_sample

    console = Console()
    out = Path(args.out)
    t0 = time.perf_counter()
    scfg = SampleConfig(storage=args.storage)
    console.print(f"[bold]1/3 sample[/bold] -> {out / 'sample'}")
    sample = make_sample(out / "sample", scfg, force=args.force_sample) if args.no_progress else \
        make_with_progress(out / "sample", scfg, force=args.force_sample)
    console.print(f"    {'reused' if sample.reused else 'made'}: {sample.duration_s:.1f} s, "
                  f"{sample.counts.get('events', 0):,} events, {sample.counts.get('/dvs/image_raw', 0)} APS + "
                  f"{sample.counts.get('/camera/image_raw', 0)} RGB frames")
    cfg = load_config(None, {**DEMO_SETTINGS, **parse_overrides(args.set)})
    console.print(f"[bold]2/3 replay[/bold] -> {out / 'replay'}")
    summary = replay_bag(sample.bag, out / "replay", cfg, storage=args.storage, overwrite=True,
                         progress=not args.no_progress)
    console.print(f"[bold]3/3 evaluate[/bold] -> {out / 'report'}")
    ev = evaluate_run(out / "replay", sample.labels_csv, name="sample")
    md = write_report([ev], out / "report", title="fer-perception demo on the built-in (synthetic) sample")
    print_table([ev], console)
    t = Table(show_header=False, title="demo summary")
    t.add_row("recording", f"{summary['duration_s']:.1f} s replayed in {summary['wall_s']:.1f} s "
                           f"({summary['real_time_factor']:.2f}x real time)")
    p = summary["pipeline"]
    t.add_row("processed", f"{p['windows']} event windows, {p['frames']} frames "
                           f"({p['frames_with_faces']} with faces), {summary['malformed_total']} malformed skipped")
    t.add_row("results bag", str(out / "replay"))
    t.add_row("report", str(md))
    t.add_row("total time", f"{time.perf_counter() - t0:.1f} s")
    console.print(t)
    console.print("[dim]Demo weights are trained on synthetic faces: not a measure of accuracy on real faces.[/dim]")
    return 0
