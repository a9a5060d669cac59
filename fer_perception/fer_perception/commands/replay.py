"""`fer-perception replay`: run the live node's pipeline over every message of a rosbag, without ROS.

The output folder ``OUT`` is itself a rosbag2 (``ros2 bag play OUT`` works) holding the results as our
message types, plus ``results.jsonl`` / ``results.csv`` (one line per result, for ``fer-perception evaluate``)
and ``replay_summary.json`` (counts, malformed messages skipped, wall time, real-time factor).

Output bags are written with rosbag2 metadata version 8 by the project's BagWriter. Humble's rosbag2
(``rosbag2_storage/yaml.hpp``) reads ``offered_qos_profiles`` as a YAML *string*, which version 8 writes; version
9 (Jazzy's native format) writes it as a YAML list, which Humble cannot parse. Jazzy reads both. So version 8 +
sqlite3 plays on Humble and Jazzy; mcap needs ``ros-humble-rosbag2-storage-mcap`` on Humble.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence


from fer_perception.errors import BagError, ConfigError, FerPerceptionError
from fer_perception.ros.topics import OUTPUTS, resolve

log = logging.getLogger(__name__)

NAME = "replay"
HELP = "run the pipeline over a rosbag and write the results to a new bag (+ JSONL/CSV)"
DESCRIPTION = """\
Replay a recording through exactly the pipeline the ROS node runs - every event window and every frame is
processed, deterministically - and write the results into OUT:

  OUT/ (a rosbag2, playable with `ros2 bag play OUT`)
    /fer/emotion/events    fer_perception_msgs/msg/Emotion     one per face and event window
    /fer/emotion/frames    fer_perception_msgs/msg/Emotion     one per face and processed image
    /fer/demographics      fer_perception_msgs/msg/Demographics
    /fer/annotated_image   sensor_msgs/msg/Image (rgb8)        boxes, ids, expression, age/gender
    /fer/event_frame       sensor_msgs/msg/Image (rgb8)        recent events with the face windows
  OUT/results.jsonl, OUT/results.csv, OUT/replay_summary.json   for `fer-perception evaluate OUT`

Reads rosbag2 (sqlite3, mcap) and ROS 1 bags. Event topics of type dv_ros2_msgs/dvs_msgs/prophesee_event_msgs
EventArray or event_camera_msgs/EventPacket; images sensor_msgs/Image or CompressedImage; labels
std_msgs/String. Malformed messages are skipped and counted.
"""
EPILOG = """\
examples:
  fer-perception replay recording -o out/run1
  fer-perception replay recording.bag -o out/run1 --events-topic /dvs/events --aps-topic /dvs/image_raw
  fer-perception replay rec -o out/run2 --config my_fer.yaml --set smoothing=none --storage mcap
  fer-perception replay rec -o out/run3 --rgb-topic /camera/color/image_raw --events-topic none
