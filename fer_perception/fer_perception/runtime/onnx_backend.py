"""ONNX export of the frame models and an onnxruntime session that reads back what the export wrote.

:func:`export_onnx` uses the TorchScript-based exporter (``dynamo=False``: it needs no ``onnxscript``), one
dynamic batch axis, and writes our metadata (model kind, class names, preprocessing, config) into the ONNX
``metadata_props`` as JSON strings, so an ``.onnx`` file is self-describing: :class:`OnnxModel` and
:mod:`fer_perception.runtime.frame_models` need nothing else.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from fer_perception.errors import CheckpointError, ConfigError, DependencyError

DEFAULT_OPSET = 17


def export_onnx(
    module,
    input_shape: Tuple[int, ...],
    path: "str | os.PathLike",
    *,
    output_names: Sequence[str],
    metadata: Optional[Mapping[str, Any]] = None,
    input_name: str = "input",
    opset: int = DEFAULT_OPSET,
) -> str:
    """Export ``module`` (put in eval mode) to ``path`` with a dynamic batch axis; returns the path."""
    import torch

    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is a declared dependency
        raise DependencyError("ONNX export needs the 'onnx' package: pip install onnx") from exc
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    module = module.eval()
    dummy = torch.zeros(*input_shape, dtype=torch.float32)
    dynamic = {input_name: {0: "batch"}}
    dynamic.update({name: {0: "batch"} for name in output_names})
    kwargs = dict(input_names=[input_name], output_names=list(output_names), dynamic_axes=dynamic,
                  opset_version=int(opset), do_constant_folding=True)
    import inspect

    if "dynamo" in inspect.signature(torch.onnx.export).parameters:  # torch >= 2.5: keep the TorchScript path
        kwargs["dynamo"] = False
    with torch.no_grad():
        torch.onnx.export(module, (dummy,), path, **kwargs)
    model = onnx.load(path)
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key = str(key)
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _providers(device: str) -> List[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ConfigError(f"device 'cuda' asked for, but onnxruntime offers only {available}")
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModel:
    """An onnxruntime session over one exported frame model: ``run(x) -> list of outputs``, ``metadata``.

    ``threads`` sets the intra-op threads (0: onnxruntime's default, one per physical core); ``spin=False``
    lets idle workers sleep. Defaults are the fastest for one face at a time on a few cores (DAN, 2 threads,
    bench/bench_frame_models.py): graph optimisation ``ORT_ENABLE_ALL`` (its NCHWc conv layout and fusions
    take DAN from ~29 ms at ``ORT_ENABLE_EXTENDED`` to ~20 ms) and spinning workers (a batch-1 graph is ~60
    short ops; spinning saves a wake-up per op, worth ~0.3-1 ms, at the cost of busy cores between calls).
    Sequential execution, one inter-op thread: the graph is a chain, parallel branches would only compete.
    """

    def __init__(self, path: "str | os.PathLike", device: str = "auto", threads: int = 0, spin: bool = True):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover
            raise DependencyError("the onnx backend needs onnxruntime: pip install onnxruntime") from exc
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise CheckpointError(f"ONNX file not found: {self.path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if not spin:  # idle worker threads sleep instead of spinning (shared CPUs, interleaved benchmarks)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(self.path, options, providers=_providers(device))
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(f"cannot load ONNX model {self.path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        raw = self.session.get_modelmeta().custom_metadata_map
        self.metadata: Dict[str, Any] = {}
        for key, value in raw.items():
            try:
                self.metadata[key] = json.loads(value)
            except ValueError:
                self.metadata[key] = value
        self.providers = self.session.get_providers()

    def run(self, x: np.ndarray) -> List[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(self.output_names, {self.input_name: x})
