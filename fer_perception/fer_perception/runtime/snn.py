"""Spiking-FER inference runtime: device and precision choice, warm-up, batched windows, streaming, energy.

:class:`SnnRunner` wraps a :class:`SpikingFER` (or :class:`CNNBaseline`) or a checkpoint path:

- ``device="auto"`` takes CUDA when available, else the CPU; ``threads`` sets torch's CPU thread count
  (process-wide);
- ``half=None`` uses half precision on CUDA only, and only if it agrees with fp32 on warm-up windows
  (identical argmax, probabilities within ``half_tolerance``); ``half=True`` asks for it on any device
  (bfloat16 on the CPU) under the same check (SNN: only the convolutions run in half precision, membrane
  potentials stay fp32); when the check fails the runner stays in fp32 and says why
  (:attr:`SnnRunner.half_rejected`);
- ``int8=None`` (auto) runs the SNN's wide convolutions after the stem, on CPUs with int8 dot-product
  instructions (VNNI/AMX), as fp32-accurate int8 digit convolutions (:mod:`~fer_perception.runtime.digit_conv`:
  the spikes are exact in uint8 and each weight is split into three int8 digits, so the result has fp32's
  accuracy, at about 1.2-1.5x the speed of fp32 convolutions); it is kept only if the warm-up windows give the
  fp32 logits (within 1e-4 relative, same argmax), else the runner says why (:attr:`SnnRunner.int8_rejected`).
  ``int8=True`` tries it on any CPU, ``int8=False`` turns it off; never with half precision or on CUDA;
- ``cuda_graphs=None`` (auto) replays the stats-free window forward (``predict(stats=False)``, what the
  pipeline and the node call) from CUDA graphs on a CUDA device, captured once per batch size
  (:mod:`~fer_perception.runtime.cuda_graphs`: one launch instead of ~400 small kernels, which bound a
  batch-1 window on a GPU); kept only if the replay gives the eager logits on the warm-up windows, else
  :attr:`SnnRunner.cuda_graphs_rejected` says why;
- every window starts from a fresh network state; faces are batched;
- the SNN runs through :class:`~fer_perception.runtime.snn_fused.FusedSpikingFER` (BN folded, T folded into
  the batch, in-place IF neurons, readout summed once), equal to the SpikingJelly forward up to float
  rounding (tested).

``predict(frames (B, T, 2, S, S)) -> SnnOutput``: softmax probabilities, logits, per-layer firing rates and
the energy estimate of ``runtime/snn_energy.py`` (SNN accumulates from the actual spikes x fan-out at
0.9 pJ, readout MACs at 4.6 pJ; the CNN baseline's MACs at 4.6 pJ for the same window).

:class:`StreamingSnn` feeds one 2,500-event frame at a time (single step, state kept) and answers after
every T-th frame with the same output as the windowed call, so a live node spreads the compute over the
window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConfigError, FerPerceptionError

__all__ = ["SnnInputError", "SnnOutput", "SnnRunner", "StreamingSnn", "resolve_device"]


class SnnInputError(FerPerceptionError, ValueError):
    """Frames given to the SNN runtime have the wrong type, shape, size or values."""


@dataclass
class SnnOutput:
    """Result of one window for B faces."""

    probabilities: np.ndarray  #: (B, C) float32 softmax of the logits
    logits: np.ndarray  #: (B, C) float32
    classes: Tuple[str, ...]  #: class names, in the logits' order
    firing_rates: Dict[str, np.ndarray] = field(default_factory=dict)  #: layer -> (B,) spikes/neuron/step
    energy: Optional[Any] = None  #: :class:`~fer_perception.runtime.snn_energy.EnergyEstimate` (SNN only)

    @property
    def labels(self) -> Tuple[str, ...]:
        """Most probable class of every face."""
        return tuple(self.classes[i] for i in np.argmax(self.probabilities, axis=1))

    @property
    def mean_firing_rate(self) -> np.ndarray:
        """(B,) mean of the per-layer firing rates (0 for a CNN)."""
        if not self.firing_rates:
            return np.zeros(self.probabilities.shape[0], dtype=np.float64)
        return np.mean(np.stack(list(self.firing_rates.values())), axis=0)


def resolve_device(device: Union[str, Any] = "auto"):
    """``"auto"`` -> CUDA if available else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device."""
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(str(device))
        except RuntimeError as exc:
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available (use 'auto' or 'cpu')")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return dev


class SnnRunner:
    """Batched Spiking-FER inference on CPU or CUDA (see the module docstring)."""

    def __init__(
        self,
        model_or_checkpoint: Any,
        device: Union[str, Any] = "auto",
        half: Optional[bool] = None,
        threads: Optional[int] = None,
        classes: Optional[Sequence[str]] = None,
        warmup: int = 2,
        half_tolerance: float = 0.02,
        max_batch: int = 64,
        fused: bool = True,
        int8: Optional[bool] = None,
        cuda_graphs: Optional[bool] = None,
    ) -> None:
        import torch
        from torch import nn

        from ..models.checkpoint import default_classes, load_checkpoint
        from ..models.spiking_fer import model_config
        from .snn_fused import FusedSpikingFER

        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
            torch.set_num_threads(threads)
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        self.meta = None
        if isinstance(model_or_checkpoint, (str, os.PathLike)):
            model, self.meta = load_checkpoint(model_or_checkpoint)
            if classes is None:
                classes = self.meta.classes
        elif isinstance(model_or_checkpoint, nn.Module):
            model = model_or_checkpoint
        else:
            raise ConfigError(
                "SnnRunner needs a SpikingFER/CNNBaseline or a checkpoint path, "
                f"got {type(model_or_checkpoint).__name__}"
            )
        self.config = model_config(model)
        if classes is None:
            classes = default_classes(self.config.n_classes)
        self.classes: Tuple[str, ...] = tuple(classes)
        if len(self.classes) != self.config.n_classes:
            raise ConfigError(f"{len(self.classes)} class names given for a {self.config.n_classes}-class model")
        self.kind = self.config.kind
        self.device = resolve_device(device)
        self.max_batch = int(max_batch)
        self.model = model.eval().to(self.device)
        self.fused = bool(fused and self.kind == "snn")
        self._net: nn.Module = FusedSpikingFER(self.model).eval() if self.fused else self.model
        self.dtype = torch.float32  # dtype of the network input
        self.compute_dtype = torch.float32  # dtype of the convolutions
        self.half_rejected: Optional[str] = None
        self.half_max_diff: Optional[float] = None
        self.int8_rejected: Optional[str] = None
        self.int8_max_diff: Optional[float] = None
        self._graphed = None  # GraphedCallable of the stats-free window forward (CUDA)
        self.cuda_graphs_rejected: Optional[str] = None

        warm = self._warmup_frames()
        for _ in range(max(1, warmup)):  # batch 1 (one face, the common case) and batch 2
            self._logits(warm[:, :1], stats=True)
            reference = self._logits(warm, stats=False)[0]
        want_half = (self.device.type == "cuda") if half is None else bool(half)
        if want_half:
            self._try_half(warm, reference, half_tolerance)
        if int8 is None:
            from .digit_conv import has_int8_dot_product

            if self.device.type == "cpu" and self.fused and not self.half:
                if has_int8_dot_product():
                    self._try_int8(warm, reference)
                else:
                    self.int8_rejected = ("this CPU has no int8 dot-product instructions (VNNI/AMX), where int8 "
                                          "digits would be slower than fp32 (int8=True forces them)")
        elif int8:
            self._try_int8(warm, reference)
        if cuda_graphs or (cuda_graphs is None and self.device.type == "cuda"):
            self._try_cuda_graphs(warm)

    # ----------------------------------------------------------------------------------------------- set-up
    def _warmup_frames(self):
        import torch

        g = torch.Generator().manual_seed(1234)
        shape = (self.config.timesteps, 2, self.config.in_channels, self.config.input_size, self.config.input_size)
        density = torch.tensor([0.05, 0.2]).view(1, 2, 1, 1, 1)
        return (torch.rand(shape, generator=g) < density).float().to(self.device)

    def _try_half(self, warm, reference, tolerance: float) -> None:
        import torch

        half_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self._set_precision(half_dtype)
        try:
            low = self._logits(warm, stats=False)[0]
        except RuntimeError as exc:  # op not implemented for this dtype on this device
            self._revert_half(f"{half_dtype} forward failed: {exc}")
            return
        p32 = torch.softmax(reference.float(), dim=1)
        p16 = torch.softmax(low.float(), dim=1)
        diff = float((p32 - p16).abs().max())
        self.half_max_diff = diff
        if not torch.isfinite(low.float()).all():
            self._revert_half(f"{half_dtype} logits are not finite")
        elif not torch.equal(p32.argmax(1), p16.argmax(1)):
            self._revert_half(f"{half_dtype} changes the predicted class on the warm-up windows")
        elif diff > tolerance:
            self._revert_half(f"{half_dtype} probabilities differ by {diff:.4f} > {tolerance}")

    def _try_int8(self, warm, reference) -> None:
        """Switch the fused SNN to int8 digit convolutions if they reproduce the fp32 logits on ``warm``."""
        import torch

        from . import digit_conv

        if not self.fused:
            self.int8_rejected = "int8 digit convolutions need the fused SNN graph (an SNN with fused=True)"
            return
        if self.device.type != "cpu":
            self.int8_rejected = "int8 digit convolutions run on the CPU only"
            return
        if self.half:
            self.int8_rejected = "half precision is in use"
            return
        if not digit_conv.available():
            self.int8_rejected = "this PyTorch build has no oneDNN int8 convolution (torch.ops.onednn.qconv_*)"
            return
        try:
            self._net.set_int8(True)
            if not self._net.int8:
                self.int8_rejected = ("no convolution of this network is wide enough for int8 digits to pay off "
                                      "(they need >= 64 input channels and >= 2 M multiply-adds per step)")
                return
            got = self._logits(warm, stats=False)[0]
            self._logits(warm[:, :1], stats=True)  # and the batch-1 path, so that its first real call is warm
        except Exception as exc:  # noqa: BLE001 - e.g. a oneDNN build without a kernel for this CPU: stay fp32
            self._net.set_int8(False)
            self.int8_rejected = f"int8 forward failed: {exc}"
            return
        ref = reference.float()
        diff = float((got.float() - ref).abs().max())
        self.int8_max_diff = diff
        scale = float(ref.abs().max())
        if not torch.isfinite(got).all() or diff > 1e-4 * max(scale, 1e-6) or not torch.equal(
                got.argmax(1), ref.argmax(1)):
            self._net.set_int8(False)
            self.int8_rejected = (f"int8 digit convolutions disagree with fp32 on the warm-up windows "
                                  f"(max logit difference {diff:.3g}, logits up to {scale:.3g})")

    def _try_cuda_graphs(self, warm) -> None:
        """Replay the stats-free window forward from CUDA graphs if they give the eager logits on ``warm``."""
        import torch

        if self.device.type != "cuda":
            self.cuda_graphs_rejected = "CUDA graphs need a CUDA device"
            return
        if self.kind == "snn" and not self.fused:
            self.cuda_graphs_rejected = "CUDA graphs need the fused SNN graph (SpikingJelly's neurons keep state)"
            return
        from .cuda_graphs import GraphedCallable

        try:
            graphed = GraphedCallable(self._net)
            eager = self._logits(warm, stats=False)[0]
            with torch.inference_mode():
                got = graphed(warm.to(self.device, self.dtype)).float()
                got1 = graphed(warm[:, :1].to(self.device, self.dtype)).float()
            eager1 = self._logits(warm[:, :1], stats=False)[0]
        except Exception as exc:  # noqa: BLE001 - capture unsupported here (driver, op): stay eager
            self.cuda_graphs_rejected = f"CUDA graph capture failed: {exc}"
            return
        if not (torch.allclose(got, eager, rtol=1e-5, atol=1e-5 * float(eager.abs().max()))
                and torch.allclose(got1, eager1, rtol=1e-5, atol=1e-5 * float(eager1.abs().max()))):
            self.cuda_graphs_rejected = "CUDA graph replay disagrees with the eager forward on the warm-up windows"
            return
        self._graphed = graphed

    @property
    def cuda_graphs(self) -> bool:
        """Whether stats-free windows (``predict(stats=False)``) replay captured CUDA graphs."""
        return self._graphed is not None

    @property
    def int8(self) -> bool:
        """Whether the SNN's convolutions after the stem run as fp32-accurate int8 digits (CPU)."""
        return bool(self.fused and self._net.int8)

    def _revert_half(self, reason: str) -> None:
        import torch

        self._set_precision(torch.float32)
        self.half_rejected = reason

    def _set_precision(self, dtype) -> None:
        """Fused SNN: convs in ``dtype``, state fp32 (input stays fp32). CNN: the whole model in ``dtype``."""
        self._graphed = None  # captured for the old precision
        self.compute_dtype = dtype
        if self.fused:
            self._net.set_compute_dtype(dtype)
        else:
            self._net.to(dtype)
            self.dtype = dtype

    @property
    def half(self) -> bool:
        """Whether the runner computes in half precision (float16 on CUDA, bfloat16 on the CPU)."""
        import torch

        return self.compute_dtype != torch.float32

    # ------------------------------------------------------------------------------------------- inference
    def _as_tensor(self, frames: Any):
        import torch

        if isinstance(frames, np.ndarray):
            if frames.dtype.kind not in "biuf":
                raise SnnInputError(f"frames must be numeric or bool, got dtype {frames.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        elif isinstance(frames, torch.Tensor):
            if frames.is_complex():
                raise SnnInputError(f"frames must be real, got {frames.dtype}")
            x = frames.detach().float()
        else:
            raise SnnInputError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
        if x.numel() and not torch.isfinite(x.sum()):  # one NaN/inf anywhere makes the sum non-finite
            raise SnnInputError("frames contain NaN or infinite values (or values whose sum overflows)")
        return x

    def _check_frames(self, frames: Any):
        """(B, T, C, S, S) float32 tensor from a window batch (or one window (T, C, S, S))."""
        x = self._as_tensor(frames)
        if x.dim() == 4:
            x = x.unsqueeze(0)
        cfg = self.config
        expected = (cfg.timesteps, cfg.in_channels, cfg.input_size, cfg.input_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise SnnInputError(
                f"frames must have shape (B, {', '.join(map(str, expected))}) = (faces, T, polarities, S, S), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise SnnInputError("frames hold no face (batch size 0)")
        return x

    def _check_frame(self, frame: Any):
        """(B, C, S, S) float32 tensor from one step's frames (or one face's frame (C, S, S))."""
        x = self._as_tensor(frame)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        cfg = self.config
        expected = (cfg.in_channels, cfg.input_size, cfg.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected or x.shape[0] == 0:
            raise SnnInputError(
                f"a streamed frame must have shape (B, {', '.join(map(str, expected))}) = (faces, polarities, S, S) "
                f"with B >= 1, got {tuple(x.shape)}"
            )
        return x

    def _logits(self, x_tb, stats: bool):
        """Logits of a window already laid out (T, B, C, S, S) on the device; plus LayerStats or None."""
        import torch

        from .snn_fused import LayerStats

        with torch.inference_mode():
            x_tb = x_tb.to(self.device, self.dtype)
            if self._graphed is not None and not stats:
                return self._graphed(x_tb).float(), None
            if self.fused:
                st = LayerStats(x_tb.shape[1], self.device) if stats else None
                return self._net(x_tb, st).float(), st
            if self.kind == "snn":
                return self._net(x_tb).float(), None
            return self._net(x_tb).float(), None

    def predict(self, frames: Any, stats: bool = True) -> SnnOutput:
        """Classify B windows ``frames (B, T, 2, S, S)`` (numpy or torch; ``(T, 2, S, S)`` = one face).

        ``stats=False`` skips the firing rates and the energy estimate (slightly faster).
        """
        x = self._check_frames(frames)
        outputs = [self._predict_chunk(x[i:i + self.max_batch], stats) for i in range(0, x.shape[0], self.max_batch)]
        if len(outputs) == 1:
            return outputs[0]
        return _concat(outputs)

    def _predict_chunk(self, x, stats: bool) -> SnnOutput:
        logits, st = self._logits(x.permute(1, 0, 2, 3, 4), stats)
        return self._output(logits, st, self.config.timesteps)

    def _output(self, logits, st, steps: int) -> SnnOutput:
        import torch

        from .snn_energy import EnergyEstimate, cnn_baseline_macs

        probs = torch.softmax(logits, dim=1)
        firing: Dict[str, np.ndarray] = {}
        energy = None
        if st is not None:
            st.finalize()
            for name, count in st.spikes.items():
                firing[name] = count / (st.neurons[name] * steps)
            sops = dict(st.sops)
            cfg = self.config
            energy = EnergyEstimate(
                snn_sops=np.sum(np.stack(list(sops.values())), axis=0),
                snn_macs=int(self.model.fc.weight.numel()),
                cnn_macs=cnn_baseline_macs(cfg.n_classes, cfg.timesteps, cfg.width, cfg.input_size, cfg.in_channels),
                sops_per_layer=sops,
            )
        return SnnOutput(
            probabilities=probs.cpu().numpy().astype(np.float32),
            logits=logits.cpu().numpy().astype(np.float32),
            classes=self.classes,
            firing_rates=firing,
            energy=energy,
        )


def _concat(outputs: Sequence[SnnOutput]) -> SnnOutput:
    from .snn_energy import EnergyEstimate

    first = outputs[0]
    energy = None
    if first.energy is not None:
        energy = EnergyEstimate(
            snn_sops=np.concatenate([o.energy.snn_sops for o in outputs]),
            snn_macs=first.energy.snn_macs,
            cnn_macs=first.energy.cnn_macs,
            sops_per_layer={k: np.concatenate([o.energy.sops_per_layer[k] for o in outputs])
                            for k in first.energy.sops_per_layer},
        )
    return SnnOutput(
        probabilities=np.concatenate([o.probabilities for o in outputs]),
        logits=np.concatenate([o.logits for o in outputs]),
        classes=first.classes,
        firing_rates={k: np.concatenate([o.firing_rates[k] for o in outputs]) for k in first.firing_rates},
        energy=energy,
    )


class StreamingSnn:
    """Single-step Spiking-FER: one frame ``(B, 2, S, S)`` per :meth:`push`, an :class:`SnnOutput` every T frames.

    The neuron states are kept between frames and reset after every T-th frame; the output equals
    ``runner.predict`` on the T frames stacked (tested). Needs an SNN runner with the fused graph.
    """

    def __init__(self, runner: SnnRunner, stats: bool = True) -> None:
        if not runner.fused:
            raise ConfigError("StreamingSnn needs an SNN runner built with fused=True")
        self.runner = runner
        self.stats = stats
        self._state: Dict[str, Any] = {}
        self._st = None
        self._batch: Optional[int] = None
        self.steps_done = 0

    @property
    def timesteps(self) -> int:
        return self.runner.config.timesteps

    def reset(self) -> None:
        """Drop the current partial window."""
        self._state = {}
        self._st = None
        self._batch = None
        self.steps_done = 0

    def push(self, frame: Any) -> Optional[SnnOutput]:
        """Feed one frame ``(B, 2, S, S)`` (or ``(2, S, S)``); returns the window's output after the T-th frame."""
        import torch

        from .snn_fused import LayerStats

        runner = self.runner
        x = runner._check_frame(frame)
        if self._batch is None:
            self._batch = int(x.shape[0])
            self._st = LayerStats(self._batch, runner.device) if self.stats else None
        elif x.shape[0] != self._batch:
            raise SnnInputError(f"batch changed inside a window: {self._batch} faces, then {x.shape[0]}")
        with torch.inference_mode():
            runner._net.step(x.to(runner.device, runner.dtype), self._state, self._st)
            self.steps_done += 1
            if self.steps_done < self.timesteps:
                return None
            logits = runner._net.readout(self._state, self.timesteps).float()
        st = self._st
        self.reset()
        return runner._output(logits, st, self.timesteps)
