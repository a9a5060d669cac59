"""One multi-task network for apparent age and gender: a shared backbone and two heads.

- backbone: ``"resnet18"`` (plain-torch ResNet-18, torchvision key names under ``backbone.``) or ``"light"``
  (the :class:`~fer_perception.models.light_fer.LightBackbone` on RGB);
- gender head: 2-way classification (index 0 male, 1 female, the UTKFace convention);
- age head: regresses the mean and the log-variance of a Gaussian over age, trained with the Gaussian negative
  log-likelihood, so ``age_std = exp(0.5 * log_var)`` is a meaningful per-face uncertainty.

The age output is affine-normalised inside the network (buffers ``age_center``/``age_scale`` set from the
training data), so the exported model returns years directly: ``forward -> (gender_logits (B, 2),
age_mean (B,) in years, age_log_var (B,) in log years^2)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import torch
from torch import nn

from fer_perception.errors import ConfigError
from fer_perception.models.dan import IMAGENET_MEAN, IMAGENET_STD
from fer_perception.models.light_fer import LightBackbone
from fer_perception.models.resnet import resnet18

BACKBONES = ("resnet18", "light")
GENDERS = ("male", "female")
#: log-variance bounds (in normalised units): keeps the NLL finite and age_std within sane limits.
LOG_VAR_MIN, LOG_VAR_MAX = -9.0, 4.0


@dataclass
class AgeGenderConfig:
    """Constructor arguments of :class:`AgeGenderNet` (stored in checkpoints)."""

    backbone: str = "light"
    input_size: int = 64
    width: int = 16
    dropout: float = 0.2
    age_center: float = 35.0
    age_scale: float = 20.0

    def validate(self) -> "AgeGenderConfig":
        if self.backbone not in BACKBONES:
            raise ConfigError(f"age/gender backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.input_size < 32:
            raise ConfigError(f"age/gender input_size must be >= 32, got {self.input_size}")
        if self.age_scale <= 0:
            raise ConfigError(f"age/gender age_scale must be > 0, got {self.age_scale}")
        return self

    def preprocess(self) -> Dict[str, Any]:
        if self.backbone == "resnet18":
            return {"size": self.input_size, "color": "rgb", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        return {"size": self.input_size, "color": "rgb", "mean": [0.5] * 3, "std": [0.5] * 3}

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class _ResNetFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = resnet18()
        del self.net.fc
        self.feature_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


class AgeGenderNet(nn.Module):
    """Shared backbone, gender logits and a Gaussian age head."""

    def __init__(self, config: AgeGenderConfig | None = None, **kwargs: Any):
        super().__init__()
        self.config = (config or AgeGenderConfig(**kwargs)).validate()
        if self.config.backbone == "resnet18":
            self.backbone = _ResNetFeatures()
        else:
            self.backbone = LightBackbone(3, self.config.width)
        dim = self.backbone.feature_dim
        self.dropout = nn.Dropout(self.config.dropout)
        self.gender_head = nn.Linear(dim, 2)
        self.age_head = nn.Linear(dim, 2)
        nn.init.zeros_(self.age_head.bias)
        self.register_buffer("age_center", torch.tensor(float(self.config.age_center)))
        self.register_buffer("age_scale", torch.tensor(float(self.config.age_scale)))

    def forward_normalised(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(gender_logits, age mean, age log-variance)`` with age in normalised units (for the loss)."""
        f = self.dropout(self.backbone(x))
        age = self.age_head(f)
        log_var = age[:, 1].clamp(LOG_VAR_MIN, LOG_VAR_MAX)
        return self.gender_head(f), age[:, 0], log_var

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gender, mu, log_var = self.forward_normalised(x)
        return gender, self.age_center + self.age_scale * mu, log_var + 2.0 * torch.log(self.age_scale)


def gaussian_nll(mu: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood (without the constant) of ``target`` under N(mu, exp(log_var))."""
    return 0.5 * (log_var + (target - mu) ** 2 * torch.exp(-log_var)).mean()


def age_std_from_log_var(log_var):
    """Standard deviation in years from the network's log-variance output (numpy or torch)."""
    if isinstance(log_var, torch.Tensor):
        return torch.exp(0.5 * log_var)
    import numpy as np

    return np.exp(0.5 * np.asarray(log_var, dtype=np.float64)).astype(np.float32)
