"""Saving and strictly loading the frame-path model checkpoints (DAN, light expression CNN, age/gender).

Our own files are a plain dict readable with ``torch.load(..., weights_only=True)``::

    {"format": "fer_perception.frame/1", "kind": "dan" | "light" | "agegender",
     "config": {...model constructor arguments...}, "classes": [...], "preprocess": {...},
     "meta": {...provenance...}, "state_dict": {name: tensor}}

Official DAN files (``{'iter', 'model_state_dict', 'optimizer_state_dict'}``) are recognised by
:mod:`fer_perception.models.dan`. Loading is strict: a mismatch raises :class:`CheckpointError` that lists the
missing and unexpected keys and the shape differences.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

from fer_perception.errors import CheckpointError

FORMAT = "fer_perception.frame/1"


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def load_state_dict_strict(model, state: Mapping[str, Any], *, source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly (strips a DataParallel ``module.`` prefix first).

    Delegates to :func:`fer_perception.models.checkpoint.load_state_dict_strict`, whose
    :class:`CheckpointError` lists missing/unexpected keys and shape differences.
    """
    from fer_perception.models.checkpoint import load_state_dict_strict as _strict

    _strict(model, _strip_prefix(state, "module."), source)


def torch_load(path: "str | os.PathLike") -> Any:
    """``torch.load`` with ``weights_only=True`` and errors that name the file."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc


def save_frame_checkpoint(
    path: "str | os.PathLike",
    model,
    *,
    kind: str,
    config: Mapping[str, Any],
    classes=(),
    preprocess: Optional[Mapping[str, Any]] = None,
    meta: Optional[Mapping[str, Any]] = None,
    half: bool = False,
) -> None:
    """Write one of our frame-model checkpoints (``half=True`` stores float tensors as float16 to halve size)."""
    import torch

    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = v.half() if half and v.is_floating_point() else v.clone()
    blob = {
        "format": FORMAT,
        "kind": str(kind),
        "config": dict(config),
        "classes": [str(c) for c in classes],
        "preprocess": dict(preprocess or {}),
        "meta": dict(meta or {}),
        "state_dict": state,
    }
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    torch.save(blob, os.fspath(path))


def is_frame_checkpoint(blob: Any) -> bool:
    return isinstance(blob, dict) and blob.get("format") == FORMAT and "state_dict" in blob


def read_frame_checkpoint(path: "str | os.PathLike", kind: Optional[str] = None) -> Dict[str, Any]:
    """Read one of our frame checkpoints; ``kind`` checks it holds the expected model."""
    blob = torch_load(path)
    if not is_frame_checkpoint(blob):
        keys = sorted(blob)[:10] if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{os.fspath(path)} is not a fer_perception frame checkpoint (top level: {keys})")
    if kind is not None and blob["kind"] != kind:
        raise CheckpointError(f"{os.fspath(path)} holds a {blob['kind']!r} model, expected {kind!r}")
    return blob


def float_state(state: Mapping[str, Any]) -> Dict[str, Any]:
    """The state dict with float16 tensors turned back to float32 (demo weights are stored in half)."""
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
