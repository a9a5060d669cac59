"""Spiking-FER checkpoints: load official Lightning files and our own, save ours, strict state-dict loading.

Three layouts are read, always with ``torch.load(..., weights_only=True)`` (no arbitrary unpickling):

- **official** Barchid/spiking-fer Lightning checkpoints: ``{"state_dict": {"model.encoder...": tensor},
  "hyper_parameters": {learning_rate, timesteps, n_classes, epochs, mode}, ...}``; ``mode`` containing
  ``"snn"`` means the spiking model, anything else the CNN baseline (as in the official ``FerModule``).
- **ours** (:func:`save_checkpoint`): ``{"format": FORMAT, "version": 1, "state_dict": {...}, "meta": {...}}``
  where ``meta`` is :meth:`CheckpointMeta.to_dict` (kind, classes, sizes, representation, provenance).
- a **bare state dict** (``{"encoder.conv1.weight": tensor, ...}``, with or without ``model.``): kind, classes
  and width are inferred from the shapes; timesteps default to 6 for the SNN.

Loading is strict: missing keys, unexpected keys and shape mismatches raise :class:`CheckpointError` naming
the first few of each and their counts. :func:`load_state_dict_strict` is the generic helper other models
(DAN, age/gender) reuse.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..errors import CheckpointError, ConfigError
from ..labels import FERDVS_CLASSES

__all__ = [
    "FORMAT",
    "CheckpointMeta",
    "load_checkpoint",
    "save_checkpoint",
    "read_checkpoint_file",
    "load_state_dict_strict",
    "check_state_dict",
    "strip_prefix",
    "default_classes",
]

#: Value of the ``format`` field of our checkpoints.
FORMAT = "fer_perception.spiking_fer"
FORMAT_VERSION = 1

_SHOW = 5  # how many offending keys an error message lists

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class CheckpointMeta:
    """What a Spiking-FER checkpoint says about its model, its input and where it comes from.

    ``source`` is ``"official"``, ``"fer_perception"`` or ``"state_dict"`` (how the file was laid out);
    ``representation`` holds the event-representation parameters the model was trained with
    (``events.representation.SpikingFerConfig`` fields); ``provenance`` holds ``dataset``, ``fold``,
    ``split``, ``commit``, ``date`` and ``synthetic`` (bool: trained on synthetic data only).
    """

    kind: str = "snn"
    classes: Tuple[str, ...] = FERDVS_CLASSES
    n_classes: int = 6
    timesteps: int = 6
    width: float = 1.0
    in_channels: int = 2
    input_size: int = 128
    representation: Dict[str, Any] = field(default_factory=dict)
    provenance: Dict[str, Any] = field(default_factory=dict)
    hyper_parameters: Dict[str, Any] = field(default_factory=dict)
    source: str = "fer_perception"
    path: Optional[str] = None

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        if len(self.classes) != self.n_classes:
            raise CheckpointError(
                f"checkpoint meta lists {len(self.classes)} classes {list(self.classes)} "
                f"but n_classes is {self.n_classes}"
            )
        self.model_config()  # validates kind and sizes
        synthetic = self.provenance.get("synthetic", False)
        if not isinstance(synthetic, bool):
            raise CheckpointError(f"checkpoint provenance 'synthetic' must be a bool, got {synthetic!r}")

    @property
    def synthetic(self) -> bool:
        """True when the weights were trained on synthetic data only (demo weights)."""
        return bool(self.provenance.get("synthetic", False))

    def model_config(self):
        """The :class:`~fer_perception.models.spiking_fer.ModelConfig` to rebuild the model."""
        from .spiking_fer import ModelConfig

        try:
            return ModelConfig(
                self.kind, int(self.n_classes), int(self.timesteps), float(self.width),
                int(self.in_channels), int(self.input_size),
            )
        except (ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint meta describes an invalid model: {exc}") from exc

    def to_dict(self) -> Dict[str, Any]:
        """Plain-data dict (what our checkpoint files and the JSON model cards store); ``path`` left out."""
        out = dataclasses.asdict(self)
        out.pop("path")
        out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Optional[str] = None) -> "CheckpointMeta":
        """Inverse of :meth:`to_dict`; unknown fields raise :class:`CheckpointError`."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"checkpoint meta must be a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"path"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CheckpointError(f"checkpoint meta has unknown fields {unknown}")
        kwargs = dict(data)
        try:
            return cls(path=path, **kwargs)
        except TypeError as exc:
            raise CheckpointError(f"checkpoint meta is malformed: {exc}") from exc


