"""Winograd F(2x2, 3x3) convolution built from ordinary ops, and inference-only ResNet blocks that use it.

A 3x3 convolution (stride 1, padding 1) computes each 2x2 output tile from a 4x4 input tile with 16 products
per input/output channel pair instead of 36 (Lavin & Gray 2016: ``Y = A^T [(G g G^T) . (B^T d B)] A``). Our
form uses only ops onnxruntime runs well on a CPU, so it speeds up the exported ONNX graph with no custom
kernel: the input transform is a 3-D conv (kernel (1, 4, 4), stride (1, 2, 2)) with the 16 fixed
``B^T (.) B`` kernels applied to every channel separately, the 16 products become one 1x1 conv with
``groups=16`` (the ``(16 * C_out, C_in)`` weights ``G g G^T`` precomputed in float64), and the output
transform is a 3-D transposed conv (kernel (1, 2, 2), stride (1, 2, 2)) with the fixed ``A^T (.) A`` kernels.
The 3-D form keeps the 16 tile positions on their own axis, so no transposes are needed.

It is exact algebra: outputs equal the direct convolution up to float32 rounding (measured the same size as
the direct conv's own rounding against float64). Through onnxruntime on 2 cores it pays where the maps are
mid-sized and the channels many (ResNet-18 layer2 and layer3 at 224x224: 28x28x128 and 14x14x256, ~0.15 ms
less per conv); at 56x56 the transforms' data movement costs more than the products save, and at 7x7x512 the
16/9 larger weights slow down a layer that is already bound by reading its weights from memory.
"""

from __future__ import annotations

import warnings
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# F(2, 3) transform matrices (Lavin & Gray 2016, eq. 7 extended to 2-D by nesting)
_BT = ((1.0, 0.0, -1.0, 0.0), (0.0, 1.0, 1.0, 0.0), (0.0, -1.0, 1.0, 0.0), (0.0, 1.0, 0.0, -1.0))
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_AT = ((1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0))


