"""BatchNorm folding for inference graphs: the conv or Linear that equals ``bn(layer(x))`` in eval mode.

Shared by the DAN inference graph (``models/dan.py``, ``models/winograd.py``) and the fused Spiking-FER runtime
(``runtime/snn_fused.py``).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

__all__ = ["fold_conv_bn", "fold_linear_bn"]


def _fold(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: Optional[nn.Module],
          dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    w = weight.detach().to(dtype)
    b = bias.detach().to(dtype) if bias is not None else torch.zeros(w.shape[0], dtype=dtype, device=w.device)
    if bn is None:
        return w, b
    scale = bn.weight.detach().to(dtype) / torch.sqrt(bn.running_var.detach().to(dtype) + bn.eps)
    shape = (-1,) + (1,) * (w.dim() - 1)
    return w * scale.view(shape), bn.bias.detach().to(dtype) + (b - bn.running_mean.detach().to(dtype)) * scale


def fold_conv_bn(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d],
                 dtype: torch.dtype = torch.float64) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of the conv equal to ``bn(conv(x))`` (eval mode), or of ``conv`` alone, computed in
    ``dtype`` (float64 by default; the SNN runtime folds in float32, which follows SpikingJelly's own float32
    rounding more closely where a spike hangs on the last bit)."""
    return _fold(conv.weight, conv.bias, bn, dtype)


def fold_linear_bn(linear: nn.Linear, bn: Optional[nn.BatchNorm1d],
                   dtype: torch.dtype = torch.float64) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of the Linear equal to ``bn(linear(x))`` (eval mode), or of ``linear``, in ``dtype``."""
    return _fold(linear.weight, linear.bias, bn, dtype)
