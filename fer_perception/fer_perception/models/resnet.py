"""ResNet-18/34 (BasicBlock) in plain torch, with torchvision's state_dict key names.

The layout (``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``; blocks ``layerN.K.conv1/bn1/conv2/bn2``
and ``layerN.0.downsample.0/1``) is the one of torchvision's ``resnet18``/``resnet34``, so their checkpoints
(and checkpoints of models built on them, like DAN's trunk) load with unchanged keys. torchvision itself is
never imported.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from fer_perception.errors import ConfigError

#: Blocks per stage of each supported depth.
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: He (fan-out) normal for every conv, every BatchNorm the identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A BasicBlock ResNet: ``forward`` gives class logits, ``forward_features`` the pooled 512-d vector."""

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ConfigError(f"ResNet layers must be 4 positive block counts, got {tuple(layers)}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        self.feature_dim = 512
        init_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        mods: List[nn.Module] = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        mods += [BasicBlock(planes, planes) for _ in range(1, int(blocks))]
        return nn.Sequential(*mods)

    def trunk(self) -> List[nn.Module]:
        """The eight modules before ``avgpool`` (conv1, bn1, relu, maxpool, layer1..4), in order."""
        return [self.conv1, self.bn1, self.relu, self.maxpool, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.trunk():
            x = m(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def resnet(depth: int = 18, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """A ResNet-18 or ResNet-34 with torchvision's key names."""
    if depth not in DEPTHS:
        raise ConfigError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
    return ResNet(DEPTHS[depth], num_classes=num_classes, in_channels=in_channels)


def resnet18(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    return resnet(18, num_classes, in_channels)


def resnet34(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    return resnet(34, num_classes, in_channels)
