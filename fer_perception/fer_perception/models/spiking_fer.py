"""Spiking-FER models: the spiking SEW-ResNet-18 and its ResNet-18 CNN baseline (docs/facts.md#spiking-fer).

Both reproduce the official Barchid/spiking-fer module structure, so an official Lightning checkpoint loads
into them strictly once its ``model.`` prefix is stripped (``models/checkpoint.py``):

- :class:`SpikingFER`: SEW-ResNet-18 (``cnf="ADD"``, zero-init residual) of multi-step IF neurons
  (threshold 1, hard reset to 0, detached reset, ATan surrogate alpha 2). ``conv1`` takes the 2 polarity
  channels. After the global average pool, every step goes through ``encoder.fc`` = Linear(512, 512) +
  Dropout(0.5) into an IF neuron with infinite threshold; its membrane potential after the last step (the sum
  over T of the fc outputs) feeds ``fc`` = Linear(512, n_classes, bias=False). Input ``(T, B, 2, H, W)``.
- :class:`CNNBaseline`: plain ResNet-18 whose ``conv1`` takes the T frames stacked as 2T channels
  (channel ``2*t + polarity``), then ``fc`` = Linear(512, n_classes, bias=False). Input ``(B, 2T, H, W)`` or
  the SNN's ``(T, B, 2, H, W)``.

``width`` scales every channel count (64, 128, 256, 512 and the 512 hidden units), for narrow CPU demo models.
Only ``spikingjelly.activation_based.{neuron,layer,functional,surrogate}`` is used, without ``backend=``, so
the code runs on SpikingJelly 0.0.0.0.14 and 2.0.x. torch and SpikingJelly are imported when this module is
imported: import it lazily from code that must start instantly (the CLI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .resnet import init_weights

__all__ = [
    "SpikingFER",
    "CNNBaseline",
    "SewBasicBlock",
    "SewResNetEncoder",
    "ResNetEncoder",
    "ModelConfig",
    "MODEL_KINDS",
    "build_model",
    "model_kind",
    "model_config",
    "channel_widths",
    "count_parameters",
    "frames_to_channels",
    "state_dict_shapes",
]

#: Model kinds :func:`build_model` knows.
MODEL_KINDS: Tuple[str, ...] = ("snn", "cnn")

_BASE_WIDTHS: Tuple[int, int, int, int] = (64, 128, 256, 512)


def _quiet_missing_triton() -> None:
    """Without Triton (CPU torch), SpikingJelly 2's first forward registers its Triton ops and torch logs
    "Triton not available, find_triton_kernels = []" once per op: true, expected and of no use to a user."""
    import importlib.util
    import logging

    if importlib.util.find_spec("triton") is None:
        logging.getLogger("torch._library.triton").setLevel(logging.ERROR)


def _sj():
    """The SpikingJelly sub-modules we use (imported here so a missing install gives a clear error)."""
    _quiet_missing_triton()
    try:
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
    except ImportError as exc:  # pragma: no cover - spikingjelly is a hard dependency of the package
        from ..errors import DependencyError

        raise DependencyError(
            "spikingjelly is required for the Spiking-FER models: pip install spikingjelly"
        ) from exc
    return neuron, layer, functional, surrogate


def channel_widths(width: float) -> Tuple[int, int, int, int]:
    """Channel counts of the four ResNet stages at width multiplier ``width`` (at least 1 channel each)."""
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ConfigError(f"model width multiplier must be a finite number > 0, got {width!r}")
    return tuple(max(1, int(round(c * width))) for c in _BASE_WIDTHS)  # type: ignore[return-value]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return int(sum(p.numel() for p in model.parameters()))


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a Spiking-FER model: what checkpoints store next to the weights."""

    kind: str = "snn"
    n_classes: int = 6
    timesteps: int = 6
    width: float = 1.0
    in_channels: int = 2
    input_size: int = 128

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        for name in ("n_classes", "timesteps", "in_channels", "input_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model {name} must be an integer >= 1, got {value!r}")
        if self.input_size < 32:
            raise ConfigError(f"model input_size must be >= 32 (five stride-2 stages), got {self.input_size}")
        channel_widths(self.width)


def _if_node(neuron, surrogate, v_threshold: float = 1.0):
    """A multi-step IF neuron with the Spiking-FER settings (hard reset to 0, detached reset, ATan(2))."""
    return neuron.IFNode(
        v_threshold=v_threshold,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(alpha=2.0),
        detach_reset=True,
        step_mode="m",
    )