def strip_prefix(state_dict: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    """``state_dict`` with ``prefix`` removed from every key that has it (others kept as they are)."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    more = f", ... ({len(keys)} in all)" if len(keys) > _SHOW else f" ({len(keys)})"
    return shown + more


def check_state_dict(model, state_dict: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` has exactly ``model``'s keys and shapes."""
    import torch

    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: state_dict must be a dict, got {type(state_dict).__name__}")
    expected = model.state_dict()
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and isinstance(state_dict[k], torch.Tensor) and state_dict[k].shape != v.shape
    ]
    problems = []
    if not_tensors:
        problems.append(f"values that are not tensors: {_listing(not_tensors)}")
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listing(shapes)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match {type(model).__name__} "
            f"({len(expected)} keys expected, {len(state_dict)} given): " + "; ".join(problems)
        )


def load_state_dict_strict(model, state_dict: Mapping[str, Any], source: str = "checkpoint"):
    """Load ``state_dict`` into ``model`` strictly (keys and shapes checked first); returns ``model``."""
    check_state_dict(model, state_dict, source)
    try:
        model.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as exc:  # dtype or other incompatibilities load_state_dict itself rejects
        raise CheckpointError(f"{source}: cannot load state_dict into {type(model).__name__}: {exc}") from exc
    return model


def _unpickler_detail(text: str) -> str:
    """The specific reason in torch's weights-only error text (its generic advice left out)."""
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
        text = text.split("Check the documentation", 1)[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines)[:300] if lines else "unreadable pickle"


