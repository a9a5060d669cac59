"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution built from ordinary ops, and inference-only ResNet blocks.

A 3x3 convolution (stride 1, padding 1) computes each t x t output tile from a (t+2) x (t+2) input tile with
(t+2)^2 products per input/output channel pair instead of 9 t^2 (Lavin & Gray 2016,
``Y = A^T [(G g G^T) . (B^T d B)] A``): 16 instead of 36 for t = 2, 36 instead of 144 for t = 4. Our form uses
only ops onnxruntime runs well on a CPU, so it speeds up the exported ONNX graph with no custom kernel: the
input transform is a 3-D conv (kernel (1, t+2, t+2), stride (1, t, t)) with the fixed ``B^T (.) B`` kernels
applied to every channel separately, the products become one 1x1 conv with ``groups=(t+2)^2`` (the weights
``G g G^T`` precomputed in float64), and the output transform is a 3-D transposed conv (kernel (1, t, t),
stride (1, t, t)) with the fixed ``A^T (.) A`` kernels. The 3-D form keeps the tile positions on their own
axis, so no transposes are needed.

It is exact algebra: outputs equal the direct convolution up to float32 rounding - F(2x2) as close to the
float64 result as the direct conv, F(4x4) (transform entries up to 8) within ~10x the direct conv's rounding,
a few 1e-6 relative. Where it pays through onnxruntime on 2 cores is measured per shape (see
:data:`fer_perception.models.dan.WINOGRAD_TILES`): mid-sized maps with many channels gain most; at 56x56 the
transforms move too much data, and at 7x7x512 the larger transformed weights nearly cancel the saved products.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from fer_perception.models.fold import fold_conv_bn