"""

#: The node's outputs under its default namespace: key -> (absolute topic, message type).
OUT_TOPICS = {key: (resolve(name), msgtype) for key, (name, msgtype) in OUTPUTS.items()}
RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY_JSON = "replay_summary.json"
_APS_HINTS = ("dvs", "davis", "aps", "event")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="input bag: rosbag2 folder (sqlite3/mcap) or ROS 1 .bag file")
    p.add_argument("-o", "--out", required=True, help="output folder (a rosbag2 plus results files)")
    p.add_argument("--events-topic", default="auto",
                   help="event topic; 'auto' = the one event topic in the bag, 'none' = frames only [auto]")
    p.add_argument("--aps-topic", action="append", default=None,
                   help="APS image topic of the event sensor (repeatable); default: image topics whose name "
                        "mentions dvs/davis/aps/event")
    p.add_argument("--rgb-topic", action="append", default=None,
                   help="colour camera topic (repeatable); default: the other image topics")
    p.add_argument("--image-topic", action="append", default=None,
                   help="alias of --rgb-topic")
    p.add_argument("--label-topic", default="auto",
                   help="std_msgs/String label topic copied into the results; 'auto' or 'none' [auto]")
    p.add_argument("--config", help="pipeline YAML (the node's config/fer_perception.yaml format)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one pipeline parameter, e.g. --set smoothing=none (repeatable)")
    p.add_argument("--include-input", action="store_true", help="copy the input messages into the output bag")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3",
                   help="output bag storage; sqlite3 plays on Humble and Jazzy [sqlite3]")
    p.add_argument("--event-frame-hz", type=float, default=10.0,
                   help="rate of /fer/event_frame images in bag time, 0 = none [10]")
    p.add_argument("--no-annotated", action="store_true", help="do not write annotated images")
    p.add_argument("--poll-ms", type=float, default=0.0,
                   help="run the event model every N ms of bag time, batched over ready windows (faster on CPU; "
                        "latency then includes the wait); 0 = after every event message like the node [0]")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_overrides(items: Sequence[str]) -> Dict[str, object]:
    import yaml

    out: Dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def load_config(config_path: Optional[str], overrides: Dict[str, object]):
    from fer_perception.pipeline import PipelineConfig

    base = PipelineConfig.from_yaml(config_path).to_dict() if config_path else PipelineConfig().to_dict()
    base.update(overrides)
    return PipelineConfig.from_dict(base, strict=True)


# -------------------------------------------------------------------------------------------------- replay
def _write(writer, key: str, t_ns: int, fields: dict) -> None:
    """Write one output message (fields from :mod:`fer_perception.messages`) on its topic."""
    topic, msgtype = OUT_TOPICS[key]
    writer.write(topic, msgtype, t_ns, writer.message(msgtype, fields))


def choose_topics(reader, events_topic: str = "auto", aps_topics=None, rgb_topics=None, label_topic: str = "auto"):
    """Resolve the topic options against the bag (BagError listing the bag's topics when one is missing)."""
    ev = None
    if events_topic == "auto":
        try:
            ev = reader.find_event_topic()
        except BagError:
            if not reader.find_image_topics():
                raise
            log.warning("no event topic in the bag: frames only")
    elif events_topic and events_topic != "none":
        ev = events_topic
        reader.require_topic(ev)
    images = reader.find_image_topics()
    if aps_topics is None and rgb_topics is None:
        aps = [t for t in images if any(h in t.lower() for h in _APS_HINTS)]
        rgb = [t for t in images if t not in aps]
    else:
        aps, rgb = list(aps_topics or []), list(rgb_topics or [])
    for t in aps + rgb:
        reader.require_topic(t)
    lab = None
    if label_topic == "auto":
        found = reader.find_label_topics()
        lab = next((t for t in found if "label" in t.lower()), None)
    elif label_topic and label_topic != "none":
        lab = label_topic
        reader.require_topic(lab)
    if ev is None and not aps and not rgb:
        raise BagError(f"nothing to replay: no event or image topic chosen; {reader.describe()}")
    return ev, aps, rgb, lab


def replay_bag(
    bag: Path,
    out: Path,
    config=None,
    *,
    pipeline=None,
    events_topic: str = "auto",
    aps_topics: Optional[List[str]] = None,
    rgb_topics: Optional[List[str]] = None,
    label_topic: str = "auto",
    include_input: bool = False,
    storage: str = "sqlite3",
    event_frame_hz: float = 10.0,
    annotated: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    poll_every_ms: float = 0.0,
) -> dict:
    """Replay ``bag`` into ``out``; returns the summary (also written to ``out/replay_summary.json``).

    ``poll_every_ms``: run the event model every so many milliseconds of bag time on all windows ready by then
    (batched, faster on CPU; latencies then include the wait); 0 = after every event message, like the node.
    """
    from fer_perception.bag.reader import EventsMessage, ImageMessage, LabelMessage, BagReader
    from fer_perception.bag.writer import BagWriter
    from fer_perception.messages import (demographics_fields, demographics_record, emotion_fields, emotion_record,
                                         image_fields)
    from fer_perception.pipeline import Pipeline, PipelineConfig

    bag, out = Path(bag), Path(out)
    if out.exists() and not overwrite:
        raise BagError(f"output {out} exists; pass --overwrite to replace it")
    if pipeline is None:
        pipeline = Pipeline(config or PipelineConfig())
    t_start = time.perf_counter()
    records: List[dict] = []
    n_in = 0
    with BagReader(bag) as reader:
        ev_topic, aps, rgb, lab_topic = choose_topics(reader, events_topic, aps_topics, rgb_topics, label_topic)
        source_of = {t: "aps" for t in aps}
        source_of.update({t: "rgb" for t in rgb})
        duration_ns = reader.duration_ns
        start_ns = reader.start_ns
        topics = ([ev_topic] if ev_topic else []) + aps + rgb
        counts_in = reader.counts
        total_msgs = sum(counts_in.get(t, 0) for t in topics + ([lab_topic] if lab_topic else []))
        with BagWriter(out, storage=storage, overwrite=overwrite) as writer, _Progress(
            duration_ns / 1e9, total_msgs, enabled=progress
        ) as bar:
            ef_period = int(1e9 / event_frame_hz) if event_frame_hz > 0 else 0
            next_ef = start_ns
            poll_period = int(poll_every_ms * 1e6)
            next_poll = start_ns + poll_period

            def emit_windows(t_ns: int) -> None:
                for r in pipeline.poll():
                    _write(writer, "emotion_events", t_ns, emotion_fields(r))
                    records.append(emotion_record(r, t_ns))
            for item in reader.decoded(events_topic=ev_topic, image_topics=aps + rgb, label_topic=lab_topic):
                n_in += 1
                t_ns = item.t_ns
                try:
                    if isinstance(item, EventsMessage):
                        pipeline.on_events(item.batch)
                        if t_ns >= next_poll:
                            emit_windows(t_ns)
                            next_poll = t_ns + poll_period
                        if ef_period and t_ns >= next_ef:
                            img = pipeline.event_frame_image()
                            if img is not None:
                                _write(writer, "event_frame", t_ns, image_fields(img, t_ns, item.batch.frame_id))
                            next_ef = t_ns + ef_period
                    elif isinstance(item, ImageMessage):
                        fo = pipeline.on_image(item.image, item.stamp_ns, item.frame_id, source_of[item.topic])
                        for r in fo.emotions:
                            _write(writer, "emotion_frames", t_ns, emotion_fields(r))
                            records.append(emotion_record(r, t_ns))
                        for d in fo.demographics:
                            _write(writer, "demographics", t_ns, demographics_fields(d))
                            records.append(demographics_record(d, t_ns))
                        if annotated and fo.annotated is not None:
                            _write(writer, "annotated", t_ns, image_fields(fo.annotated, item.stamp_ns, item.frame_id))
                    elif isinstance(item, LabelMessage):
                        records.append({"kind": "label", "t_ns": int(t_ns), "text": item.text})
                except FerPerceptionError as exc:
                    pipeline.counters.errors += 1
                    log.warning("message on %s at %d failed: %s", item.topic, t_ns, exc)
                bar.update(t_ns - start_ns, n_in)
            emit_windows(start_ns + duration_ns)
            if include_input:
                _copy_input(reader, writer, topics + ([lab_topic] if lab_topic else []))
            malformed = dict(reader.malformed)
            malformed_reasons = dict(reader.malformed_reasons)
            out_counts = dict(writer.counts)
    pipeline.note_malformed(sum(malformed.values()))
    wall = time.perf_counter() - t_start
    summary = {
        "bag": str(bag), "out": str(out), "storage": storage, "bag_start_ns": int(start_ns),
        "bag_end_ns": int(start_ns + duration_ns), "duration_s": duration_ns / 1e9, "wall_s": wall,
        "real_time_factor": (duration_ns / 1e9) / wall if wall > 0 else 0.0,
        "topics": {"events": ev_topic, "aps": aps, "rgb": rgb, "labels": lab_topic},
        "input_messages": n_in, "malformed": malformed, "malformed_reasons": malformed_reasons,
        "malformed_total": int(sum(malformed.values())), "output_counts": out_counts,
        "pipeline": pipeline.counter_dict(), "config": pipeline.config.to_dict(),
        "results": {
            "emotion_events": sum(1 for r in records if r["kind"] == "emotion" and r["source"] == "events"),
            "emotion_frames": sum(1 for r in records if r["kind"] == "emotion" and r["source"] == "frames"),
            "demographics": sum(1 for r in records if r["kind"] == "demographics"),
            "labels": sum(1 for r in records if r["kind"] == "label"),
        },
    }
    _write_results(out, records, summary)
    return summary


def _copy_input(reader, writer, topics: List[str]) -> None:
    for raw in reader.messages(topics):
        if raw.msgtype not in writer.typestore.types:
            continue
        try:
            writer.write_raw(raw.topic, raw.msgtype, raw.t_ns, reader.cdr_bytes(raw))
        except FerPerceptionError as exc:  # pragma: no cover - type conflicts
            log.warning("cannot copy %s: %s", raw.topic, exc)


def _write_results(out: Path, records: List[dict], summary: dict) -> None:
    with (out / RESULTS_JSONL).open("w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    cols = ["kind", "t_ns", "stamp_ns", "source", "face_id", "model", "label", "confidence", "latency_ms",
            "window_ns", "roi", "age", "age_std", "gender", "gender_confidence", "labels", "probabilities", "text"]
    with (out / RESULTS_CSV).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in records:
            row = []
            for c in cols:
                v = r.get(c, "")
                if isinstance(v, list):
                    v = ";".join(str(x) for x in v)
                row.append(v)
            w.writerow(row)
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))