def read_checkpoint_file(path: PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure turned into :class:`CheckpointError`."""
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file not found: {p}")
    try:
        return torch.load(str(p), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(str(exc))
        if "global" in detail.lower():  # a class or function outside the tensor/container allowlist
            raise CheckpointError(
                f"checkpoint {p} cannot be loaded safely (torch.load weights_only=True refused it): {detail}"
            ) from exc
        raise CheckpointError(f"checkpoint {p} is corrupt or not a torch file: {detail}") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as exc:
        raise CheckpointError(f"checkpoint {p} is corrupt or not a torch file: {exc}") from exc


def _infer_from_shapes(sd: Mapping[str, Any]) -> Dict[str, Any]:
    """kind, n_classes, width, in_channels (and timesteps for the CNN) from a stripped state dict."""
    for key in ("encoder.conv1.weight", "fc.weight"):
        if key not in sd or getattr(sd[key], "dim", lambda: 0)() < 2:
            raise CheckpointError(f"state_dict has no {key!r}: not a Spiking-FER model")
    conv1, fc = sd["encoder.conv1.weight"], sd["fc.weight"]
    kind = "snn" if "encoder.fc.0.weight" in sd else "cnn"
    out: Dict[str, Any] = {"kind": kind, "n_classes": int(fc.shape[0]), "width": int(conv1.shape[0]) / 64.0}
    if kind == "snn":
        out["in_channels"] = int(conv1.shape[1])
    else:
        channels = int(conv1.shape[1])
        if channels % 2:
            raise CheckpointError(f"CNN conv1 takes {channels} channels: expected 2*T (two polarities)")
        out["in_channels"] = 2
        out["timesteps"] = channels // 2
    return out


def default_classes(n_classes: int) -> Tuple[str, ...]:
    """FerDVS class names for 6 classes, else ``class_0 .. class_{n-1}``."""
    if n_classes == len(FERDVS_CLASSES):
        return FERDVS_CLASSES
    return tuple(f"class_{i}" for i in range(n_classes))


def _meta_from_official(ckpt: Mapping[str, Any], sd: Mapping[str, Any], path: str) -> CheckpointMeta:
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, Mapping):
        raise CheckpointError(f"{path}: hyper_parameters must be a dict, got {type(hp).__name__}")
    missing = [k for k in ("timesteps", "n_classes") if k not in hp]
    if missing:
        raise CheckpointError(f"{path}: hyper_parameters lack {missing} (have {sorted(hp)})")
    inferred = _infer_from_shapes(sd)
    kind = "snn" if "snn" in str(hp.get("mode", "snn")) else "cnn"
    if kind != inferred["kind"]:
        raise CheckpointError(
            f"{path}: hyper_parameters mode {hp.get('mode')!r} says {kind} but the weights are a {inferred['kind']}"
        )
    n_classes, timesteps = int(hp["n_classes"]), int(hp["timesteps"])
    plain_hp = {k: v for k, v in hp.items() if isinstance(v, (str, int, float, bool, type(None)))}
    return CheckpointMeta(
        kind=kind,
        classes=default_classes(n_classes),
        n_classes=n_classes,
        timesteps=timesteps,
        width=inferred["width"],
        in_channels=inferred["in_channels"],
        input_size=128,
        representation={"events_per_frame": 2500, "timesteps": timesteps, "size": 128, "binarize": True},
        provenance={"dataset": None, "source": "official Barchid/spiking-fer checkpoint", "synthetic": False},
        hyper_parameters=plain_hp,
        source="official",
        path=path,
    )


def load_checkpoint(path: PathLike, kind: Optional[str] = None, map_location: Any = "cpu"):
    """Load a Spiking-FER checkpoint (official Lightning, ours, or a bare state dict) strictly.

    Returns ``(model, CheckpointMeta)``; the model is in eval mode on ``map_location``. ``kind`` (``"snn"`` or
    ``"cnn"``), when given, must match the file. Raises :class:`CheckpointError` on a missing or corrupt file,
    a wrong layout or kind, and on missing/unexpected keys or shape mismatches (named, with counts).
    """
    from .spiking_fer import build_model

    if kind is not None and kind not in ("snn", "cnn"):
        raise CheckpointError(f"checkpoint kind must be 'snn' or 'cnn', got {kind!r}")
    p = str(path)
    ckpt = read_checkpoint_file(path, map_location)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{p}: a checkpoint must be a dict, got {type(ckpt).__name__}")

    if "meta" in ckpt and "state_dict" in ckpt:
        if ckpt.get("format") != FORMAT:
            raise CheckpointError(f"{p}: format {ckpt.get('format')!r} is not {FORMAT!r}")
        version = ckpt.get("version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{p}: format version {ckpt.get('version')} is newer than {FORMAT_VERSION}")
        sd = ckpt["state_dict"]
        meta = CheckpointMeta.from_dict(ckpt["meta"], path=p)
    elif "state_dict" in ckpt:
        sd = ckpt["state_dict"]
        if not isinstance(sd, Mapping):
            raise CheckpointError(f"{p}: state_dict must be a dict, got {type(sd).__name__}")
        sd = strip_prefix(sd, "model.")
        if "hyper_parameters" not in ckpt:
            raise CheckpointError(f"{p}: Lightning checkpoint without hyper_parameters (keys: {sorted(ckpt)})")
        meta = _meta_from_official(ckpt, sd, p)
    elif ckpt and all(isinstance(k, str) for k in ckpt) and "encoder.conv1.weight" in strip_prefix(ckpt, "model."):
        sd = strip_prefix(ckpt, "model.")
        inferred = _infer_from_shapes(sd)
        meta = CheckpointMeta(
            classes=default_classes(inferred["n_classes"]), source="state_dict", path=p,
            provenance={"synthetic": False}, **inferred,
        )
    else:
        raise CheckpointError(
            f"{p}: not a Spiking-FER checkpoint (top-level keys: {_listing(sorted(map(str, ckpt)))})"
        )

    if kind is not None and meta.kind != kind:
        raise CheckpointError(f"{p}: holds a {meta.kind!r} model, {kind!r} was asked for")
    cfg = meta.model_config()
    model = build_model(cfg.kind, cfg.n_classes, cfg.timesteps, cfg.width, cfg.in_channels, cfg.input_size)
    load_state_dict_strict(model, sd, source=f"checkpoint {p}")
    model.to(map_location if map_location is not None else "cpu")
    model.eval()
    return model, meta


def save_checkpoint(
    path: PathLike, model, meta: Union[CheckpointMeta, Mapping[str, Any], None] = None
) -> CheckpointMeta:
    """Save ``model`` and ``meta`` in our format (atomically); returns the meta written.

    ``meta`` may be a :class:`CheckpointMeta` or a dict of its fields; the model's own configuration (kind,
    n_classes, timesteps, width, in_channels, input_size) is filled in and must agree with what ``meta`` says.
    Tensors are saved on the CPU. The file loads with ``torch.load(weights_only=True)``.
    """
    import torch

    from .spiking_fer import model_config

    cfg = model_config(model)
    given: Dict[str, Any]
    if meta is None:
        given = {}
    elif isinstance(meta, CheckpointMeta):
        given = meta.to_dict()
    elif isinstance(meta, Mapping):
        given = dict(meta)
    else:
        raise CheckpointError(f"checkpoint meta must be a CheckpointMeta or dict, got {type(meta).__name__}")
    own = {
        "kind": cfg.kind, "n_classes": cfg.n_classes, "timesteps": cfg.timesteps, "width": cfg.width,
        "in_channels": cfg.in_channels, "input_size": cfg.input_size,
    }
    clashes = [f"{k}: meta {given[k]!r} vs model {v!r}" for k, v in own.items() if k in given and given[k] != v]
    if clashes:
        raise CheckpointError(f"checkpoint meta disagrees with the model: {'; '.join(clashes)}")
    given.update(own)
    given.setdefault("classes", list(default_classes(cfg.n_classes)))
    given.setdefault("source", "fer_perception")
    given.pop("path", None)
    final = CheckpointMeta.from_dict(given, path=str(path))
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": final.to_dict(),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=str(target.parent))
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return final
