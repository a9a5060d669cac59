"""`fer-perception sample`: write the built-in sample recording (synthetic faces as DVS + APS + RGB rosbag)."""

from __future__ import annotations

import argparse

NAME = "sample"
HELP = "make the built-in sample recording (synthetic faces: events, APS and RGB frames, labels)"
DESCRIPTION = """\
Render a sequence of synthetic faces (a few identities, each showing several of the six expressions, every clip
going from neutral to the apex), convert them to events with the project's DVS emulator (paper settings) and
write DIR/sample_bag, a rosbag2 with:

  /dvs/events         dv_ros2_msgs/msg/EventArray   ~1 ms messages (346x260 DAVIS-like, or 640x480)
  /dvs/image_raw      sensor_msgs/msg/Image mono8   APS frames of the event sensor
  /camera/image_raw   sensor_msgs/msg/Image rgb8    colour camera
  /labels             std_msgs/msg/String           true label at every change

plus DIR/labels.csv (start_s,end_s,label relative to the recording start) and DIR/sample.json. Deterministic:
the same options give the same recording; an existing sample with the same options is reused unless --force.
The faces are synthetic: the sample shows the pipeline working, it says nothing about accuracy on real faces.
"""
EPILOG = """\
examples:
  fer-perception sample -o out/sample
  fer-perception sample -o out/vga --sensor vga --identities 2 --storage mcap
  fer-perception replay out/sample/sample_bag -o out/run
  fer-perception evaluate out/run --labels out/sample/labels.csv
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fer_perception.sample import SENSORS, SampleConfig

    d = SampleConfig()
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--sensor", choices=sorted(SENSORS), default=d.sensor, help=f"event sensor [{d.sensor}]")
    p.add_argument("--identities", type=int, default=d.identities, help=f"synthetic subjects [{d.identities}]")
    p.add_argument("--clips-per-identity", type=int, default=d.clips_per_identity,
                   help=f"expression clips per subject [{d.clips_per_identity}]")
    p.add_argument("--clip-s", type=float, default=d.clip_s, help=f"seconds per clip [{d.clip_s}]")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed [{d.seed}]")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default=d.storage, help=f"bag storage [{d.storage}]")
    p.add_argument("--force", action="store_true", help="rewrite even if a matching sample exists")


def config_from_args(args: argparse.Namespace):
    from fer_perception.sample import SampleConfig

    return SampleConfig(sensor=args.sensor, identities=args.identities, clips_per_identity=args.clips_per_identity,
                        clip_s=args.clip_s, seed=args.seed, storage=args.storage)


def make_with_progress(out, cfg, force: bool = False):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from fer_perception.sample import make_sample

    with Progress(TextColumn("sample"), BarColumn(), TextColumn("{task.completed}/{task.total} clips"),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("sample", total=cfg.identities * cfg.clips_per_identity)
        return make_sample(out, cfg, force=force, progress=lambda done, total: bar.update(task, completed=done))


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    s = make_with_progress(args.out, cfg, force=args.force)
    state = "reused" if s.reused else "written"
    print(f"sample {state}: {s.bag} ({s.duration_s:.1f} s; {s.counts.get('events', 0):,} events in "
          f"{s.counts.get('/dvs/events', 0):,} messages, {s.counts.get('/dvs/image_raw', 0)} APS and "
          f"{s.counts.get('/camera/image_raw', 0)} RGB frames); labels: {s.labels_csv}")
    return 0