class _Progress:
    """A rich progress bar over bag time, with message rate and ETA; silent when disabled or not a TTY."""

    def __init__(self, total_s: float, total_msgs: int, enabled: bool = True) -> None:
        self.total_s = max(total_s, 1e-9)
        self.total_msgs = total_msgs
        self.enabled = enabled
        self._p = None
        self._last = 0.0

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = Progress(
                TextColumn("replay"), BarColumn(), TextColumn("{task.completed:.1f}/{task.total:.1f} s bag"),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                transient=False,
            )
            self._p.__enter__()
            self._task = self._p.add_task("replay", total=self.total_s, rate="")
            self._t0 = time.perf_counter()
        return self

    def update(self, done_ns: int, n_msgs: int) -> None:
        if self._p is None:
            return
        now = time.perf_counter()
        if now - self._last < 0.2:
            return
        self._last = now
        wall = now - self._t0
        rate = f"{n_msgs / wall:.0f} msg/s, {done_ns / 1e9 / wall:.2f}x real time" if wall > 0 else ""
        self._p.update(self._task, completed=min(done_ns / 1e9, self.total_s), rate=rate)

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.update(self._task, completed=self.total_s)
            self._p.__exit__(*exc)


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"replay of {summary['bag']}", show_header=False)
    t.add_row("bag duration", f"{summary['duration_s']:.1f} s")
    t.add_row("wall time", f"{summary['wall_s']:.1f} s")
    t.add_row("real-time factor", f"{summary['real_time_factor']:.2f}x")
    p = summary["pipeline"]
    t.add_row("events / windows", f"{p['events']:,} / {p['windows']}")
    t.add_row("frames (with faces)", f"{p['frames']} ({p['frames_with_faces']})")
    res = summary["results"]
    t.add_row("results", f"emotion/events {res['emotion_events']}, emotion/frames {res['emotion_frames']}, "
                         f"demographics {res['demographics']}")
    t.add_row("dropped events", str(p["dropped_events"]))
    mal = summary["malformed_total"]
    t.add_row("malformed skipped", str(mal) + (f" {summary['malformed']}" if mal else ""))
    t.add_row("output", summary["out"])
    Console().print(t)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, parse_overrides(args.set))
    rgb = (args.rgb_topic or []) + (args.image_topic or [])
    summary = replay_bag(
        Path(args.bag), Path(args.out), cfg, events_topic=args.events_topic, aps_topics=args.aps_topic,
        rgb_topics=rgb or (None if args.aps_topic is None else []), label_topic=args.label_topic,
        include_input=args.include_input, storage=args.storage, event_frame_hz=args.event_frame_hz,
        annotated=not args.no_annotated, overwrite=args.overwrite, progress=not args.no_progress,
        poll_every_ms=args.poll_ms,
    )
    print_summary(summary)
    return 0
