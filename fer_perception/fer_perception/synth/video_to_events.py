"""Video (file or folder of images) to DVS events: frame sources, face cropping, message splitting, writers.

The pieces behind ``fer-perception convert``:

* :func:`open_frames` yields chunks of RGB frames with their times from a video file (``cv2.VideoCapture``)
  or a folder of images (sorted by name, natural order), so long videos stream through in bounded memory;
* :class:`FaceCropper` crops each frame to a square centred on the face's nose (OpenCV Haar, or any detector
  with a ``detect(rgb) -> [Detection]`` method) and resizes it to the sensor size, like the FerDVS sources
  (faces aligned and cropped centred on the nose before conversion). By default the crop is fixed at the
  first detected face (the clips were registered to their first frame); ``follow=True`` tracks it smoothly;
* :func:`split_by_period` cuts an event stream into ~1 ms messages (header stamp = last event's time, as
  dv-ros2 does), holding back the still-open period between chunks;
* :func:`convert_video` runs the emulator over the frames and writes a FerDVS ``.h5`` file and/or a rosbag2
  with ``dv_ros2_msgs/msg/EventArray`` messages.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from fer_perception.errors import ConfigError, FerPerceptionError
from fer_perception.events.batch import EventBatch
from fer_perception.synth.emulator import DvsEmulator, EmulatorConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
EVENT_ARRAY_TYPE = "dv_ros2_msgs/msg/EventArray"

PathLike = Union[str, Path]


class VideoInputError(FerPerceptionError, ValueError):
    """A video or image folder that cannot be read (missing, empty, undecodable, inconsistent sizes)."""


class NoFaceError(FerPerceptionError, ValueError):
    """Face cropping was asked for but no face was found."""


# ----------------------------------------------------------------------------------------------------------
# frame sources


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: PathLike) -> List[Path]:
    """Image files of ``folder`` in natural name order (``frame2`` before ``frame10``)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural_key(p.name))


@dataclass
class FrameSource:
    """An opened input: ``chunks()`` yields ``(frames (n,H,W,3) uint8 RGB, times_s (n,))``."""

    path: Path
    kind: str  # "video" or "images"
    fps: float
    n_frames: int  # best knowledge; -1 if unknown
    width: int
    height: int
    chunk: int = 32
    max_frames: int = 0
    _files: List[Path] = field(default_factory=list, repr=False)

    def chunks(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        idx = 0
        buf: List[np.ndarray] = []
        for img in self._iter_images():
            if self.max_frames and idx >= self.max_frames:
                break
            if img.shape[:2] != (self.height, self.width):
                raise VideoInputError(
                    f"{self.path}: frame {idx} is {img.shape[1]}x{img.shape[0]}, earlier frames are "
                    f"{self.width}x{self.height}"
                )
            buf.append(img)
            idx += 1
            if len(buf) == self.chunk:
                yield self._emit(buf, idx)
                buf = []
        if buf:
            yield self._emit(buf, idx)

    def _emit(self, buf: List[np.ndarray], end: int):
        start = end - len(buf)
        return np.stack(buf), np.arange(start, end, dtype=np.float64) / self.fps

    def _iter_images(self) -> Iterator[np.ndarray]:
        if self.kind == "images":
            for p in self._files:
                yield _read_image(p)
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield _to_rgb(bgr)
        finally:
            cap.release()


def _to_rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise VideoInputError(f"cannot decode image {path}")
    return _to_rgb(img)


def open_frames(path: PathLike, fps: Optional[float] = None, chunk: int = 32, max_frames: int = 0) -> FrameSource:
    """Open a video file or a folder of images. ``fps`` overrides the video's rate (images: default 30)."""
    path = Path(path)
    if fps is not None and not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps}")
    if not path.exists():
        raise VideoInputError(f"input {path} does not exist")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise VideoInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        first = _read_image(files[0])
        n = len(files) if not max_frames else min(len(files), max_frames)
        return FrameSource(path, "images", float(fps or 30.0), n, first.shape[1], first.shape[0], chunk,
                           max_frames, files)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoInputError(f"OpenCV cannot open video {path}")
        ok, first = cap.read()
        if not ok:
            raise VideoInputError(f"video {path} has no readable frame")
        rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or -1)
    finally:
        cap.release()
    if fps is None:
        if not rate > 0 or rate > 10000:
            raise VideoInputError(f"video {path} does not state its frame rate; pass --fps")
        fps = rate
    if max_frames and count > 0:
        count = min(count, max_frames)
    return FrameSource(path, "video", float(fps), count, first.shape[1], first.shape[0], chunk, max_frames)