# Transform matrices (B^T, G, A^T) of F(2, 3) and F(4, 3) (Lavin & Gray 2016; interpolation points 0, +-1
# and 0, +-1, +-2, infinity), nested for 2-D tiles.
_MATRICES = {
    2: (((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1))),
    4: (((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0),
         (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
        ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
         (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))),
}


def static_size(x: torch.Tensor, dim: int) -> int:
    """``x.shape[dim]`` as a Python int: an ONNX export keeps spatial sizes static (only the batch axis is
    dynamic), so the graph needs no Shape/Gather ops; the tracer's warning about it is expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return int(x.shape[dim])


class WinogradConv3x3(nn.Module):
    """``conv2d(x, weight, bias, stride=1, padding=1)`` for a 3x3 ``weight``, as Winograd F(t x t, 3x3).

    Built from a float weight ``(C_out, C_in, 3, 3)``, bias and output ``tile`` (2 or 4); the transformed weights
    are computed in float64 and stored in the weight's dtype. Any input size: sizes that are not a multiple of
    the tile get more zero padding at the bottom/right and the extra output rows/columns are cut off.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, tile: int = 2, groups: int = 1):
        super().__init__()
        if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
            raise ValueError(f"WinogradConv3x3 needs a (C_out, C_in, 3, 3) weight, got {tuple(weight.shape)}")
        if tile not in _MATRICES:
            raise ValueError(f"WinogradConv3x3 output tile must be one of {sorted(_MATRICES)}, got {tile}")
        w = weight.detach().double().cpu()
        c_out, c_in = int(w.shape[0]), int(w.shape[1]) * int(groups)
        if groups < 1 or c_out % groups:
            raise ValueError(f"WinogradConv3x3: {c_out} output channels do not split into {groups} groups")
        self.in_channels, self.out_channels, self.tile, self.groups = c_in, c_out, int(tile), int(groups)
        a = tile + 2  # input tile size
        self.positions = a * a
        bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in _MATRICES[tile])
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        # product weights, tile position k = a*u + v major: (a^2 * C_out, C_in / groups, 1, 1) for a 1x1 conv
        # with a^2 * groups groups (channel groups stay inside each position's block)
        u = torch.einsum("ui,ocij,vj->uvoc", g, w, g).reshape(a * a * c_out, c_in // groups, 1, 1)
        self.register_buffer("product_weight", u.to(dtype))
        self.register_buffer("input_kernels", torch.einsum("ui,vj->uvij", bt, bt).reshape(a * a, 1, a, a).to(dtype))
        self.register_buffer("output_kernels",
                             torch.einsum("au,bv->uvab", at, at).reshape(a * a, 1, tile, tile).to(dtype))
        b = torch.zeros(c_out, dtype=torch.float64) if bias is None else bias.detach().double().cpu()
        self.register_buffer("bias", b.reshape(1, c_out, 1, 1).to(dtype))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d] = None, tile: int = 2) -> "WinogradConv3x3":
        """From a 3x3, stride-1, padding-1, undilated ``conv``, grouped or not (``bn`` folded in when given)."""
        if (tuple(conv.kernel_size) != (3, 3) or tuple(conv.stride) != (1, 1) or tuple(conv.padding) != (1, 1)
                or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros"):
            raise ValueError(f"WinogradConv3x3 needs a 3x3 conv with stride 1, padding 1, no dilation: {conv}")
        w, b = fold_conv_bn(conv, bn)
        return cls(w.to(conv.weight.dtype), b.to(conv.weight.dtype), tile, conv.groups).to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = static_size(x, 2), static_size(x, 3)
        t, n = self.tile, self.positions
        ty, tx = -(-h // t), -(-w // t)
        c, o = self.in_channels, self.out_channels
        # input transform: every channel's (t+2)^2 tiles (stride t) through the n B^T d B kernels, as a 3-D conv
        # over (channel, y, x) with a (1, t+2, t+2) kernel, so the n tile positions come out as the leading axis
        v = x.unsqueeze(1)                                                      # (B, 1, C, h, w)
        kin = self.input_kernels.unsqueeze(2)
        if h % t or w % t:
            v = F.conv3d(F.pad(v, (1, 1 + tx * t - w, 1, 1 + ty * t - h)), kin, stride=(1, t, t))
        else:
            v = F.conv3d(v, kin, stride=(1, t, t), padding=(0, 1, 1))
        m = F.conv2d(v.reshape(-1, n * c, ty, tx), self.product_weight, groups=n * self.groups)  # (B, n*O, ty, tx)
        # output transform: the n positions through the A^T m A kernels, each to its t x t output tile
        y = F.conv_transpose3d(m.reshape(-1, n, o, ty, tx), self.output_kernels.unsqueeze(2), stride=(1, t, t))
        y = y.reshape(-1, o, t * ty, t * tx)                                   # (B, O, t*ty, t*tx)
        if t * ty != h or t * tx != w:
            y = y[:, :, :h, :w]
        return y + self.bias


class FusedBasicBlock(nn.Module):
    """Inference form of :class:`fer_perception.models.resnet.BasicBlock`: BatchNorms folded into the convs,
    stride-1 3x3 convs optionally as :class:`WinogradConv3x3`. Equal to the block in eval mode up to rounding."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, downsample: Optional[nn.Module]):
        super().__init__()
        self.conv1, self.conv2, self.downsample = conv1, conv2, downsample

    @staticmethod
    def _conv(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d], tile: int) -> nn.Module:
        if tile and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1):
            return WinogradConv3x3.from_conv(conv, bn, tile)
        w, b = fold_conv_bn(conv, bn)
        out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, bias=True)
        with torch.no_grad():
            out.weight.copy_(w.to(conv.weight.dtype))
            out.bias.copy_(b.to(conv.weight.dtype))
        return out.to(conv.weight.device)

    @classmethod
    def from_block(cls, block: nn.Module, tile: int = 2) -> "FusedBasicBlock":
        """From a ResNet ``BasicBlock`` (``conv1, bn1, conv2, bn2, downsample``), read in eval mode; ``tile``:
        the Winograd output tile of its stride-1 3x3 convs (2 or 4; 0 keeps them direct)."""
        down = None
        if block.downsample is not None:
            down = cls._conv(block.downsample[0], block.downsample[1], 0)
        return cls(cls._conv(block.conv1, block.bn1, tile), cls._conv(block.conv2, block.bn2, tile), down).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.conv1(x))
        return torch.relu(self.conv2(out) + identity)
