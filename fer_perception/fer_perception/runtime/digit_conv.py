"""fp32-accurate convolutions of spike inputs on the CPU's int8 units (oneDNN), by splitting weights into digits.

Inside Spiking-FER every convolution after the stem sees small non-negative integers: spikes (0/1) or their
SEW sums (at most 3). Those are exact in ``uint8``. A weight tensor is split, per output channel, into three
int8 *digits*::

    w = s (q0 + q1 / 254 + q2 / 254**2) + r,    s = max|w| / 127,   q_i in [-127, 127],   |r| <= s / (2 * 254**2)

so ``conv(x, w) = s conv(x, q0) + (s/254) conv(x, q1) + (s/254**2) conv(x, q2)``. Each integer convolution is
exact (int32 accumulators; at most ``255 * 127 * k*k*C_in`` per output, far below 2**31), so the only roundings
are the three fp32 scalings and sums, plus the dropped residual ``r``: relative to the largest weight of a
channel, ``r`` and the fp32 rounding of the scales stay within about 2**-23, fp32's own step. The result's
error against a float64 convolution is the size of an fp32 convolution's (tested): an exact rewrite, not
quantisation.

Why: on CPUs with int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX) an int8 multiply-add costs a
quarter of an fp32 one, so the three digit convolutions together run about 1.2-1.5x faster than one fp32
convolution on wide layers (``bench/bench_snn.py``). The digits run as one oneDNN convolution
(``torch.ops.onednn.qconv2d_pointwise``, the kernel behind PyTorch's x86 int8 inference) whose output channels
are the digits' (fp32, channels-last); their sum is taken by the consumer.

:func:`available` says whether this PyTorch build has the operators, :func:`has_int8_dot_product` whether the
CPU makes them pay off; :class:`DigitConv` is one prepacked convolution. Callers must check agreement with
fp32 once (``SnnRunner`` does on its warm-up windows).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from typing import List, Optional, Tuple

import torch

__all__ = ["DIGITS", "DigitConv", "available", "combine", "has_int8_dot_product", "weight_digits"]

DIGITS = 3  #: int8 digits per weight: 3 gives fp32 accuracy (2 would give ~16 bits, not exact)
_MAX_PACKS = 4  # prepacked weights kept per input size
_BASE = 254.0  # ratio of successive digit scales: a residual is at most half a step, 127/254 of a digit's range


def available() -> bool:
    """Whether this PyTorch build has the oneDNN int8 convolution operators (x86 CPU builds do)."""
    try:
        ops = torch.ops.onednn
        return (torch.backends.mkldnn.is_available() and hasattr(ops, "qconv_prepack")
                and hasattr(ops, "qconv2d_pointwise"))
    except (AttributeError, RuntimeError):
        return False


@lru_cache(maxsize=1)
def has_int8_dot_product() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX; Linux ``/proc/cpuinfo``).

    Without them oneDNN's int8 path is only about twice fp32's speed, so three digits would be slower than fp32:
    the runtime uses digits by default only where this is True.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    return False


def weight_digits(weight: torch.Tensor, digits: int = DIGITS) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split ``weight (C_out, C_in, kh, kw)`` into int8 digits, most significant first.

    Returns ``q (digits * C_out, C_in, kh, kw) int8`` and ``scales (digits * C_out,) float32`` with
    ``weight ~= sum_i scales[i*C_out + c] * q[i*C_out + c]`` per output channel ``c``. The split is computed in
    float64 so that each residual is exact.
    """
    if weight.dim() != 4:
        raise ValueError(f"weight must be (C_out, C_in, kh, kw), got shape {tuple(weight.shape)}")
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    w = weight.detach().to("cpu", torch.float64)
    amax = w.abs().amax(dim=(1, 2, 3))
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    rest = w
    qs: List[torch.Tensor] = []
    scales: List[torch.Tensor] = []
    for _ in range(digits):
        q = torch.round(rest / scale.view(-1, 1, 1, 1)).clamp_(-127, 127)
        rest = rest - q * scale.view(-1, 1, 1, 1)
        qs.append(q.to(torch.int8))
        scales.append(scale.to(torch.float32))
        scale = scale / _BASE
    return torch.cat(qs), torch.cat(scales)


class DigitConv:
    """One convolution ``conv2d(x, weight, bias, stride, padding)`` for ``uint8`` inputs, run as int8 digits.

    ``x`` is ``(N, C_in, H, W)`` uint8 (channels-last is fastest; other layouts are converted by oneDNN).
    The weight is split once, here, and the digits are stacked as output channels: one oneDNN convolution with
    ``digits * C_out`` outputs (per-channel scales applied in its epilogue, the bias on the first block) reads
    the input once and keeps the GEMM wide. :meth:`partials` returns that raw ``(N, digits*C_out, H', W')``
    float32 channels-last result, which a consumer may add up itself (``spike_kernels.fire`` does, inside the
    IF neuron's pass); calling the object adds the digits up here, least significant first, and returns the
    convolution ``(N, C_out, H', W')``. Weights are prepacked per input shape (the last few kept).
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int = 1, padding: int = 0,
                 digits: int = DIGITS) -> None:
        if not available():
            raise RuntimeError("this PyTorch build has no oneDNN int8 convolution (torch.ops.onednn.qconv_*)")
        c = self.out_channels = int(weight.shape[0])
        self.digits = int(digits)
        self.stride = [int(stride)] * 2
        self.padding = [int(padding)] * 2
        self._dilation = [1, 1]
        self._q, self._scales = weight_digits(weight, digits)
        self._zero_points = torch.zeros(c * self.digits, dtype=torch.int64)
        self.bias = torch.zeros(c * self.digits, dtype=torch.float32)
        if bias is not None:
            self.bias[:c] = bias.detach().to("cpu", torch.float32)
        # oneDNN picks its weight layout for the input's shape, batch size included; a weight packed for another
        # shape is re-laid out on every call (2x slower for a streaming step), so packs are kept per shape
        self._packed: "OrderedDict[Tuple[int, ...], torch.Tensor]" = OrderedDict()

    def _pack(self, shape: Tuple[int, ...]) -> torch.Tensor:
        key = tuple(shape)
        packed = self._packed.get(key)
        if packed is None:
            packed = torch.ops.onednn.qconv_prepack(self._q, self._scales, 1.0, 0, self.stride, self.padding,
                                                    self._dilation, 1, list(shape))
            self._packed[key] = packed
            while len(self._packed) > _MAX_PACKS:
                self._packed.popitem(last=False)
        else:
            self._packed.move_to_end(key)
        return packed

    def partials(self, x: torch.Tensor) -> torch.Tensor:
        """The digits' scaled convolutions, ``(N, digits*C_out, H', W')`` float32 channels-last, most
        significant block first (it carries the bias); their sum is the convolution."""
        if x.dtype != torch.uint8:
            raise TypeError(f"DigitConv needs uint8 inputs (spikes), got {x.dtype}")
        return torch.ops.onednn.qconv2d_pointwise(
            x, 1.0, 0, self._pack(tuple(x.shape)), self._scales, self._zero_points, self.bias, self.stride,
            self.padding, self._dilation, 1, 1.0, 0, torch.float32, "none", [], "")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return combine(self.partials(x), self.digits)


def combine(partials: torch.Tensor, digits: int = DIGITS) -> torch.Tensor:
    """Sum the ``digits`` channel blocks of :meth:`DigitConv.partials`, least significant first."""
    c = partials.shape[1] // digits
    out = partials[:, (digits - 1) * c:].clone()
    for i in range(digits - 2, -1, -1):
        out.add_(partials[:, i * c:(i + 1) * c])
    return out