# ----------------------------------------------------------------------------------------------------------
# face cropping


class FaceCropper:
    """Square crops centred on the face's nose, resized to ``size`` x ``size``.

    Args:
        size: output side in pixels.
        scale: crop side relative to the detector's box side (1.5 makes a Haar face fill the crop like the
            FerDVS crops).
        nose_y: nose height inside the detector box (fraction of its height) when it has no landmarks.
        follow: re-detect on every frame and move the crop smoothly (``alpha``); otherwise the crop stays
            where the first face was found.
        detector: object with ``detect(rgb) -> [Detection]``; default ``faces.detect.HaarFaceDetector`` (plain
            ``cv2.CascadeClassifier`` when that module is unavailable).
    """

    def __init__(self, size: int = 200, scale: float = 1.5, nose_y: float = 0.62, follow: bool = False,
                 alpha: float = 0.3, detector=None) -> None:
        if int(size) < 8:
            raise ConfigError(f"crop size must be >= 8, got {size}")
        if not scale > 0 or not 0 < alpha <= 1:
            raise ConfigError(f"crop scale must be > 0 and alpha in (0, 1], got {scale}, {alpha}")
        self.size = int(size)
        self.scale = float(scale)
        self.nose_y = float(nose_y)
        self.follow = bool(follow)
        self.alpha = float(alpha)
        self.detector = detector if detector is not None else _default_detector()
        self.center: Optional[np.ndarray] = None
        self.side: Optional[float] = None
        self.frames_without_face = 0

    def _measure(self, rgb: np.ndarray) -> Optional[Tuple[np.ndarray, float]]:
        dets = self.detector.detect(rgb)
        if not dets:
            return None
        d = max(dets, key=lambda d: float(d.box[2] * d.box[3]))
        x, y, w, h = (float(v) for v in d.box)
        lm = getattr(d, "landmarks", None)
        if lm is not None:
            nose = np.asarray(lm, float)[2]
        else:
            nose = np.array([x + w / 2.0, y + self.nose_y * h])
        return nose, max(w, h) * self.scale

    def locate(self, rgb: np.ndarray) -> bool:
        """Update the crop from ``rgb``; False when no face has been seen yet."""
        if self.center is None or self.follow:
            m = self._measure(rgb)
            if m is None:
                self.frames_without_face += 1
            elif self.center is None:
                self.center, self.side = m
            else:
                self.center = (1 - self.alpha) * self.center + self.alpha * m[0]
                self.side = (1 - self.alpha) * self.side + self.alpha * m[1]
        return self.center is not None

    def crop(self, rgb: np.ndarray) -> np.ndarray:
        """The current crop of ``rgb`` (border pixels repeated where the square leaves the image)."""
        if self.center is None:
            raise NoFaceError("no face located yet")
        k = self.size / self.side
        cx, cy = self.center
        m = np.array([[k, 0.0, self.size / 2.0 - k * cx], [0.0, k, self.size / 2.0 - k * cy]])
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        return cv2.warpAffine(rgb, m, (self.size, self.size), flags=interp, borderMode=cv2.BORDER_REPLICATE)

    def process(self, frames: np.ndarray) -> np.ndarray:
        """Crops of a chunk; frames before the first face are cropped around the first face found later."""
        out = np.empty((len(frames), self.size, self.size, 3), np.uint8)
        pending: List[int] = []
        for i, f in enumerate(frames):
            if not self.locate(f):
                pending.append(i)
                continue
            out[i] = self.crop(f)
        if pending:
            if self.center is None:
                raise NoFaceError(f"no face found in {len(pending)} frame(s); try without --face-crop")
            for i in pending:
                out[i] = self.crop(frames[i])
        return out


class _CascadeDetector:
    """Fallback: plain OpenCV Haar cascade returning objects with a ``box``."""

    def __init__(self) -> None:
        self._c = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def detect(self, rgb: np.ndarray):
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rects = self._c.detectMultiScale(gray, 1.1, 4, minSize=(40, 40))

        class _D:
            def __init__(self, box):
                self.box = np.asarray(box, float)
                self.landmarks = None
        return [_D(r) for r in rects]


