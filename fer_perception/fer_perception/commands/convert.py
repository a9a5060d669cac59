"""`fer-perception convert`: a video or a folder of images to DVS events (FerDVS h5 and/or rosbag2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "convert"
HELP = "turn a video or a folder of images into DVS events (FerDVS .h5 and/or a rosbag2 of EventArray)"
DESCRIPTION = """\
Emulate a DVS (event camera) watching a video, with the project's v2e-style emulator: log intensity with the
lin-log curve for dark pixels, per-pixel ON/OFF thresholds with Gaussian mismatch, several events per frame
interval with linearly interpolated timestamps, refractory period, optional leak and shot noise.

The default preset `paper` uses the settings Spiking-FER used to build FerDVS (30 fps, thresholds 0.2/0.2,
sigma 0.02, refractory 0.5 ms, no noise, no low-pass); `noisy` adds leak (0.1 Hz), shot noise (0.2 Hz) and a
200 Hz low-pass. With --face-crop each frame is cropped to a square centred on the face's nose (OpenCV Haar)
and resized to --size, as the FerDVS source videos were before conversion.

Outputs:
  --h5    a FerDVS event file: dataset `events`, (N, 4) uint32 [t_us, x, y, p], p=1 ON
  --bag   a rosbag2 (sqlite3 or mcap) with dv_ros2_msgs/msg/EventArray messages of ~1 ms each
Without either flag, an OUT ending in .h5 gives --h5, anything else --bag. With both, the bag is written
to OUT and the h5 file to OUT.h5. Event times are microseconds from the first frame (the bag adds
--start-time).
"""
EPILOG = """\
examples:
  fer-perception convert face.mp4 -o face.h5 --face-crop
  fer-perception convert face.mp4 -o face_bag --bag --face-crop --size 200 --storage mcap
  fer-perception convert face.mp4 -o davis_bag --size 346x260 --image-topic /camera/image
  fer-perception convert frames/ -o rec --h5 --bag --fps 30 --preset noisy
  fer-perception convert scene.avi -o scene_bag --size 346x260 --message-period-ms 2
"""


def _parse_size(text: str):
    t = text.lower().strip()
    try:
        if "x" in t:
            w, h = t.split("x", 1)
            size = (int(w), int(h))
        else:
            size = (int(t), int(t))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or WxH, got {text!r}") from None
    if min(size) < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8 pixels, got {text!r}")
    return size


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="VIDEO|FRAMES_DIR", help="a video file OpenCV can read, or a folder of images")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output h5 file or bag directory")
    p.add_argument("--h5", action="store_true", help="write a FerDVS-layout .h5 event file")
    p.add_argument("--bag", action="store_true", help="write a rosbag2 with dv_ros2_msgs/msg/EventArray")
    p.add_argument("--preset", default="paper", choices=("paper", "noisy"), help="emulator settings (default paper)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the input (default: the video's own; 30 for image folders)")
    p.add_argument("--face-crop", action="store_true",
                   help="crop a square centred on the face's nose (Haar detector) and resize it to --size")
    p.add_argument("--follow", action="store_true",
                   help="with --face-crop: track the face on every frame (default: crop fixed at the first face)")
    p.add_argument("--crop-scale", type=float, default=1.5, help="crop side / detector box side (default 1.5)")
    p.add_argument("--size", type=_parse_size, default=None, metavar="N|WxH",
                   help="output sensor size (default 200 with --face-crop, else the input size)")
    p.add_argument("--pos-threshold", type=float, default=None, help="override the ON threshold (log units)")
    p.add_argument("--neg-threshold", type=float, default=None, help="override the OFF threshold (log units)")
    p.add_argument("--seed", type=int, default=0, help="seed of the threshold mismatch and noise (default 0)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    p.add_argument("--topic", default="/events", help="bag topic (default /events)")
    p.add_argument("--image-topic", default=None, metavar="TOPIC",
                   help="also write the frames the events came from (cropped/resized) to the bag as "
                        "sensor_msgs/msg/Image rgb8, e.g. /camera/image")
    p.add_argument("--frame-id", default="dvs", help="header frame_id of the messages (default dvs)")
    p.add_argument("--message-period-ms", type=float, default=1.0, help="time span of one bag message (default 1)")
    p.add_argument("--start-time", type=float, default=0.0, help="bag time of the first frame, seconds (default 0)")
    p.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"), help="bag storage (default sqlite3)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def outputs(args: argparse.Namespace):
    """(h5_path or None, bag_path or None) from -o, --h5 and --bag."""
    out = Path(args.output)
    want_h5, want_bag = args.h5, args.bag
    if not want_h5 and not want_bag:
        if out.suffix.lower() in (".h5", ".hdf5"):
            want_h5 = True
        else:
            want_bag = True
    if want_h5 and want_bag:
        return out.with_name(out.name + ".h5"), out
    return (out if want_h5 else None), (out if want_bag else None)


def run(args: argparse.Namespace) -> int:
    from fer_perception.errors import ConfigError
    from fer_perception.synth.emulator import EmulatorConfig
    from fer_perception.synth.video_to_events import FaceCropper, convert_video, open_frames

    if args.message_period_ms <= 0:
        raise ConfigError(f"--message-period-ms must be > 0, got {args.message_period_ms}")
    if args.max_frames < 0:
        raise ConfigError(f"--max-frames must be >= 0, got {args.max_frames}")
    overrides = {}
    if args.pos_threshold is not None:
        overrides["pos_threshold"] = args.pos_threshold
    if args.neg_threshold is not None:
        overrides["neg_threshold"] = args.neg_threshold
    cfg = EmulatorConfig.preset(args.preset, **overrides)
    h5_path, bag_path = outputs(args)
    source = open_frames(args.input, fps=args.fps, max_frames=args.max_frames)
    cropper = None
    size = args.size
    if args.face_crop:
        side = (size or (200, 200))[0]
        if size is not None and size[0] != size[1]:
            raise ConfigError(f"--face-crop makes square crops; --size {size[0]}x{size[1]} is not square")
        cropper = FaceCropper(size=side, scale=args.crop_scale, follow=args.follow)

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=source.n_frames if source.n_frames > 0 else None, unit="frame", desc="convert")
    try:
        result = convert_video(
            source, cfg, h5_path, bag_path, size=size, cropper=cropper, seed=args.seed, topic=args.topic,
            frame_id=args.frame_id, message_period_ns=max(1, int(round(args.message_period_ms * 1e6))),
            start_ns=int(round(args.start_time * 1e9)), storage=args.storage, overwrite=args.overwrite,
            image_topic=args.image_topic, progress=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    summary = {
        "input": str(source.path), "frames": result.frames, "fps": result.fps, "duration_s": result.duration_s,
        "sensor": f"{result.width}x{result.height}", "events": result.events,
        "events_per_s": result.events / result.duration_s if result.duration_s > 0 else 0.0,
        "h5": str(result.h5_path) if result.h5_path else None,
        "bag": str(result.bag_path) if result.bag_path else None,
        "messages": result.messages, "images": result.images if args.image_topic else None,
        "preset": args.preset,
    }
    if cropper is not None:
        summary["frames_without_face"] = result.frames_without_face
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for k, v in summary.items():
            if v is not None:
                print(f"{k:>20}: {v}")
    return 0