class SewBasicBlock(nn.Module):
    """SEW basic block, multi-step: ``SN(BN(conv(SN(BN(conv(x)))))) + identity`` (ADD connect function).

    The shortcut, where shape changes, is ``downsample`` = 1x1 conv + BN followed by its own IF neuron
    (``downsample_sn``), as in SEW-ResNet.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        neuron, layer, _, surrogate = _sj()
        self.conv1 = layer.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False, step_mode="m")
        self.bn1 = layer.BatchNorm2d(planes, step_mode="m")
        self.sn1 = _if_node(neuron, surrogate)
        self.conv2 = layer.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False, step_mode="m")
        self.bn2 = layer.BatchNorm2d(planes, step_mode="m")
        self.sn2 = _if_node(neuron, surrogate)
        self.downsample: Optional[nn.Sequential] = None
        self.downsample_sn: Optional[nn.Module] = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                layer.Conv2d(in_planes, planes, 1, stride=stride, bias=False, step_mode="m"),
                layer.BatchNorm2d(planes, step_mode="m"),
            )
            self.downsample_sn = _if_node(neuron, surrogate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sn1(self.bn1(self.conv1(x)))
        out = self.sn2(self.bn2(self.conv2(out)))
        identity = x if self.downsample is None else self.downsample_sn(self.downsample(x))
        return out + identity


class SewResNetEncoder(nn.Module):
    """Multi-step SEW-ResNet-18 trunk plus the Spiking-FER readout; returns the readout membrane potential.

    ``forward(x (T, B, C, H, W)) -> (B, hidden)``: the infinite-threshold IF neuron after ``fc`` never fires,
    so its potential after step T is the sum over t of ``fc(feature_t)``. Call
    ``functional.reset_net`` before every new window (``SpikingFER.forward`` does).
    """

    def __init__(self, in_channels: int = 2, width: float = 1.0, dropout: float = 0.5) -> None:
        super().__init__()
        neuron, layer, _, surrogate = _sj()
        c1, c2, c3, c4 = channel_widths(width)
        self.conv1 = layer.Conv2d(in_channels, c1, 7, stride=2, padding=3, bias=False, step_mode="m")
        self.bn1 = layer.BatchNorm2d(c1, step_mode="m")
        self.sn1 = _if_node(neuron, surrogate)
        self.maxpool = layer.MaxPool2d(3, stride=2, padding=1, step_mode="m")
        self.layer1 = nn.Sequential(SewBasicBlock(c1, c1), SewBasicBlock(c1, c1))
        self.layer2 = nn.Sequential(SewBasicBlock(c1, c2, 2), SewBasicBlock(c2, c2))
        self.layer3 = nn.Sequential(SewBasicBlock(c2, c3, 2), SewBasicBlock(c3, c3))
        self.layer4 = nn.Sequential(SewBasicBlock(c3, c4, 2), SewBasicBlock(c4, c4))
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = nn.Sequential(
            layer.Linear(c4, c4, bias=True, step_mode="m"),
            layer.Dropout(dropout, step_mode="m"),
        )
        self.readout = _if_node(neuron, surrogate, v_threshold=float("inf"))
        self.out_features = c4
        init_weights(self)
        for m in self.modules():  # zero-init residual: every block starts as its shortcut
            if isinstance(m, SewBasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step pooled features ``(T, B, C4)`` of input ``(T, B, C, H, W)`` (state must be reset)."""
        x = self.maxpool(self.sn1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.readout(self.fc(self.features(x)))
        return self.readout.v


def _check_snn_input(x: torch.Tensor, in_channels: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"model input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 5 or x.shape[2] != in_channels:
        raise ConfigError(
            f"SpikingFER input must have shape (T, B, {in_channels}, H, W), got {tuple(x.shape)}"
        )


class SpikingFER(nn.Module):
    """Spiking-FER classifier: :class:`SewResNetEncoder` + ``fc`` Linear(hidden, n_classes, bias=False).

    ``forward(x (T, B, 2, H, W)) -> logits (B, n_classes)``; resets all neuron states first, so windows are
    independent. Logits grow with T: use softmax for confidence. State-dict keys equal the official ones.
    """

    kind = "snn"

    def __init__(
        self,
        n_classes: int = 6,
        timesteps: int = 6,
        width: float = 1.0,
        in_channels: int = 2,
        input_size: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.config = ModelConfig("snn", n_classes, timesteps, float(width), in_channels, input_size)
        self.encoder = SewResNetEncoder(in_channels, width, dropout)
        self.fc = nn.Linear(self.encoder.out_features, n_classes, bias=False)

    @property
    def n_classes(self) -> int:
        return self.config.n_classes

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    def reset_state(self) -> None:
        """Reset every neuron's state (membrane potentials) to its initial value."""
        _sj()[2].reset_net(self.encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_snn_input(x, self.config.in_channels)
        self.reset_state()
        return self.fc(self.encoder(x))


def _resnet_block(in_planes: int, planes: int, stride: int = 1) -> nn.Module:
    """A standard ResNet basic block (:class:`fer_perception.models.resnet.BasicBlock`) with its 1x1 shortcut."""
    from fer_perception.models.resnet import BasicBlock

    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
    return BasicBlock(in_planes, planes, stride, downsample)


class ResNetEncoder(nn.Module):
    """ResNet-18 trunk with global average pooling: ``(B, C, H, W) -> (B, C4)``."""

    def __init__(self, in_channels: int = 12, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, c4 = channel_widths(width)
        self.conv1 = nn.Conv2d(in_channels, c1, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(_resnet_block(c1, c1), _resnet_block(c1, c1))
        self.layer2 = nn.Sequential(_resnet_block(c1, c2, 2), _resnet_block(c2, c2))
        self.layer3 = nn.Sequential(_resnet_block(c2, c3, 2), _resnet_block(c3, c3))
        self.layer4 = nn.Sequential(_resnet_block(c3, c4, 2), _resnet_block(c4, c4))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.out_features = c4
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def frames_to_channels(x: torch.Tensor) -> torch.Tensor:
    """``(T, B, 2, H, W)`` frames -> ``(B, 2T, H, W)`` with channel ``2*t + polarity`` (the CNN input)."""
    t, b, p, h, w = x.shape
    return x.permute(1, 0, 2, 3, 4).reshape(b, t * p, h, w)


class CNNBaseline(nn.Module):
    """The Spiking-FER CNN baseline: ResNet-18 on 2T stacked channels, then Linear(512, n_classes, bias=False).

    ``forward`` accepts ``(B, 2T, H, W)`` (channel ``2*t + polarity``) or the SNN layout ``(T, B, 2, H, W)``.
    """

    kind = "cnn"

    def __init__(
        self,
        n_classes: int = 6,
        timesteps: int = 6,
        width: float = 1.0,
        in_channels: int = 2,
        input_size: int = 128,
    ) -> None:
        super().__init__()
        self.config = ModelConfig("cnn", n_classes, timesteps, float(width), in_channels, input_size)
        self.encoder = ResNetEncoder(in_channels * timesteps, width)
        self.fc = nn.Linear(self.encoder.out_features, n_classes, bias=False)

    @property
    def n_classes(self) -> int:
        return self.config.n_classes

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    def reset_state(self) -> None:
        """No state: present for interface symmetry with :class:`SpikingFER`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ConfigError(f"model input must be a torch.Tensor, got {type(x).__name__}")
        channels = self.config.in_channels * self.config.timesteps
        if x.dim() == 5:
            if x.shape[0] != self.config.timesteps or x.shape[2] != self.config.in_channels:
                raise ConfigError(
                    f"CNNBaseline 5-D input must have shape ({self.config.timesteps}, B, "
                    f"{self.config.in_channels}, H, W), got {tuple(x.shape)}"
                )
            x = frames_to_channels(x)
        elif x.dim() != 4 or x.shape[1] != channels:
            raise ConfigError(
                f"CNNBaseline input must have shape (B, {channels}, H, W) or "
                f"({self.config.timesteps}, B, {self.config.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return self.fc(self.encoder(x))


def build_model(
    kind: str = "snn",
    n_classes: int = 6,
    timesteps: int = 6,
    width: float = 1.0,
    in_channels: int = 2,
    input_size: int = 128,
    dropout: float = 0.5,
) -> nn.Module:
    """Build a fresh :class:`SpikingFER` (``kind="snn"``) or :class:`CNNBaseline` (``kind="cnn"``)."""
    config = ModelConfig(kind, n_classes, timesteps, float(width), in_channels, input_size)
    if config.kind == "snn":
        return SpikingFER(n_classes, timesteps, width, in_channels, input_size, dropout)
    return CNNBaseline(n_classes, timesteps, width, in_channels, input_size)


def model_kind(model: nn.Module) -> str:
    """``"snn"`` or ``"cnn"`` for one of our models; :class:`ConfigError` otherwise."""
    if isinstance(model, SpikingFER):
        return "snn"
    if isinstance(model, CNNBaseline):
        return "cnn"
    raise ConfigError(f"not a Spiking-FER model: {type(model).__name__}")


def model_config(model: nn.Module) -> ModelConfig:
    """The :class:`ModelConfig` a model was built with."""
    model_kind(model)
    return model.config  # type: ignore[return-value]


def state_dict_shapes(model: nn.Module) -> List[Tuple[str, Tuple[int, ...]]]:
    """``[(key, shape), ...]`` of a model's state dict, in order (what the reference manifests list)."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
