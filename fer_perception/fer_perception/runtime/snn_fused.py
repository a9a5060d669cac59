"""Inference-only form of :class:`SpikingFER`: same outputs as the SpikingJelly forward, less overhead.

What it changes (nothing that alters the maths, only float rounding):

- every BatchNorm is folded into the conv before it (``w * gamma / sqrt(var + eps)``, bias
  ``beta - mean * gamma / sqrt(var + eps)``), so each conv+BN is one ``F.conv2d`` with bias;
- the T steps are folded into the batch for every stateless op (convs, pooling): ``(T*B, C, H, W)``;
- the IF neurons run in place on the conv output with three tensor ops per step (charge, fire, reset),
  the same arithmetic as SpikingJelly's IF (``h = v + x``, spike ``h >= 1``, hard reset to 0), without
  stacking step outputs; the SEW ADD is done in place; the max pool (on spikes) runs separably;
- the readout uses ``fc(sum_t encoder.fc(f_t)) = fc(W1 (sum_t f_t) + T b1)``: the Linear runs once per
  window, not T times (dropout is the identity at inference; the infinite-threshold neuron never fires).

On the CPU (with numba) every IF layer after the stem is one compiled pass
(:func:`~fer_perception.runtime.spike_kernels.fire`) that fires, resets, does the SEW ADD and, with int8 digit
convolutions (:meth:`FusedSpikingFER.set_int8`), adds up the digit partial sums; the spikes between layers are
channels-last tensors, uint8 for the digit convolutions, else float32. Bit for bit what the tensor ops compute
on the same conv outputs, in a fraction of the calls.

It runs single windows (:meth:`FusedSpikingFER.forward`, input ``(T, B, C, H, W)``) or one step at a time
with explicit state (:meth:`FusedSpikingFER.step`), which reproduces the windowed result: the streaming mode.
Optionally it counts spikes per layer and the synaptic operations of every layer for the energy estimate
(``runtime/snn_energy.py``). Pure torch: runs on CPU and CUDA; the convolutions can run in half precision
(:meth:`FusedSpikingFER.set_compute_dtype`) while membrane potentials and the readout stay fp32.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.fold import fold_conv_bn
from .snn_energy import fanout_map

__all__ = ["FusedSpikingFER", "if_steps", "max_pool_3x3_s2", "LayerStats"]


def if_steps(x: torch.Tensor, v: Optional[torch.Tensor] = None, threshold: float = 1.0) -> torch.Tensor:
    """IF neuron over the steps of ``x`` (T, ...), **in place**: ``x`` becomes the spikes; returns the state.

    Per step: ``v = v + x_t``; spike ``s = (v >= threshold)``; hard reset to 0: ``v = v - v * s`` (exactly
    ``v`` or ``0`` since ``s`` is 0 or 1). ``v`` (the membrane potential before step 0, zeros when None) is
    updated in place when given. Three elementwise passes per step, no temporaries.
    """
    if v is None:
        v = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        spikes = x[t]
        v.add_(spikes)
        torch.ge(v, threshold, out=spikes)
        v.addcmul_(v, spikes, value=-1.0)
    return v


def max_pool_3x3_s2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 3, 2, 1)`` for **non-negative** ``x`` (spikes), separably: rows, then columns.

    Zero padding equals the pool's implicit -inf padding because every window holds at least one real,
    non-negative value. Even sizes (the network's) need no padding at all: output ``i`` is the max of the pair
    ``(2i, 2i+1)`` and of ``2i-1``. Several times faster than ``max_pool2d`` on the CPU (no indices, fewer
    passes, no padded copy).
    """
    if x.device.type != "cpu":
        return F.max_pool2d(x, 3, 2, 1)
    h, w = x.shape[-2:]
    if h % 2 == 0 and w % 2 == 0 and h >= 2 and w >= 2:
        return _max3_stride2_even(_max3_stride2_even(x, x.dim() - 2), x.dim() - 1)
    xp = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(xp[..., 0:h:2, :], xp[..., 1:h + 1:2, :]), xp[..., 2:h + 2:2, :])
    return torch.maximum(torch.maximum(rows[..., 0:w:2], rows[..., 1:w + 1:2]), rows[..., 2:w + 2:2])


