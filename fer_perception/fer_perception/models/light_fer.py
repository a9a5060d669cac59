"""A small expression CNN for CPU-only robots: 48x48 or 64x64 grayscale faces (FER2013-style input).

Four stages of (3x3 conv, BN, ReLU) x 2 and 2x2 max-pooling, widths ``width * (1, 2, 4, 8)``, then global
average pooling, dropout and one linear layer. With the default ``width=16`` it has about 0.3 M parameters
(1.2 MB in float32) and runs in about a millisecond per face on one CPU core. ``LightBackbone`` is the same
feature extractor without the classifier (the age/gender "light" backbone reuses it on RGB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

import torch
from torch import nn

from fer_perception.errors import ConfigError

SUPPORTED_SIZES = (48, 64)


@dataclass
class LightFerConfig:
    """Constructor arguments of :class:`LightFER` (stored in checkpoints)."""

    n_classes: int = 7
    in_channels: int = 1
    input_size: int = 48
    width: int = 16
    dropout: float = 0.3

    def validate(self) -> "LightFerConfig":
        if self.n_classes < 2:
            raise ConfigError(f"light model n_classes must be >= 2, got {self.n_classes}")
        if self.in_channels not in (1, 3):
            raise ConfigError(f"light model in_channels must be 1 (gray) or 3 (RGB), got {self.in_channels}")
        if self.input_size not in SUPPORTED_SIZES:
            raise ConfigError(f"light model input_size must be one of {SUPPORTED_SIZES}, got {self.input_size}")
        if self.width < 4:
            raise ConfigError(f"light model width must be >= 4, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"light model dropout must be in [0, 1), got {self.dropout}")
        return self

    def preprocess(self) -> Dict[str, Any]:
        """The preprocessing the runtime applies to crops for this model."""
        return {"size": self.input_size, "color": "gray" if self.in_channels == 1 else "rgb",
                "mean": [0.5] * self.in_channels, "std": [0.5] * self.in_channels}

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class LightBackbone(nn.Module):
    """Four conv stages and global average pooling: ``(B, C, S, S) -> (B, 8 * width)``."""

    def __init__(self, in_channels: int = 1, width: int = 16):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        cins = [in_channels] + widths[:-1]
        self.stages = nn.Sequential(*[_stage(a, b) for a, b in zip(cins, widths)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(x)), 1)


class LightFER(nn.Module):
    """The light expression classifier: ``(B, in_channels, S, S)`` normalised crops -> ``(B, n_classes)`` logits."""

    def __init__(self, config: LightFerConfig | None = None, **kwargs: Any):
        super().__init__()
        self.config = (config or LightFerConfig(**kwargs)).validate()
        self.backbone = LightBackbone(self.config.in_channels, self.config.width)
        self.dropout = nn.Dropout(self.config.dropout)
        self.classifier = nn.Linear(self.backbone.feature_dim, self.config.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.backbone(x)))