def fold_conv_bn(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` in float64 of the conv equal to ``bn(conv(x))`` (eval mode), or of ``conv`` alone."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is None:
        return w, b
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    return w * scale[:, None, None, None], bn.bias.detach().double() + (b - bn.running_mean.detach().double()) * scale


def _static_size(x: torch.Tensor, dim: int) -> int:
    """``x.shape[dim]`` as a Python int: an ONNX export keeps spatial sizes static (only the batch axis is
    dynamic), so the graph needs no Shape/Gather ops; the tracer's warning about it is expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return int(x.shape[dim])


class WinogradConv3x3(nn.Module):
    """``conv2d(x, weight, bias, stride=1, padding=1)`` for a 3x3 ``weight``, as Winograd F(2x2, 3x3).

    Built from a float weight ``(C_out, C_in, 3, 3)`` and bias; the transformed weights are computed in float64
    and stored as float32 buffers. Any input size: odd heights or widths get one more row/column of zero
    padding and the extra output row/column is cut off.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None):
        super().__init__()
        if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
            raise ValueError(f"WinogradConv3x3 needs a (C_out, C_in, 3, 3) weight, got {tuple(weight.shape)}")
        w = weight.detach().double().cpu()
        c_out, c_in = int(w.shape[0]), int(w.shape[1])
        self.in_channels, self.out_channels = c_in, c_out
        bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in (_BT, _G, _AT))
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        # product weights, tile position k = 4u + v major: (16 * C_out, C_in, 1, 1) for a groups=16 1x1 conv
        u = torch.einsum("ui,ocij,vj->uvoc", g, w, g).reshape(16 * c_out, c_in, 1, 1)
        self.register_buffer("product_weight", u.to(dtype))
        self.register_buffer("input_kernels", torch.einsum("ui,vj->uvij", bt, bt).reshape(16, 1, 4, 4).to(dtype))
        self.register_buffer("output_kernels", torch.einsum("au,bv->uvab", at, at).reshape(16, 1, 2, 2).to(dtype))
        b = torch.zeros(c_out, dtype=torch.float64) if bias is None else bias.detach().double().cpu()
        self.register_buffer("bias", b.reshape(1, c_out, 1, 1).to(dtype))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d] = None) -> "WinogradConv3x3":
        """From a 3x3, stride-1, padding-1, ungrouped, undilated ``conv`` (with ``bn`` folded in when given)."""
        if (tuple(conv.kernel_size) != (3, 3) or tuple(conv.stride) != (1, 1) or tuple(conv.padding) != (1, 1)
                or tuple(conv.dilation) != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros"):
            raise ValueError(f"WinogradConv3x3 needs a 3x3 conv with stride 1, padding 1, no groups: {conv}")
        w, b = fold_conv_bn(conv, bn)
        return cls(w.to(conv.weight.dtype), b.to(conv.weight.dtype)).to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = _static_size(x, 2), _static_size(x, 3)
        ty, tx = (h + 1) // 2, (w + 1) // 2
        c, o = self.in_channels, self.out_channels
        # input transform: every channel's 4x4 tiles (stride 2) through the 16 B^T d B kernels, as a 3-D conv
        # over (channel, y, x) with a (1, 4, 4) kernel, so the 16 tile positions come out as the leading axis
        v = x.unsqueeze(1)                                                      # (B, 1, C, h, w)
        if h % 2 or w % 2:
            v = F.conv3d(F.pad(v, (1, 1 + w % 2, 1, 1 + h % 2)), self.input_kernels.unsqueeze(2), stride=(1, 2, 2))
        else:
            v = F.conv3d(v, self.input_kernels.unsqueeze(2), stride=(1, 2, 2), padding=(0, 1, 1))
        m = F.conv2d(v.reshape(-1, 16 * c, ty, tx), self.product_weight, groups=16)  # (B, 16*O, ty, tx)
        # output transform: the 16 positions through the A^T m A kernels, each to its 2x2 output tile
        y = F.conv_transpose3d(m.reshape(-1, 16, o, ty, tx), self.output_kernels.unsqueeze(2), stride=(1, 2, 2))
        y = y.reshape(-1, o, 2 * ty, 2 * tx)                                   # (B, O, 2ty, 2tx)
        if 2 * ty != h or 2 * tx != w:
            y = y[:, :, :h, :w]
        return y + self.bias


class FusedBasicBlock(nn.Module):
    """Inference form of :class:`fer_perception.models.resnet.BasicBlock`: BatchNorms folded into the convs,
    stride-1 3x3 convs optionally as :class:`WinogradConv3x3`. Equal to the block in eval mode up to rounding."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, downsample: Optional[nn.Module]):
        super().__init__()
        self.conv1, self.conv2, self.downsample = conv1, conv2, downsample

    @staticmethod
    def _conv(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d], winograd: bool) -> nn.Module:
        if winograd and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1):
            return WinogradConv3x3.from_conv(conv, bn)
        w, b = fold_conv_bn(conv, bn)
        out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, bias=True)
        with torch.no_grad():
            out.weight.copy_(w.to(conv.weight.dtype))
            out.bias.copy_(b.to(conv.weight.dtype))
        return out.to(conv.weight.device)

    @classmethod
    def from_block(cls, block: nn.Module, winograd: bool = True) -> "FusedBasicBlock":
        """From a ResNet ``BasicBlock`` (``conv1, bn1, conv2, bn2, downsample``), read in eval mode."""
        down = None
        if block.downsample is not None:
            down = cls._conv(block.downsample[0], block.downsample[1], False)
        return cls(cls._conv(block.conv1, block.bn1, winograd), cls._conv(block.conv2, block.bn2, winograd),
                   down).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.conv1(x))
        return torch.relu(self.conv2(out) + identity)
