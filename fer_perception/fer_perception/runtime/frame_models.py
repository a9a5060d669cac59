"""Frame-path model wrappers: preprocessing, torch or onnxruntime backend, batched over faces.

- :class:`ExpressionModel` (``kind="light"`` or ``"dan"``): ``predict(crops)`` or ``predict(image, boxes)``
  -> probabilities ``(B, C)`` float32 in the order of ``.labels``.
- :class:`AgeGenderModel`: ``predict(...)`` -> :class:`AgeGenderPrediction` ``(age, age_std, p_female)``,
  each ``(B,)`` float32.

Crops are numpy ``uint8`` RGB ``(H, W, 3)`` or mono ``(H, W)``; boxes are ``(x, y, w, h)`` in image pixels.
Checkpoints: official DAN ``.pth``, our frame checkpoints (``models/frame_checkpoint.py``), or ``.onnx`` files
written by ``fer-perception export`` (they carry labels and preprocessing in their metadata).

Backends: ``"torch"``, ``"onnx"`` (onnxruntime) or ``"auto"`` (the default): torch on CUDA, onnxruntime on
the CPU, where it is several times faster per face (bench/bench_frame_models.py). A torch checkpoint used with
onnxruntime is exported once and cached (``$FER_PERCEPTION_CACHE`` or ``~/.cache/fer_perception/onnx``, keyed
by the file's sha256 and :data:`ONNX_EXPORT_VERSION`); both backends agree within 1e-4. The export uses
:meth:`LoadedModel.export_module`: for DAN an inference-only copy with its attention branches re-parameterised
into single convs, its heads batched and its layer2-4 convs as Winograd F(4x4 or 2x2, 3x3)
(:func:`fer_perception.models.dan.inference_logits`, same maths, cheaper graph). Normalisation uses a
per-channel lookup table, bit-identical to normalising each pixel.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from fer_perception.errors import CheckpointError, ConfigError, ImageError

KINDS = ("light", "dan", "agegender")
#: Part of the ONNX cache key: bump when what :meth:`LoadedModel.export_module` exports changes
#: (2: DAN spatial-attention branches fused; 3: DAN heads batched, BatchNorms folded; 4: DAN layer2/layer3
#: 3x3 convs as Winograd F(2x2, 3x3); 5: its transforms as 3-D convs; 6: F(4x4) in layer2, layer4 too;
#: 7: static head reshapes), so stale cached exports are not reused.
ONNX_EXPORT_VERSION = 7
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
DEMO_WEIGHTS = {
    "light": os.path.join(WEIGHTS_DIR, "light_fer_synthetic_demo.pt"),
    "agegender": os.path.join(WEIGHTS_DIR, "age_gender_synthetic_demo.pt"),
}
OUTPUT_NAMES = {"light": ("logits",), "dan": ("logits",), "agegender": ("gender_logits", "age", "age_log_var")}


@dataclass
class Preprocess:
    """Crop -> network input: resize to ``size`` x ``size``, RGB or gray, [0, 1], ``(x - mean) / std``.

    ``resize="pil"`` resizes with Pillow's bilinear filter, exactly what torchvision's ``Resize`` does on PIL
    images (DAN's official preprocessing; antialiased when shrinking). ``resize="cv2"`` uses OpenCV: bilinear
    when enlarging, pixel-area averaging when shrinking (our own models are trained with it).
    """

    size: int = 224
    color: str = "rgb"
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    resize: str = "cv2"

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Preprocess":
        p = cls(int(d.get("size", 224)), str(d.get("color", "rgb")), list(d.get("mean", [0.5])),
                list(d.get("std", [0.5])), str(d.get("resize", "cv2")))
        if p.color not in ("rgb", "gray"):
            raise ConfigError(f"preprocess color must be 'rgb' or 'gray', got {p.color!r}")
        if p.resize not in ("cv2", "pil"):
            raise ConfigError(f"preprocess resize must be 'cv2' or 'pil', got {p.resize!r}")
        if p.size < 8:
            raise ConfigError(f"preprocess size must be >= 8, got {p.size}")
        nch = 3 if p.color == "rgb" else 1
        if len(p.mean) != nch or len(p.std) != nch or min(p.std) <= 0:
            raise ConfigError(f"preprocess mean/std need {nch} values (std > 0), got {p.mean} / {p.std}")
        return p

    def to_dict(self) -> Dict[str, Any]:
        return {"size": self.size, "color": self.color, "mean": list(self.mean), "std": list(self.std),
                "resize": self.resize}

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        import cv2

        s = self.size
        out = np.empty((len(crops), s, s, self.channels), dtype=np.uint8)
        for i, crop in enumerate(crops):
            crop = _check_image(crop, f"crop {i}")
            if self.color == "gray" and crop.ndim == 3:
                crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
            elif self.color == "rgb" and crop.ndim == 2:
                crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
            h, w = crop.shape[:2]
            if (h, w) != (s, s):
                image_mod = _pil() if self.resize == "pil" else None
                if image_mod is not None:
                    pil = image_mod.fromarray(np.ascontiguousarray(crop))
                    crop = np.asarray(pil.resize((s, s), image_mod.BILINEAR))
                else:
                    interp = cv2.INTER_AREA if (h > s and w > s) else cv2.INTER_LINEAR
                    crop = cv2.resize(crop, (s, s), interpolation=interp)
            out[i] = crop.reshape(s, s, self.channels)
        lut = self.lookup_table()
        x = np.empty((len(crops), self.channels, s, s), dtype=np.float32)
        for i in range(len(crops)):
            planes = cv2.split(out[i]) if self.channels > 1 else [out[i, :, :, 0]]
            for c, plane in enumerate(planes):  # cv2.LUT writes the float plane in place (~3x np.take's speed)
                got = cv2.LUT(plane, lut[c:c + 1], dst=x[i, c])
                if got.ctypes.data != x[i, c].ctypes.data:  # pragma: no cover - OpenCV chose a new buffer
                    x[i, c] = got
        return x

    def lookup_table(self) -> np.ndarray:
        """``(channels, 256)`` float32: ``(float32(v) * float32(1/255) - mean) / std`` for every uint8 ``v``.

        The same float32 operations as normalising each pixel, so looking pixels up in it gives bit-identical
        results (one lookup per channel instead of four full-image float passes, ~1 ms less at 224x224).
        """
        key = (tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std))
        cached = self.__dict__.get("_lut")
        if cached is None or cached[0] != key:
            v = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)
            mean = np.asarray(self.mean, np.float32).reshape(-1, 1)
            std = np.asarray(self.std, np.float32).reshape(-1, 1)
            cached = (key, np.ascontiguousarray((v[None, :] - mean) / std, dtype=np.float32))
            self.__dict__["_lut"] = cached
        return cached[1]


def _pil():
    """Pillow's Image module, or None (then OpenCV resizes, with one warning)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        import logging

        if not getattr(_pil, "warned", False):
            logging.getLogger(__name__).warning("Pillow is missing: DAN crops are resized with OpenCV instead")
            _pil.warned = True
        return None
    return Image


def _check_image(img: Any, what: str) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise ImageError(f"{what} must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ImageError(f"{what} must be uint8, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ImageError(f"{what} must be (H, W, 3) RGB or (H, W) mono, got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageError(f"{what} is empty (shape {img.shape})")
    return img


def crop_boxes(image: np.ndarray, boxes: Any, margin: float = 0.0) -> List[np.ndarray]:
    """Cut ``(x, y, w, h)`` boxes or :class:`~fer_perception.results.Roi` (grown by ``margin`` of their size
    on each side) out of ``image``, clipped to it."""
    image = _check_image(image, "image")
    if len(boxes) and not isinstance(boxes, np.ndarray):
        boxes = [b.as_tuple() if hasattr(b, "as_tuple") else b for b in boxes]  # results.Roi accepted
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
    if not np.all(np.isfinite(b)):
        raise ImageError("face boxes contain NaN or infinite values")
    H, W = image.shape[:2]
    x0 = np.floor(b[:, 0] - margin * b[:, 2]).astype(np.int64).clip(0, W)
    y0 = np.floor(b[:, 1] - margin * b[:, 3]).astype(np.int64).clip(0, H)
    x1 = np.ceil(b[:, 0] + (1 + margin) * b[:, 2]).astype(np.int64).clip(0, W)
    y1 = np.ceil(b[:, 1] + (1 + margin) * b[:, 3]).astype(np.int64).clip(0, H)
    crops = []
    for i in range(len(b)):
        if x1[i] <= x0[i] or y1[i] <= y0[i]:
            raise ImageError(f"face box {i} {tuple(b[i])} lies outside the {W}x{H} image or is empty")
        crops.append(image[y0[i]:y1[i], x0[i]:x1[i]])
    return crops


@dataclass
class LoadedModel:
    """A torch module ready for inference plus everything needed to use or export it."""

    kind: str
    module: Any
    classes: Tuple[str, ...]
    preprocess: Preprocess
    config: Dict[str, Any]
    meta: Dict[str, Any]

    @property
    def output_names(self) -> Tuple[str, ...]:
        return OUTPUT_NAMES[self.kind]

    def export_module(self) -> Any:
        """The module to export to ONNX: same outputs as :attr:`module`; for DAN an eval-only fused copy
        (:func:`fer_perception.models.dan.inference_logits`)."""
        if self.kind == "dan":
            from fer_perception.models.dan import inference_logits

            return inference_logits(self.module.dan)
        return self.module

    def onnx_metadata(self) -> Dict[str, Any]:
        return {"fer_perception_kind": self.kind, "classes": list(self.classes),
                "preprocess": self.preprocess.to_dict(), "config": self.config, "meta": self.meta}


def load_torch_model(kind: str, checkpoint: Optional[str] = None, classes: Any = None) -> LoadedModel:
    """Build the torch model of ``kind`` from a checkpoint (demo weights when ``checkpoint`` is None)."""
    from fer_perception.models.frame_checkpoint import float_state, load_state_dict_strict, read_frame_checkpoint

    if kind not in KINDS:
        raise ConfigError(f"model kind must be one of {KINDS}, got {kind!r}")
    if checkpoint is None:
        if kind not in DEMO_WEIGHTS:
            raise ConfigError(f"a {kind!r} model needs a checkpoint (no demo weights ship for it)")
        checkpoint = DEMO_WEIGHTS[kind]
    checkpoint = os.fspath(checkpoint)
    if kind == "dan":
        from fer_perception.models.dan import DAN_PREPROCESS, DANLogits, load_dan

        dan, names, info = load_dan(checkpoint, classes)
        cfg = {"num_class": dan.num_class, "num_head": dan.num_head}
        pre = Preprocess.from_dict(info.get("preprocess") or DAN_PREPROCESS)
        return LoadedModel("dan", DANLogits(dan).eval(), names, pre, cfg,
                           dict(info.get("meta") or {}, source=os.path.basename(checkpoint)))
    blob = read_frame_checkpoint(checkpoint, kind)
    if kind == "light":
        from fer_perception.models.light_fer import LightFER, LightFerConfig

        cfg = LightFerConfig(**blob["config"]).validate()
        module = LightFER(cfg)
        names = tuple(classes) if classes is not None else tuple(blob["classes"])
        if len(names) != cfg.n_classes:
            raise CheckpointError(f"{checkpoint}: {len(names)} class names for {cfg.n_classes} outputs")
    else:
        from fer_perception.models.age_gender import GENDERS, AgeGenderConfig, AgeGenderNet

        cfg = AgeGenderConfig(**blob["config"]).validate()
        module = AgeGenderNet(cfg)
        names = GENDERS
    load_state_dict_strict(module, float_state(blob["state_dict"]), source=checkpoint)
    pre = Preprocess.from_dict(blob.get("preprocess") or cfg.preprocess())
    return LoadedModel(kind, module.eval(), names, pre, cfg.to_dict(), dict(blob.get("meta") or {}))


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    return device


BACKENDS = ("auto", "torch", "onnx")


def _auto_backend(device: str) -> str:
    """``torch`` on CUDA, ``onnx`` on the CPU when onnxruntime is installed (several times faster there)."""
    import torch

    if str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx"


def onnx_cache_dir() -> str:
    """Where exported ONNX files are cached: ``$FER_PERCEPTION_CACHE`` or ``~/.cache/fer_perception/onnx``."""
    base = os.environ.get("FER_PERCEPTION_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "fer_perception")
    return os.path.join(base, "onnx")


def cached_onnx(kind: str, checkpoint: Optional[str], classes: Any = None) -> Tuple[str, Optional[Any]]:
    """The ONNX export of a torch checkpoint, made once and cached under a key of the file's sha256.

    Returns ``(path, tmpdir)``; ``tmpdir`` (to keep alive) is set when the cache is not writable.
    """
    import hashlib

    import torch

    from fer_perception.runtime.onnx_backend import export_onnx

    src = os.fspath(checkpoint) if checkpoint is not None else DEMO_WEIGHTS.get(kind, "")
    h = hashlib.sha256()
    try:
        with open(src, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"checkpoint file not found or unreadable: {src} ({exc})") from exc
    weights = h.hexdigest()[:12]
    h.update(repr((kind, classes, torch.__version__, ONNX_EXPORT_VERSION)).encode())
    # <kind>-<weights>-<export>: exports of the same weights by other versions can be found and removed
    name = f"{kind}-{weights}-{h.hexdigest()[:12]}.onnx"
    tmpdir = None
    cache = onnx_cache_dir()
    try:
        os.makedirs(cache, exist_ok=True)
        path = os.path.join(cache, name)
        if os.path.isfile(path):
            return path, None
    except OSError:
        tmpdir = tempfile.TemporaryDirectory(prefix="fer_onnx_")
        cache, path = tmpdir.name, os.path.join(tmpdir.name, name)
    loaded = load_torch_model(kind, checkpoint, classes)
    p = loaded.preprocess
    partial = os.path.join(cache, f".{name}.{os.getpid()}.partial")
    try:
        export_onnx(loaded.export_module(), (1, p.channels, p.size, p.size), partial, output_names=loaded.output_names,
                    metadata=loaded.onnx_metadata())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    if tmpdir is None:
        _remove_stale_exports(cache, kind, weights, keep=name)
    return path, tmpdir


def _remove_stale_exports(cache: str, kind: str, weights: str, keep: str) -> None:
    """Delete cached exports of the same weights made by another export version or torch (DAN's are ~100 MB),
    and files of the earlier ``<kind>-<20 hex>.onnx`` naming, which only older versions wrote."""
    import re

    old_scheme = re.compile(rf"^{re.escape(kind)}-[0-9a-f]{{20}}\.onnx$")
    try:
        names = os.listdir(cache)
    except OSError:
        return
    for other in names:
        if other != keep and (other.startswith(f"{kind}-{weights}-") and other.endswith(".onnx")
                              or old_scheme.match(other)):
            try:
                os.remove(os.path.join(cache, other))
            except OSError:  # another process may be using or removing it: harmless to leave
                pass


class _FrameModel:
    """Shared machinery: backend selection, preprocessing, batching."""

    def __init__(self, kind: str, checkpoint: Optional[str], backend: str, device: str,
                 classes: Any = None, batch_size: int = 32):
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        is_onnx_file = checkpoint is not None and os.fspath(checkpoint).lower().endswith(".onnx")
        if backend == "auto":
            backend = "onnx" if is_onnx_file else _auto_backend(device)
        self.kind, self.backend, self.batch_size = kind, backend, int(batch_size)
        self._onnx = None
        self._module = None
        self._tmpdir = None
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        if backend == "torch" and is_onnx_file:
            raise ConfigError(f"{checkpoint} is an ONNX file: use backend='onnx'")
        if backend == "onnx":
            from fer_perception.runtime.onnx_backend import OnnxModel

            path = os.fspath(checkpoint) if is_onnx_file else None
            if path is None:
                path, self._tmpdir = cached_onnx(kind, checkpoint, classes)
            self.onnx_path = path
            self._onnx = OnnxModel(path, device="cpu" if device == "cpu" else "auto")
            meta = self._onnx.metadata
            if meta.get("fer_perception_kind") != kind:
                raise CheckpointError(
                    f"{checkpoint} holds a {meta.get('fer_perception_kind')!r} model, expected {kind!r}")
            self.labels = tuple(classes) if classes is not None and not isinstance(classes, str) \
                else tuple(meta.get("classes", ()))
            self.preprocess = Preprocess.from_dict(meta.get("preprocess", {}))
            self.meta = dict(meta.get("meta") or {})
            self.device = "cuda" if "CUDAExecutionProvider" in self._onnx.providers else "cpu"
        else:
            loaded = load_torch_model(kind, checkpoint, classes)
            self.device = _resolve_device(device)
            self._module = loaded.module.to(self.device).eval()
            self.labels, self.preprocess, self.meta = loaded.classes, loaded.preprocess, loaded.meta

    def _inputs(self, crops_or_image: Any, boxes: Any = None) -> np.ndarray:
        if boxes is not None:
            crops = crop_boxes(crops_or_image, boxes)
        elif isinstance(crops_or_image, np.ndarray) and crops_or_image.ndim == 4:
            crops = list(crops_or_image)
        elif isinstance(crops_or_image, np.ndarray):
            crops = [crops_or_image]
        else:
            crops = list(crops_or_image)
        return self.preprocess(crops)

    def run_batch(self, x: np.ndarray) -> List[np.ndarray]:
        """Raw network outputs for a preprocessed batch ``(B, C, S, S)``, in chunks of ``batch_size``."""
        chunks: List[List[np.ndarray]] = []
        for start in range(0, len(x), self.batch_size):
            xb = x[start:start + self.batch_size]
            if self._onnx is not None:
                outs = self._onnx.run(xb)
            else:
                import torch

                with torch.inference_mode():
                    res = self._module(torch.from_numpy(xb).to(self.device))
                res = res if isinstance(res, tuple) else (res,)
                outs = [r.float().cpu().numpy() for r in res]
            chunks.append(outs)
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class ExpressionModel(_FrameModel):
    """Facial expression from face crops: ``predict(crops)`` or ``predict(image, boxes)`` -> ``(B, C)``."""

    def __init__(self, kind: str = "light", checkpoint: Optional[str] = None, backend: str = "auto",
                 device: str = "auto", classes: Any = None, batch_size: int = 32):
        if kind not in ("light", "dan"):
            raise ConfigError(f"expression model kind must be 'light' or 'dan', got {kind!r}")
        super().__init__(kind, checkpoint, backend, device, classes, batch_size)

    @property
    def name(self) -> str:
        return f"{self.kind}:{os.path.basename(self.checkpoint) if self.checkpoint else 'demo'}"

    def predict(self, crops_or_image: Any, boxes: Any = None) -> np.ndarray:
        x = self._inputs(crops_or_image, boxes)
        if len(x) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return _softmax(self.run_batch(x)[0])


class AgeGenderPrediction(NamedTuple):
    """Per-face apparent age (years), its standard deviation and the probability of "female"."""

    age: np.ndarray
    age_std: np.ndarray
    p_female: np.ndarray


class AgeGenderModel(_FrameModel):
    """Apparent age and gender from face crops: ``predict(...)`` -> ``AgeGenderPrediction``."""

    def __init__(self, checkpoint: Optional[str] = None, backend: str = "auto", device: str = "auto",
                 batch_size: int = 32):
        super().__init__("agegender", checkpoint, backend, device, None, batch_size)
        self.labels = ("male", "female")

    @property
    def name(self) -> str:
        return f"agegender:{os.path.basename(self.checkpoint) if self.checkpoint else 'demo'}"

    def predict(self, crops_or_image: Any, boxes: Any = None) -> AgeGenderPrediction:
        x = self._inputs(crops_or_image, boxes)
        if len(x) == 0:
            z = np.zeros(0, np.float32)
            return AgeGenderPrediction(z, z.copy(), z.copy())
        gender, age, log_var = self.run_batch(x)
        p = _softmax(gender)[:, 1]
        std = np.exp(0.5 * log_var.astype(np.float64)).astype(np.float32)
        return AgeGenderPrediction(age.astype(np.float32), std, p)