def _max3_stride2_even(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Along ``dim`` (even length n): ``out[i] = max(x[2i-1], x[2i], x[2i+1])``, ``x[-1]`` left out."""
    n = x.shape[dim]

    def take(start: int, stop: int) -> torch.Tensor:
        index = [slice(None)] * x.dim()
        index[dim] = slice(start, stop, 2)
        return x[tuple(index)]

    out = torch.maximum(take(0, n), take(1, n))
    if n > 2:
        tail = out.narrow(dim, 1, n // 2 - 1)
        torch.maximum(tail, take(1, n - 2), out=tail)
    return out


class LayerStats:
    """Collects, per face, spike counts of the spiking layers and synaptic operations of the synaptic ones.

    During the forward pass only cheap tensor reductions are queued (no host synchronisation);
    :meth:`finalize` turns them into numpy: ``spikes[name]`` and ``sops[name]`` are (B,) float64 arrays,
    ``neurons[name]`` the neuron count of a layer per step and face.
    """

    def __init__(self, batch: int, device: Optional[torch.device] = None) -> None:
        self.batch = batch
        self.device = device
        self.neurons: Dict[str, int] = {}
        self._spikes: List[Tuple[str, torch.Tensor]] = []
        self._convs: List[Tuple[str, torch.Tensor, Tuple[int, int, int, int, int], int]] = []
        self._dense: List[Tuple[str, torch.Tensor, int]] = []
        self.spikes: Dict[str, np.ndarray] = {}
        self.sops: Dict[str, np.ndarray] = {}

    def count(self, name: str, spikes: torch.Tensor, steps: int) -> None:
        """Queue the spikes of ``spikes`` ((steps*B, C, H, W) or (steps*B, N)) for layer ``name``."""
        # float32 sums of 0/1 values are exact below 2**24 per face and layer; summing over the non-batch dims
        # (not a reshape) keeps channels-last tensors uncopied
        per_row = spikes.sum(dim=tuple(range(1, spikes.dim())))
        self._spikes.append((name, per_row.view(steps, self.batch).sum(dim=0)))
        self.neurons[name] = int(spikes[0].numel())

    def count_sums(self, name: str, sums: torch.Tensor, neurons: int) -> None:
        """Queue spikes of layer ``name`` from its :meth:`input_sums` (B, H*W) (saves a second reduction)."""
        self._spikes.append((name, sums.sum(dim=1)))
        self.neurons[name] = int(neurons)

    def input_sums(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """(B, H*W): input values summed over steps and channels (what the fan-out map weighs)."""
        if x.is_contiguous():
            # sum(2).sum(0), not sum((0, 2)): the latter is ~20x slower on the CPU for B > 1 (strided reduction)
            return x.reshape(steps, self.batch, x.shape[1], -1).sum(dim=2).sum(dim=0).float()
        # channels-last: the channel sum is the innermost, contiguous reduction
        return x.permute(0, 2, 3, 1).sum(dim=3).reshape(steps, self.batch, -1).sum(dim=0).float()

    def conv(self, name: str, sums: torch.Tensor, h: int, w: int, conv: "FusedConv") -> None:
        """Queue the SOPs of ``conv`` fed with inputs whose per-position sums are ``sums`` (B, H*W)."""
        self._convs.append((name, sums, (h, w, conv.kernel, conv.stride, conv.padding), conv.out_channels))

    def dense(self, name: str, total_input: torch.Tensor, out_features: int) -> None:
        """Queue the SOPs of a fully connected layer whose inputs sum to ``total_input`` (B,)."""
        self._dense.append((name, total_input, out_features))

    def finalize(self) -> "LayerStats":
        """Reduce what was queued (on the device, one host copy in all); may be called again after more steps."""
        if not (self._spikes or self._convs or self._dense):
            return self
        names, values = [], []
        for name, count in self._spikes:
            names.append(("spikes", name))
            values.append(count.double())
        for name, sums, geometry, out_channels in self._convs:
            names.append(("sops", name))
            # elementwise product and sum, not a matmul: on the CPU a BLAS call may wake numpy's or torch's
            # BLAS threads, which then spin against the convolution threads
            values.append((sums.double() * _fan_tensor(geometry, sums.device)).sum(dim=1) * out_channels)
        for name, total, out_features in self._dense:
            names.append(("sops", name))
            values.append(total.double() * out_features)
        host = torch.stack(values).cpu().numpy()
        for (kind, name), row in zip(names, host):
            target = self.spikes if kind == "spikes" else self.sops
            target[name] = target.get(name, 0) + row
        self._spikes, self._convs, self._dense = [], [], []
        return self


_FAN_TENSORS: Dict[Tuple[Tuple[int, int, int, int, int], str], torch.Tensor] = {}


def _fan_tensor(geometry: Tuple[int, int, int, int, int], device: torch.device) -> torch.Tensor:
    """:func:`fanout_map` of ``geometry`` (h, w, k, s, p), flattened, float64, cached per device."""
    key = (geometry, str(device))
    if key not in _FAN_TENSORS:
        _FAN_TENSORS[key] = torch.as_tensor(fanout_map(*geometry).ravel(), dtype=torch.float64, device=device)
    return _FAN_TENSORS[key]


DIGITS_MIN_IN_CHANNELS = 64  #: int8 digit convolutions only for convs with at least this many input channels
DIGITS_MIN_MACS = 2_000_000  #: ... and at least this many multiply-adds per step and face


def _layout(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` if ``x`` is laid out so (and not also contiguous), else the contiguous format."""
    if x.is_contiguous():
        return torch.contiguous_format
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


class FusedConv(nn.Module):
    """A conv with its BatchNorm folded in (bias included).

    The fp32 weights are kept; :meth:`set_compute_dtype` makes the conv compute in half precision
    (inputs cast, output back to fp32) so that membrane potentials stay fp32; :meth:`set_int8` runs it as
    fp32-accurate int8 digit convolutions (:mod:`~fer_perception.runtime.digit_conv`, CPU) for ``uint8``
    inputs.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        with torch.no_grad():
            weight, bias = (t.clone() for t in fold_conv_bn(conv, bn, dtype=conv.weight.dtype))
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("weight_compute", weight, persistent=False)
        self.register_buffer("bias_compute", bias, persistent=False)
        self.kernel = int(conv.kernel_size[0])
        self.stride = int(conv.stride[0])
        self.padding = int(conv.padding[0])
        self.out_channels = int(conv.out_channels)
        self.digits = None  # DigitConv when set_int8(True)

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        self.weight_compute = self.weight.to(dtype)
        self.bias_compute = self.bias.to(dtype)

    def out_size(self, size: int) -> int:
        """Output height (or width) for an input of ``size``."""
        return (size + 2 * self.padding - self.kernel) // self.stride + 1

    def worth_digits(self, in_size: int) -> bool:
        """Whether int8 digits beat fp32 for this conv on ``in_size`` x ``in_size`` inputs (measured on x86:
        they need >= 64 input channels and >= 2 M multiply-adds per step, else call overheads win)."""
        in_channels = int(self.weight.shape[1])
        macs = in_channels * self.out_channels * self.kernel ** 2 * self.out_size(in_size) ** 2
        return in_channels >= DIGITS_MIN_IN_CHANNELS and macs >= DIGITS_MIN_MACS

    def set_int8(self, enabled: bool) -> None:
        from .digit_conv import DigitConv

        if not enabled:
            self.digits = None
        elif self.kernel == 1 and self.padding == 0:  # a strided 1x1 conv is a 1x1 conv of the subsampled input
            self.digits = DigitConv(self.weight, self.bias, 1, 0)
        else:
            self.digits = DigitConv(self.weight, self.bias, self.stride, self.padding)

    def spike_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The conv of spikes ``x`` as :func:`spike_kernels.fire` reads it: the digit partials
        ``(N, 3*C_out, H', W')`` (channels-last) when this conv runs as digits (``x`` uint8 channels-last), else
        the conv ``(N, C_out, H', W')`` in float32 (computed in the compute dtype) and ``x``'s layout."""
        if self.digits is None:
            w = self.weight_compute
            out = F.conv2d(x.to(w.dtype), w, self.bias_compute, self.stride, self.padding).float()
            # the IF pass reads the layout of the spikes: channels-last in the int8 runtime, else contiguous
            return out.contiguous(memory_format=_layout(x))
        if self.kernel == 1 and self.padding == 0 and self.stride > 1:
            x = x[..., ::self.stride, ::self.stride].contiguous(memory_format=torch.channels_last)
        return self.digits.partials(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.digits is not None and x.dtype == torch.uint8:  # FusedBlock sends uint8 only to digit convs
            if self.kernel == 1 and self.padding == 0 and self.stride > 1:
                x = x[..., ::self.stride, ::self.stride].contiguous(memory_format=torch.channels_last)
            return self.digits(x)
        w = self.weight_compute
        if w.dtype == x.dtype:
            return F.conv2d(x, w, self.bias_compute, self.stride, self.padding)
        out = F.conv2d(x.to(w.dtype), w, self.bias_compute, self.stride, self.padding)
        return out.to(x.dtype)


KERNEL_MAX_FP32_VALUES = 65536  #: fp32 IF layers larger than this (values per call) run as tensor ops


def _fire(y: torch.Tensor, steps: int, channels: int, v: Optional[torch.Tensor], add: Optional[torch.Tensor] = None,
          out_dtype: torch.dtype = torch.uint8) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`spike_kernels.fire`, except for large fp32 layers: there the in-place tensor ops, which run on all
    of torch's threads, beat the single-threaded pass (the kernel's gain is summing the digits and casting to
    uint8, which fp32 layers do not need). Same arithmetic, same flat state, either way."""
    from . import spike_kernels

    if out_dtype != torch.float32 or y.shape[1] != channels or not y.is_contiguous() \
            or y.numel() <= KERNEL_MAX_FP32_VALUES:
        return spike_kernels.fire(y, steps, channels, v, add=add, out_dtype=out_dtype)
    if v is None:
        v = torch.zeros(y.numel() // steps, dtype=torch.float32)
    batch = y.shape[0] // steps
    if_steps(y.view(steps, batch, *y.shape[1:]), v.view(batch, *y.shape[1:]))
    return (y if add is None else y.add_(add)), v


class FusedBlock(nn.Module):
    """SEW basic block (ADD) with folded convs; spiking state lives outside (see :meth:`FusedSpikingFER.step`)."""

    def __init__(self, name: str, block: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.conv1 = FusedConv(block.conv1, block.bn1)
        self.conv2 = FusedConv(block.conv2, block.bn2)
        self.down: Optional[FusedConv] = None
        if block.downsample is not None:
            self.down = FusedConv(block.downsample[0], block.downsample[1])

    def state_names(self) -> List[str]:
        names = [f"{self.name}.sn1", f"{self.name}.sn2"]
        if self.down is not None:
            names.append(f"{self.name}.downsample_sn")
        return names

    def _count_input(self, x: torch.Tensor, steps: int, stats: LayerStats) -> None:
        """Queue the synaptic operations of conv1 (and of the downsample) fed with the block input ``x``."""
        sums = stats.input_sums(x, steps)
        h, w = x.shape[-2:]
        stats.conv(f"{self.name}.conv1", sums, h, w, self.conv1)
        if self.down is not None:
            stats.conv(f"{self.name}.downsample", sums, h, w, self.down)

    def _count_hidden(self, spikes: torch.Tensor, steps: int, stats: LayerStats) -> None:
        """Queue the spikes of sn1 and the synaptic operations of conv2, which reads them."""
        sums = stats.input_sums(spikes, steps)
        stats.count_sums(f"{self.name}.sn1", sums, spikes[0].numel())
        stats.conv(f"{self.name}.conv2", sums, spikes.shape[-2], spikes.shape[-1], self.conv2)

    def run(self, x: torch.Tensor, steps: int, state: Dict[str, torch.Tensor], stats: Optional[LayerStats]):
        t_b = x.shape[0]
        if stats is not None:
            self._count_input(x, steps, stats)
        x8 = None  # spikes and SEW sums: exact in uint8, what the int8 digit convolutions read
        if self.conv1.digits is not None or (self.down is not None and self.down.digits is not None):
            x8 = x.to(torch.uint8)
        out = self.conv1(x8 if self.conv1.digits is not None else x)
        n1 = f"{self.name}.sn1"
        state[n1] = if_steps(out.view(steps, t_b // steps, *out.shape[1:]), state.get(n1))
        if stats is not None:
            self._count_hidden(out, steps, stats)
        out = self.conv2(out.to(torch.uint8) if self.conv2.digits is not None else out)
        n2 = f"{self.name}.sn2"
        state[n2] = if_steps(out.view(steps, t_b // steps, *out.shape[1:]), state.get(n2))
        if stats is not None:
            stats.count(n2, out, steps)
        if self.down is None:
            return out.add_(x)
        identity = self.down(x8 if self.down.digits is not None else x)
        nd = f"{self.name}.downsample_sn"
        state[nd] = if_steps(identity.view(steps, t_b // steps, *identity.shape[1:]), state.get(nd))
        if stats is not None:
            stats.count(nd, identity, steps)
        return out.add_(identity)

    def run_spiking(self, x: torch.Tensor, steps: int, state: Dict[str, torch.Tensor],
                    stats: Optional[LayerStats]) -> torch.Tensor:
        """:meth:`run` with the compiled kernels: ``x`` and the result are spikes / SEW sums, uint8 channels-last
        for the int8 digit convolutions, else float32 contiguous.

        Each IF layer is one :func:`spike_kernels.fire` pass that also adds up the digit partials, writes the
        spikes in ``x``'s dtype and layout and (without statistics) does the SEW ADD; neuron states are flat.
        """
        if stats is not None:
            self._count_input(x, steps, stats)
        n1, n2, nd = f"{self.name}.sn1", f"{self.name}.sn2", f"{self.name}.downsample_sn"
        dtype = x.dtype
        s1, state[n1] = _fire(self.conv1.spike_conv(x), steps, self.conv1.out_channels, state.get(n1),
                              out_dtype=dtype)
        if stats is not None:
            self._count_hidden(s1, steps, stats)
        y2 = self.conv2.spike_conv(s1)
        identity = x
        if self.down is not None:
            identity, state[nd] = _fire(self.down.spike_conv(x), steps, self.down.out_channels, state.get(nd),
                                        out_dtype=dtype)
            if stats is not None:
                stats.count(nd, identity, steps)
        if stats is None:
            out, state[n2] = _fire(y2, steps, self.conv2.out_channels, state.get(n2), add=identity,
                                   out_dtype=dtype)
            return out
        s2, state[n2] = _fire(y2, steps, self.conv2.out_channels, state.get(n2), out_dtype=dtype)
        stats.count(n2, s2, steps)
        return s2.add_(identity)


class FusedSpikingFER(nn.Module):
    """Folded, batched inference graph of a trained :class:`SpikingFER` (which is left untouched)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from ..models.spiking_fer import SpikingFER

        if not isinstance(model, SpikingFER):
            raise TypeError(f"FusedSpikingFER needs a SpikingFER, got {type(model).__name__}")
        enc = model.encoder
        self.timesteps = model.timesteps
        self.input_size = int(model.config.input_size)
        self._int8 = False  # set by set_int8
        self.use_kernels = True  #: run the IF layers as compiled kernels where possible (see spike_kernels)
        self.n_classes = model.n_classes
        self.stem = FusedConv(enc.conv1, enc.bn1)
        blocks = []
        for li in range(1, 5):
            for bi, block in enumerate(getattr(enc, f"layer{li}")):
                blocks.append(FusedBlock(f"layer{li}.{bi}", block))
        self.blocks = nn.ModuleList(blocks)
        fc1 = enc.fc[0]
        self.register_buffer("fc1_weight", fc1.weight.detach().clone())
        self.register_buffer("fc1_bias", fc1.bias.detach().clone())
        self.register_buffer("fc2_weight", model.fc.weight.detach().clone())
        self.hidden = int(fc1.out_features)
        self.spiking_layers: List[str] = ["sn1"] + [n for b in self.blocks for n in b.state_names()]

    @property
    def int8(self) -> bool:
        """Whether some convolutions run as fp32-accurate int8 digits (CPU, channels-last)."""
        return self._int8

    def _spike_convs(self) -> List[Tuple[FusedConv, int]]:
        """The convolutions that read spikes, with their input size for the model's input."""
        size = self.stem.out_size(self.input_size)
        size = (size - 1) // 2 + 1  # max pool 3x3 / 2, padding 1
        convs = []
        for block in self.blocks:
            convs.append((block.conv1, size))
            convs.append((block.conv2, block.conv1.out_size(size)))
            if block.down is not None:
                convs.append((block.down, size))
            size = block.conv1.out_size(size)
        return convs

    def set_int8(self, enabled: bool = True) -> "FusedSpikingFER":
        """Run the convolutions that see spikes as int8 digits (:mod:`~fer_perception.runtime.digit_conv`).

        CPU only. Only convolutions large enough to gain use digits (:meth:`FusedConv.worth_digits`: wide
        layers; a narrow demo-size network keeps fp32 everywhere, and :attr:`int8` then stays False); the
        stem (whose input may be any float) stays fp32. Precision is that of fp32: the caller still checks
        agreement once (``SnnRunner`` does). ``set_int8(False)`` returns to fp32 everywhere.
        """
        if enabled and self.stem.weight.device.type != "cpu":
            raise RuntimeError("int8 digit convolutions run on the CPU only")
        for conv, size in self._spike_convs():
            conv.set_int8(enabled and conv.worth_digits(size))
        self._int8 = any(conv.digits is not None for conv, _ in self._spike_convs())
        return self

    @property
    def spike_kernels(self) -> bool:
        """Whether the IF layers (with the digit sums and SEW ADDs) run as compiled kernels: on the CPU, with
        numba installed, unless :attr:`use_kernels` is False."""
        from . import spike_kernels

        return bool(self.use_kernels and self.stem.weight.device.type == "cpu" and spike_kernels.available())

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype of the convolutions (membrane potentials, pooling and the readout stay fp32)."""
        return self.stem.weight_compute.dtype

    def set_compute_dtype(self, dtype: torch.dtype) -> "FusedSpikingFER":
        """Run the convolutions in ``dtype`` (float16 / bfloat16 / float32); spikes are exact in any of them."""
        for m in self.modules():
            if isinstance(m, FusedConv):
                m.set_compute_dtype(dtype)
        return self

    def _trunk(self, x: torch.Tensor, steps: int, state: Dict[str, torch.Tensor],
               stats: Optional[LayerStats]) -> torch.Tensor:
        """``(steps, B, C, H, W)`` -> ``(steps, B, C4)`` pooled features; updates ``state`` in place."""
        kernels = self.spike_kernels
        batch = x.shape[1]
        # oneDNN's int8 convolutions want channels-last (the fp32 stem is fastest so too); fp32 ones contiguous
        layout = torch.channels_last if self._int8 else torch.contiguous_format
        flat = x.reshape(steps * batch, *x.shape[2:]).contiguous(memory_format=layout)
        if stats is not None:
            stats.conv("conv1", stats.input_sums(flat, steps), flat.shape[-2], flat.shape[-1], self.stem)
        # the stem's output is the network's largest tensor: its IF and pooling stay tensor ops on all threads
        # (in fp32: torch's uint8 elementwise ops are slow), faster there than a single-threaded kernel pass
        y = self.stem(flat)
        state["sn1"] = if_steps(y.view(steps, batch, *y.shape[1:]), state.get("sn1"))
        if stats is not None:
            stats.count("sn1", y, steps)
        y = max_pool_3x3_s2(y)
        if kernels:  # the blocks' kernel passes keep the spikes as the next convolutions read them
            y = y.to(torch.uint8 if self._int8 else torch.float32).contiguous(memory_format=layout)
        for block in self.blocks:
            y = block.run_spiking(y, steps, state, stats) if kernels else block.run(y, steps, state, stats)
        if stats is not None:
            stats.dense("encoder.fc.0", y.reshape(steps, batch, -1).sum(dim=2).sum(dim=0), self.hidden)
        return y.float().mean(dim=(2, 3)).view(steps, batch, -1)

    def _readout(self, feature_sum: torch.Tensor, steps: int) -> torch.Tensor:
        """Logits from the sum over steps of the pooled features."""
        potential = F.linear(feature_sum, self.fc1_weight) + self.fc1_bias * steps
        return F.linear(potential, self.fc2_weight)

    def forward(self, x: torch.Tensor, stats: Optional[LayerStats] = None) -> torch.Tensor:
        """Logits ``(B, n_classes)`` of one window ``x (T, B, C, H, W)`` (fresh neuron state)."""
        steps = x.shape[0]
        feats = self._trunk(x, steps, {}, stats)
        total = feats[0].clone()
        for t in range(1, steps):  # sequential sum: the same order as step-by-step streaming
            total.add_(feats[t])
        return self._readout(total, steps)

    def step(self, frame: torch.Tensor, state: Dict[str, torch.Tensor],
             stats: Optional[LayerStats] = None) -> torch.Tensor:
        """One step ``frame (B, C, H, W)`` with the state ``state`` (updated in place; start from ``{}``).

        Returns the running sum of pooled features (kept in ``state["feature_sum"]``); pass it to
        :meth:`readout` after the window's last step.
        """
        feats = self._trunk(frame.unsqueeze(0), 1, state, stats)[0]
        if "feature_sum" in state:
            state["feature_sum"].add_(feats)
        else:
            state["feature_sum"] = feats.clone()
        return state["feature_sum"]

    def readout(self, state: Dict[str, torch.Tensor], steps: int) -> torch.Tensor:
        """Logits after ``steps`` calls of :meth:`step` on ``state``."""
        return self._readout(state["feature_sum"], steps)
