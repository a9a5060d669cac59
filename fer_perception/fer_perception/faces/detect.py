"""Face detectors on core images (``uint8`` RGB or mono): OpenCV Haar cascades (default) and YuNet.

- :class:`HaarFaceDetector` works out of the box with the cascades that opencv-python(-headless) 4.x ships in
  ``cv2.data.haarcascades`` (5.x ships none). It downscales to ``max_width`` first for speed and gives each
  face a relative confidence from the final cascade stage (``detectMultiScale3`` level weight minus that
  stage's threshold, mapped to (0, 1) by ``m / (m + 1)``): useful to rank and threshold, not a probability.
- :class:`YuNetFaceDetector` wraps ``cv2.FaceDetectorYN`` (OpenCV >= 4.5.4). It is far more accurate and gives
  five landmarks, but needs the ONNX file from the user: ``face_detection_yunet_2023mar.onnx`` from the
  opencv_zoo repository (``models/face_detection_yunet``, Apache-2.0; the 2023mar file needs OpenCV >= 4.8,
  older OpenCV reads only ``face_detection_yunet_2022mar.onnx``). fer_perception never downloads it.

Both return :class:`Detection` lists sorted by decreasing score, boxes in pixels of the input image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from fer_perception.errors import ConfigError, DependencyError
from fer_perception.images import check_image
from fer_perception.results import Roi

__all__ = ["Detection", "HaarFaceDetector", "YuNetFaceDetector", "make_detector", "DETECTOR_NAMES"]

#: Landmark order of YuNet (and of ``Detection.landmarks``): the subject's right eye, left eye, nose tip,
#: right mouth corner, left mouth corner. The subject's right eye appears on the image's left side.
LANDMARK_NAMES: Tuple[str, ...] = ("right_eye", "left_eye", "nose_tip", "right_mouth", "left_mouth")


@dataclass
class Detection:
    """One detected face.

    Attributes:
        box: float ``(4,)`` array ``(x, y, w, h)`` in pixels of the image the detector saw.
        score: confidence in [0, 1] (relative for Haar, the network's score for YuNet).
        landmarks: float ``(5, 2)`` array of (x, y) in :data:`LANDMARK_NAMES` order, or None.
    """

    box: np.ndarray
    score: float = 1.0
    landmarks: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        self.score = float(self.score)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float64).reshape(5, 2)

    @property
    def center(self) -> np.ndarray:
        x, y, w, h = self.box
        return np.array([x + w / 2.0, y + h / 2.0])

    def roi(self) -> Roi:
        return Roi.from_xywh(self.box)


#: Where distribution packages put the cascades (Ubuntu's python3-opencv has no ``cv2.data``).
_SYSTEM_CASCADE_DIRS = (
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
)


def _resolve_cascade(cascade: str) -> str:
    if os.path.isfile(cascade):
        return cascade
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    dirs = ([data] if data else []) + list(_SYSTEM_CASCADE_DIRS)
    for d in dirs:
        path = os.path.join(d, cascade)
        if os.path.isfile(path):
            return path
    raise ConfigError(
        f"Haar cascade {cascade!r} not found as a path nor in {', '.join(dirs)}; OpenCV 5 ships no cascades: "
        "use opencv-python-headless<5 or give a cascade XML path"
    )


def _last_stage_threshold(path: str) -> float:
    """The threshold of a cascade's final stage, so the level weight becomes a margin (0 when unreadable)."""
    try:
        fs = cv2.FileStorage(path, cv2.FILE_STORAGE_READ)
        stages = fs.getFirstTopLevelNode().getNode("stages")
        n = stages.size()
        thr = stages.at(n - 1).getNode("stageThreshold").real() if n else 0.0
        fs.release()
        return float(thr)
    except cv2.error:  # old-format cascades: scores then start at the raw weight
        return 0.0


class HaarFaceDetector:
    """Viola-Jones face detection with an OpenCV Haar cascade, tuned for speed.

    Args:
        scale_factor: pyramid step of ``detectMultiScale`` (bigger is faster, coarser).
        min_neighbors: overlapping raw hits needed to keep a face (bigger: fewer false faces).
        min_size: smallest face side in pixels of the input image.
        max_width: images wider than this are downscaled to it before detection (boxes are mapped back);
            0 disables downscaling.
        cascade: file name in ``cv2.data.haarcascades`` or a path.
        equalize: equalize the grey histogram first (helps in dim or flat light).
        min_score: drop faces with a lower confidence.
        max_faces: keep at most this many (highest score first); 0 keeps all.
    """

    name = "haar"

    def __init__(
        self,
        scale_factor: float = 1.15,
        min_neighbors: int = 4,
        min_size: int = 40,
        max_width: int = 320,
        cascade: str = "haarcascade_frontalface_alt2.xml",
        equalize: bool = False,
        min_score: float = 0.0,
        max_faces: int = 0,
    ) -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise DependencyError(
                "this OpenCV build has no CascadeClassifier (OpenCV 5?): install opencv-python-headless<5"
            )
        if not scale_factor > 1.0:
            raise ConfigError(f"scale_factor must be > 1, got {scale_factor}")
        if int(min_neighbors) < 0 or int(min_size) < 1 or int(max_width) < 0 or int(max_faces) < 0:
            raise ConfigError(
                f"invalid Haar parameters: min_neighbors={min_neighbors}, min_size={min_size}, "
                f"max_width={max_width}, max_faces={max_faces}"
            )
        self.path = _resolve_cascade(cascade)
        self._cascade = cv2.CascadeClassifier(self.path)
        if self._cascade.empty():
            raise ConfigError(f"OpenCV could not load the Haar cascade {self.path!r}")
        self._threshold = _last_stage_threshold(self.path)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)
        self.max_width = int(max_width)
        self.equalize = bool(equalize)
        self.min_score = float(min_score)
        self.max_faces = int(max_faces)

    def __repr__(self) -> str:
        return (
            f"HaarFaceDetector({os.path.basename(self.path)}, scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, min_size={self.min_size}, max_width={self.max_width})"
        )

    def detect(self, image: np.ndarray) -> List[Detection]:
        """Faces in a ``uint8`` RGB/RGBA/mono image; an image smaller than ``min_size`` gives an empty list."""
        img = check_image(image)
        h, w = img.shape[:2]
        if min(h, w) < self.min_size:
            return []
        gray = img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        scale = 1.0
        if self.max_width and w > self.max_width:
            scale = self.max_width / float(w)
            gray = cv2.resize(gray, (self.max_width, max(1, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
        else:
            gray = np.ascontiguousarray(gray)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        min_side = max(1, int(round(self.min_size * scale)))
        if min(gray.shape) < min_side:
            return []
        rects, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
            outputRejectLevels=True,
        )
        if len(rects) == 0:
            return []
        boxes = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / scale
        margin = np.maximum(np.asarray(weights, dtype=np.float64).reshape(-1) - self._threshold, 0.0)
        scores = margin / (margin + 1.0)
        return _finish([Detection(b, s) for b, s in zip(boxes, scores)], self.min_score, self.max_faces)

    __call__ = detect


class YuNetFaceDetector:
    """OpenCV's YuNet CNN face detector (``cv2.FaceDetectorYN``), with five landmarks per face.

    The model file is not shipped: download ``face_detection_yunet_2023mar.onnx`` yourself from the opencv_zoo
    repository (``models/face_detection_yunet``) and pass its path. The input size follows each image
    automatically (YuNet runs on the image at its own resolution, downscaled to ``max_width`` if wider).

    Args:
        model_path: path of the YuNet ONNX file.
        score_threshold: minimum face score.
        nms_threshold: IoU above which overlapping faces are merged.
        top_k: candidates kept before NMS.
        max_width: images wider than this are downscaled first (0: never).
        max_faces: keep at most this many (highest score first); 0 keeps all.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        top_k: int = 50,
        max_width: int = 640,
        max_faces: int = 0,
    ) -> None:
        factory = getattr(cv2, "FaceDetectorYN", None)
        if factory is None or not hasattr(factory, "create"):
            raise DependencyError(
                f"OpenCV {cv2.__version__} lacks cv2.FaceDetectorYN (needs >= 4.5.4): upgrade opencv-python-headless"
            )
        path = os.fspath(model_path) if model_path else ""
        if not path or not os.path.isfile(path):
            raise ConfigError(
                f"YuNet model_path {path!r} does not exist: download face_detection_yunet_2023mar.onnx from "
                "opencv_zoo (models/face_detection_yunet) and pass its path, or use the 'haar' detector"
            )
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= nms_threshold <= 1.0:
            raise ConfigError(
                f"score_threshold and nms_threshold must be within [0, 1], got {score_threshold}, {nms_threshold}"
            )
        try:
            self._net = factory.create(path, "", (320, 320), float(score_threshold), float(nms_threshold), int(top_k))
        except cv2.error as exc:
            raise ConfigError(f"OpenCV could not load the YuNet model {path!r}: {exc}") from exc
        self.path = path
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_width = int(max_width)
        self.max_faces = int(max_faces)
        self._size: Tuple[int, int] = (320, 320)

    def __repr__(self) -> str:
        return f"YuNetFaceDetector({self.path!r}, score_threshold={self.score_threshold})"

    def detect(self, image: np.ndarray) -> List[Detection]:
        """Faces with landmarks in a ``uint8`` RGB/RGBA/mono image."""
        img = check_image(image)
        h, w = img.shape[:2]
        if min(h, w) < 10:
            return []
        bgr = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2BGR if img.ndim == 2 else cv2.COLOR_RGB2BGR)
        scale = 1.0
        if self.max_width and w > self.max_width:
            scale = self.max_width / float(w)
            bgr = cv2.resize(bgr, (self.max_width, max(1, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        try:
            _, faces = self._net.detect(bgr)
        except cv2.error as exc:
            raise ConfigError(f"YuNet model {self.path!r} failed on a {size[0]}x{size[1]} image: {exc}") from exc
        if faces is None or len(faces) == 0:
            return []
        faces = np.asarray(faces, dtype=np.float64).reshape(len(faces), -1) / np.r_[[scale] * 14, 1.0]
        dets = [Detection(f[:4], float(f[14]), f[4:14].reshape(5, 2)) for f in faces]
        return _finish(dets, self.score_threshold, self.max_faces)

    __call__ = detect


def _finish(dets: List[Detection], min_score: float, max_faces: int) -> List[Detection]:
    dets = [d for d in dets if d.score >= min_score and d.box[2] > 0 and d.box[3] > 0]
    dets.sort(key=lambda d: (-d.score, -d.box[2] * d.box[3]))
    return dets[:max_faces] if max_faces else dets


_FACTORIES: Dict[str, Any] = {"haar": HaarFaceDetector, "yunet": YuNetFaceDetector}
DETECTOR_NAMES: Tuple[str, ...] = tuple(_FACTORIES)


def make_detector(name: str = "haar", **kwargs: Any):
    """A detector by name: ``"haar"`` (default, no files needed) or ``"yunet"`` (needs ``model_path=``).

    ``"auto"`` picks YuNet when a non-empty ``model_path`` is given and Haar otherwise. Keyword arguments go
    to the detector's constructor; an unknown one raises :class:`ConfigError` naming it.
    """
    key = str(name).strip().lower()
    if key == "auto":
        key = "yunet" if kwargs.get("model_path") else "haar"
        if key == "haar":
            kwargs.pop("model_path", None)
    if key not in _FACTORIES:
        raise ConfigError(f"unknown face detector {name!r}; choose one of: {', '.join(DETECTOR_NAMES + ('auto',))}")
    try:
        return _FACTORIES[key](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad parameter for the {key} face detector: {exc}") from exc