def _default_detector():
    try:
        from fer_perception.faces.detect import HaarFaceDetector
    except ImportError:  # the frame path module is optional here
        return _CascadeDetector()
    return HaarFaceDetector()


def resize_to(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a chunk of frames to ``width`` x ``height`` (no-op when already that size)."""
    if frames.shape[1:3] == (height, width):
        return frames
    interp = cv2.INTER_AREA if width < frames.shape[2] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


# ----------------------------------------------------------------------------------------------------------
# event messages


def split_by_period(batch: EventBatch, period_ns: int, hold_from_ns: Optional[int] = None
                    ) -> Tuple[List[EventBatch], EventBatch]:
    """Cut time-sorted events into messages of one ``period_ns`` bin each (bins aligned to multiples of it).

    Events at or after the start of the bin containing ``hold_from_ns`` are returned separately (still open:
    more events of that bin may come with the next chunk). Each message's ``stamp_ns`` is its last event's
    time. Empty bins produce no message.
    """
    if period_ns < 1:
        raise ConfigError(f"message period must be >= 1 ns, got {period_ns}")
    if len(batch) == 0:
        return [], batch
    cut = len(batch)
    if hold_from_ns is not None:
        open_start = (int(hold_from_ns) // period_ns) * period_ns
        cut = int(np.searchsorted(batch.t, open_start, side="left"))
    done, rest = batch.select(slice(0, cut)), batch.select(slice(cut, None))
    if len(done) == 0:
        return [], rest
    bins = done.t // period_ns
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = np.r_[starts[1:], len(done)]
    msgs = []
    for s, e in zip(starts, ends):
        part = done.select(slice(int(s), int(e)))
        msgs.append(replace(part, stamp_ns=int(part.t[-1])))
    return msgs, rest


# ----------------------------------------------------------------------------------------------------------
# the whole conversion


def _face_ready_chunks(chunks, cropper: Optional[FaceCropper], max_wait_frames: int):
    """Pass chunks through; with a cropper, hold them until a face has been located (then release all)."""
    if cropper is None:
        yield from chunks
        return
    held_f: List[np.ndarray] = []
    held_t: List[np.ndarray] = []
    for frames, times in chunks:
        if cropper.center is None:
            for f in frames:
                if cropper.locate(f):
                    break
        if cropper.center is None:
            held_f.append(frames)
            held_t.append(times)
            n = sum(len(x) for x in held_f)
            if n > max_wait_frames:
                raise NoFaceError(f"no face found in the first {n} frames; try without --face-crop")
            continue
        if held_f:
            yield np.concatenate(held_f + [frames]), np.concatenate(held_t + [times])
            held_f, held_t = [], []
        else:
            yield frames, times
    if held_f:
        n = sum(len(x) for x in held_f)
        raise NoFaceError(f"no face found in any of the {n} frames; try without --face-crop")


@dataclass
class ConversionResult:
    frames: int = 0
    events: int = 0
    messages: int = 0
    images: int = 0
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    h5_path: Optional[Path] = None
    bag_path: Optional[Path] = None
    frames_without_face: int = 0


def convert_video(
    source: FrameSource,
    emulator_config: EmulatorConfig,
    h5_path: Optional[PathLike] = None,
    bag_path: Optional[PathLike] = None,
    *,
    size: Optional[Tuple[int, int]] = None,
    cropper: Optional[FaceCropper] = None,
    seed: int = 0,
    topic: str = "/events",
    frame_id: str = "dvs",
    message_period_ns: int = 1_000_000,
    start_ns: int = 0,
    storage: str = "sqlite3",
    overwrite: bool = False,
    image_topic: Optional[str] = None,
    max_wait_frames: int = 300,
    progress: Optional[Callable[[int], None]] = None,
) -> ConversionResult:
    """Emulate events of ``source`` and write them (FerDVS h5 and/or rosbag2 EventArray messages).

    ``size`` (width, height) resizes the frames; ``cropper`` crops the face instead (its size wins).
    Event times are quantised to microseconds (like dv-ros2 and FerDVS) and offset by ``start_ns`` in the bag.
    With a ``cropper``, frames before the first detected face are held (up to ``max_wait_frames``) and then
    cropped around that face, so a face that shows up late still gets a crop from the first frame on.
    ``image_topic``: also write the (cropped/resized) frames to the bag as ``sensor_msgs/msg/Image`` rgb8, like
    the APS frames a DAVIS publishes beside its events (same pixels as the events).
    """
    if image_topic is not None and bag_path is None:
        raise ConfigError("an image topic needs a bag output")
    if h5_path is None and bag_path is None:
        raise ConfigError("nothing to write: give an h5 path, a bag path or both")
    if h5_path is not None:
        h5_path = Path(h5_path)
        if h5_path.exists() and not overwrite:
            raise ConfigError(f"output {h5_path} exists; remove it or pass --overwrite")
    if cropper is not None:
        w = h = cropper.size
    elif size is not None:
        w, h = int(size[0]), int(size[1])
    else:
        w, h = source.width, source.height
    cfg = replace(emulator_config, width=w, height=h)
    if source.fps != cfg.fps:
        cfg = replace(cfg, fps=source.fps)
    emu = DvsEmulator(cfg, seed=seed)
    result = ConversionResult(width=w, height=h, fps=source.fps, h5_path=h5_path,
                              bag_path=Path(bag_path) if bag_path is not None else None)
    h5_parts: List[np.ndarray] = []
    bag = None
    if bag_path is not None:
        from fer_perception.bag.writer import BagWriter
        from fer_perception.events.cdr import encode_event_array

        bag = BagWriter(bag_path, storage=storage, overwrite=overwrite)
        bag.open()
    pending = EventBatch.empty(w, h)

    def write_msgs(msgs: List[EventBatch]) -> None:
        for m in msgs:
            m = replace(m, t=m.t + start_ns, stamp_ns=m.stamp_ns + start_ns, frame_id=frame_id, width=w, height=h)
            bag.write_raw(topic, EVENT_ARRAY_TYPE, m.stamp_ns, encode_event_array(m))
            result.messages += 1

    def write_images(frames: np.ndarray, times: np.ndarray) -> None:
        from fer_perception.images import image_to_ros_fields

        Image = bag.msg("sensor_msgs/msg/Image")
        for f, t in zip(frames, times):
            stamp = int(round(t * 1e6)) * 1000 + start_ns
            fields = image_to_ros_fields(f)
            fields["data"] = np.frombuffer(fields["data"], np.uint8)
            msg = Image(header=BagWriter.header(bag.typestore, stamp, frame_id), **fields)
            bag.write(image_topic, "sensor_msgs/msg/Image", stamp, msg)
            result.images += 1

    try:
        last_t = 0.0
        for frames, times in _face_ready_chunks(source.chunks(), cropper, max_wait_frames):
            if cropper is not None:
                frames = cropper.process(frames)
            else:
                frames = resize_to(frames, w, h)
            ev = emu.emulate(frames, times)
            if bag is not None and image_topic:
                write_images(frames, times)
            if len(ev):
                ev = replace(ev, t=(ev.t // 1000) * 1000)
            result.frames += len(frames)
            result.events += len(ev)
            last_t = float(times[-1])
            if h5_path is not None and len(ev):
                from fer_perception.synth.ferdvs_writer import events_array

                h5_parts.append(events_array(ev))
            if bag is not None:
                msgs, pending = split_by_period(EventBatch.concatenate([pending, ev]), message_period_ns,
                                                hold_from_ns=int(round(last_t * 1e9)))
                write_msgs(msgs)
            if progress is not None:
                progress(len(frames))
        if bag is not None:
            msgs, _ = split_by_period(pending, message_period_ns)
            write_msgs(msgs)
        result.duration_s = last_t
    finally:
        if bag is not None:
            bag.close()
    if cropper is not None:
        result.frames_without_face = cropper.frames_without_face
    if result.frames < 2:
        raise VideoInputError(f"{source.path}: need at least 2 frames to make events, got {result.frames}")
    if h5_path is not None:
        import h5py

        h5_path.parent.mkdir(parents=True, exist_ok=True)
        data = np.concatenate(h5_parts) if h5_parts else np.zeros((0, 4), np.uint32)
        with h5py.File(h5_path, "w") as f:
            ds = f.create_dataset("events", data=data)
            ds.attrs["width"] = w
            ds.attrs["height"] = h
            ds.attrs["fps"] = source.fps
            ds.attrs["source"] = str(source.path)
    return result
