"""The built-in sample recording: synthetic faces as a DVS + APS + RGB rosbag with ground-truth labels.

:func:`make_sample` renders a sequence of clips (a few synthetic identities, each showing several of the six
expressions, every clip going from neutral to the apex) with :mod:`fer_perception.synth.faces`, turns the
sensor-resolution frames into events with the project's v2e-style emulator (:mod:`fer_perception.synth.emulator`,
paper settings, one emulator for the whole recording so the event stream is continuous) and writes a rosbag2:

=====================  =================================  ============================================
topic                  type                               content
=====================  =================================  ============================================
``/dvs/events``        dv_ros2_msgs/msg/EventArray        ~1 ms messages (dv-ros2 style: microsecond
                                                          timestamps, header stamp = last event)
``/dvs/image_raw``     sensor_msgs/msg/Image (mono8)      APS frames of the event sensor
``/camera/image_raw``  sensor_msgs/msg/Image (rgb8)       a colour camera (scaled view of the scene)
``/labels``            std_msgs/msg/String                the true label, published at every change
=====================  =================================  ============================================

plus ``labels.csv`` (``start_s,end_s,label`` relative to the start of the recording) and ``sample.json``
(the configuration; a later call with the same configuration reuses the recording). A clip is labelled
``neutral`` until its expression strength reaches ``label_threshold``, then with its expression.
Everything is seeded: the same configuration gives the same messages.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from fer_perception.errors import ConfigError

log = logging.getLogger(__name__)

SENSORS: Dict[str, Tuple[int, int]] = {"davis346": (346, 260), "vga": (640, 480)}
EVENTS_TOPIC = "/dvs/events"
APS_TOPIC = "/dvs/image_raw"
RGB_TOPIC = "/camera/image_raw"
LABEL_TOPIC = "/labels"
BAG_DIR = "sample_bag"
LABELS_FILE = "labels.csv"
META_FILE = "sample.json"
EXPRESSION_ORDER = ("happy", "fear", "surprise", "anger", "disgust", "sadness")
SAMPLE_VERSION = 2


@dataclass
class SampleConfig:
    """What the sample holds.

    Attributes:
        sensor: ``davis346`` (346x260) or ``vga`` (640x480) event/APS sensor.
        identities: number of synthetic subjects.
        clips_per_identity: clips per subject; expressions rotate so every subject shows different ones.
        clip_s: duration of each clip (neutral to apex).
        fps: render rate (the emulator input); aps_every / rgb_every: publish every n-th frame.
        rgb_size: (width, height) of the colour camera.
        message_ms: event message period.
        label_threshold: expression strength from which a clip is labelled with its expression.
        face_size, translation, rotation_deg, clutter: the scene (see ``SyntheticFaceConfig``): face height
            range as a fraction of the image height, head motion amplitudes, background shapes.
        seed: seeds everything.
        storage: ``sqlite3`` (playable on Humble and Jazzy) or ``mcap``.
        start_s: ROS time of the first message.
    """

    sensor: str = "davis346"
    identities: int = 3
    clips_per_identity: int = 6
    clip_s: float = 1.8
    fps: float = 30.0
    aps_every: int = 2
    rgb_every: int = 2
    rgb_size: Tuple[int, int] = (320, 240)
    message_ms: float = 1.0
    label_threshold: float = 0.3
    face_size: Tuple[float, float] = (0.45, 0.6)
    translation: float = 0.04
    rotation_deg: float = 3.0
    clutter: int = 4
    seed: int = 7
    storage: str = "sqlite3"
    start_s: float = 1_700_000_000.0

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise ConfigError(f"sample sensor must be one of {sorted(SENSORS)}, not {self.sensor!r}")
        for name in ("identities", "clips_per_identity", "aps_every", "rgb_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"sample {name} must be >= 1, not {getattr(self, name)}")
        for name in ("clip_s", "fps", "message_ms"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"sample {name} must be > 0, not {getattr(self, name)}")
        if self.storage not in ("sqlite3", "mcap"):
            raise ConfigError(f"sample storage must be sqlite3 or mcap, not {self.storage!r}")
        self.rgb_size = (int(self.rgb_size[0]), int(self.rgb_size[1]))
        self.face_size = (float(self.face_size[0]), float(self.face_size[1]))

    @property
    def sensor_size(self) -> Tuple[int, int]:
        return SENSORS[self.sensor]

    @property
    def duration_s(self) -> float:
        return self.identities * self.clips_per_identity * self.clip_s

    def schedule(self) -> List[Tuple[int, str]]:
        """(identity index, expression) of every clip in order; expressions rotate across identities."""
        out = []
        for i in range(self.identities):
            for k in range(self.clips_per_identity):
                out.append((i, EXPRESSION_ORDER[(k + 2 * i) % len(EXPRESSION_ORDER)]))
        return out


@dataclass
class Sample:
    """Where a made sample lives and what it holds."""

    root: Path
    bag: Path
    labels_csv: Path
    config: SampleConfig
    counts: Dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    reused: bool = False


def _label_ranges(strength: np.ndarray, times_s: np.ndarray, expression: str, t0: float, t1: float,
                  threshold: float) -> List[Tuple[float, float, str]]:
    above = np.nonzero(strength >= threshold)[0]
    if len(above) == 0:
        return [(t0, t1, "neutral")]
    ts = t0 + float(times_s[above[0]])
    out = []
    if ts > t0:
        out.append((t0, ts, "neutral"))
    out.append((ts, t1, expression))
    return out


def _split_messages(batch, t_start_ns: int, period_ns: int):
    """Slice a time-sorted batch into messages of ``period_ns`` (empty periods give no message)."""
    if len(batch) == 0:
        return []
    bins = (batch.t - t_start_ns) // period_ns
    edges = np.flatnonzero(np.diff(bins)) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [len(batch)]))
    return [batch.select(slice(int(a), int(b))) for a, b in zip(starts, stops)]


def make_sample(
    out_dir: Union[str, Path],
    config: Optional[SampleConfig] = None,
    *,
    force: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Sample:
    """Write the sample recording into ``out_dir`` (reused when ``sample.json`` matches ``config``)."""
    import cv2

    from fer_perception.bag.writer import BagWriter
    from fer_perception.events.batch import EventBatch
    from fer_perception.events.cdr import encode_event_array
    from fer_perception.images import image_to_ros_fields
    from fer_perception.synth.emulator import DvsEmulator, EmulatorConfig
    from fer_perception.synth.faces import SyntheticFaceConfig, make_identity, render_clip

    cfg = config or SampleConfig()
    root = Path(out_dir)
    bag_path = root / BAG_DIR
    labels_path = root / LABELS_FILE
    meta_path = root / META_FILE
    wanted = {"version": SAMPLE_VERSION, "config": asdict(cfg)}
    wanted["config"]["rgb_size"] = list(cfg.rgb_size)
    wanted["config"]["face_size"] = list(cfg.face_size)
    if not force and meta_path.is_file() and bag_path.is_dir() and labels_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            meta = {}
        if meta.get("version") == wanted["version"] and meta.get("config") == wanted["config"]:
            return Sample(root, bag_path, labels_path, cfg, meta.get("counts", {}), meta.get("duration_s", 0.0),
                          reused=True)
    root.mkdir(parents=True, exist_ok=True)
    if bag_path.exists():
        shutil.rmtree(bag_path)
    if meta_path.exists():
        meta_path.unlink()

    sw, sh = cfg.sensor_size
    rw, rh = cfg.rgb_size
    n_frames = max(2, int(round(cfg.clip_s * cfg.fps)))
    face_cfg = SyntheticFaceConfig.scene(width=sw, height=sh, n_frames=n_frames, fps=cfg.fps,
                                         face_size=cfg.face_size, translation=cfg.translation,
                                         rotation_deg=cfg.rotation_deg, clutter=cfg.clutter)
    emulator = DvsEmulator(EmulatorConfig.paper(width=sw, height=sh), seed=cfg.seed)
    t0_ns = int(round(cfg.start_s * 1e9))
    period_ns = int(round(cfg.message_ms * 1e6))
    schedule = cfg.schedule()
    identities = [make_identity(cfg.seed * 1000 + i) for i in range(cfg.identities)]
    label_rows: List[Tuple[float, float, str]] = []
    clip_dt = n_frames / cfg.fps
    counts = {EVENTS_TOPIC: 0, APS_TOPIC: 0, RGB_TOPIC: 0, LABEL_TOPIC: 0, "events": 0}
    with BagWriter(bag_path, storage=cfg.storage) as bag:
        store = bag.typestore
        Image = store.types["sensor_msgs/msg/Image"]
        String = store.types["std_msgs/msg/String"]
        last_label = None
        for ci, (ident_i, expression) in enumerate(schedule):
            clip = render_clip(expression, seed=cfg.seed * 7919 + ci, config=face_cfg, identity=identities[ident_i])
            clip_t0 = ci * clip_dt
            times = clip_t0 + clip.times_s
            events = emulator.emulate(clip.frames, times)
            # dv-ros2 timestamps are microseconds
            ev = EventBatch(events.x, events.y, (events.t // 1000) * 1000 + t0_ns, events.p, sw, sh, 0, "dvs")
            pending: List[Tuple[int, int, str, str, object]] = []  # (t_ns, order, topic, type, payload)
            for msg in _split_messages(ev, t0_ns, period_ns):
                stamp = int(msg.t[-1])
                data = encode_event_array(EventBatch(msg.x, msg.y, msg.t, msg.p, sw, sh, stamp, "dvs"))
                pending.append((stamp, 1, EVENTS_TOPIC, "dv_ros2_msgs/msg/EventArray", data))
                counts["events"] += len(msg)
            for fi in range(n_frames):
                t_ns = t0_ns + int(round(times[fi] * 1e9))
                frame = clip.frames[fi]
                if fi % cfg.aps_every == 0:
                    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
                    pending.append((t_ns, 2, APS_TOPIC, "sensor_msgs/msg/Image", ("dvs", gray)))
                if fi % cfg.rgb_every == 0:
                    rgb = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA)
                    pending.append((t_ns, 3, RGB_TOPIC, "sensor_msgs/msg/Image", ("camera", rgb)))
            ranges = _label_ranges(clip.strength, clip.times_s, clip.label, clip_t0, clip_t0 + clip_dt,
                                   cfg.label_threshold)
            for s, e, lab in ranges:
                if label_rows and label_rows[-1][2] == lab and abs(label_rows[-1][1] - s) < 1e-9:
                    label_rows[-1] = (label_rows[-1][0], e, lab)
                else:
                    label_rows.append((s, e, lab))
                if lab != last_label:
                    pending.append((t0_ns + int(round(s * 1e9)), 0, LABEL_TOPIC, "std_msgs/msg/String", lab))
                    last_label = lab
            pending.sort(key=lambda m: (m[0], m[1]))
            for t_ns, _, topic, msgtype, payload in pending:
                if topic == EVENTS_TOPIC:
                    bag.write_raw(topic, msgtype, t_ns, payload)
                elif topic == LABEL_TOPIC:
                    bag.write(topic, msgtype, t_ns, String(data=payload))
                else:
                    frame_id, img = payload
                    f = image_to_ros_fields(img)
                    msg = Image(header=bag.header(store, t_ns, frame_id), height=f["height"], width=f["width"],
                                encoding=f["encoding"], is_bigendian=0, step=f["step"],
                                data=np.frombuffer(f["data"], dtype=np.uint8))
                    bag.write(topic, msgtype, t_ns, msg)
                counts[topic] += 1
            if progress is not None:
                progress(ci + 1, len(schedule))
    duration = len(schedule) * clip_dt
    with labels_path.open("w") as fh:
        fh.write("start_s,end_s,label\n")
        for s, e, lab in label_rows:
            fh.write(f"{s:.6f},{e:.6f},{lab}\n")
    meta = dict(wanted, counts=counts, duration_s=duration,
                topics={EVENTS_TOPIC: "events", APS_TOPIC: "aps", RGB_TOPIC: "rgb", LABEL_TOPIC: "labels"},
                schedule=[{"identity": i, "expression": e} for i, e in schedule])
    meta_path.write_text(json.dumps(meta, indent=2))
    return Sample(root, bag_path, labels_path, cfg, counts, duration, reused=False)
