"""Test helpers shared by the model tests: trained-like BatchNorm statistics and random spike frames."""

from __future__ import annotations

import torch


def trained_like(model: torch.nn.Module, seed: int = 0, bias_scale: float = 0.3) -> torch.nn.Module:
    """``model`` in eval mode with non-trivial BatchNorm affine parameters and running statistics.

    A freshly initialised network has identity BatchNorms (nothing for a fusion to fold, and an SNN whose
    deep layers barely fire); these values make every layer of a Spiking-FER fire like a trained one.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * bias_scale)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def spike_frames(batch: int, t: int = 6, size: int = 64, density: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Binary event frames ``(batch, t, 2, size, size)`` with ``density`` of the pixels on."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, t, 2, size, size, generator=g) < density).float()
