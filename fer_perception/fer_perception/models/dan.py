"""DAN (Distract your Attention Network; Wen et al. 2023) with the official state_dict layout (docs/facts.md#dan).

Structure (facts from yaoing/DAN, this is our own code): a ResNet-18 trunk without avgpool/fc as ``features``
(``nn.Sequential`` indices 0..7), ``num_head`` cross-attention heads ``cat_head{i}`` each made of a spatial
attention (1x1 conv 512->256 + BN; 3x3, 1x3 and 3x1 conv+BN branches back to 512, summed, ReLU; summed over
channels; ``x * y``) and a channel attention (GAP, Linear 512->32, BN1d, ReLU, Linear 32->512, Sigmoid;
``gap * att``). The heads are stacked ``(B, H, 512)``, log-softmaxed across heads when there is more than
one, summed, then ``fc`` Linear(512, C) and ``bn`` BatchNorm1d(C). ``forward`` returns
``(logits, features, heads)``.

Official checkpoints (``affecnet8_epoch5_acc0.6209.pth`` 8 classes, ``affecnet7_epoch6_acc0.6569.pth`` and
``rafdb_epoch21_acc0.897_bacc0.8275.pth`` 7 classes) are dicts ``{'iter', 'model_state_dict',
'optimizer_state_dict'}``; :func:`load_dan` reads them (and our own checkpoints) strictly. Preprocessing is the
official one: RGB, resize to 224x224 with Pillow's bilinear filter (torchvision ``Resize`` on PIL
images), [0, 1], ImageNet mean/std (:data:`DAN_PREPROCESS`).

The training losses (:class:`AffinityLoss`, :class:`PartitionLoss`) are added to cross-entropy with weight 1.

:func:`fuse_for_inference` returns an eval-only copy with the same maths and a cheaper graph (RepVGG-style
re-parameterisation): in each spatial attention the BatchNorms are folded into their convs and the 3x3, 1x3 and
3x1 branches become one 3x3 conv. :func:`inference_logits` goes further for the runtime (the ONNX export uses
it): a logits-only module whose ``num_head`` heads run as one batch (:class:`FusedHeads`: one 1x1 conv, one
grouped 3x3 conv, attention pooling as one matmul, the channel-attention Linears batched with their BatchNorm
folded, ``bn`` folded into ``fc``) and whose trunk runs the stride-1 3x3 convs of layer2, layer3 and layer4 as
Winograd F(4x4, 3x3) / F(2x2, 3x3) (:mod:`fer_perception.models.winograd`: 36 instead of 144, 16 instead of 36
products per output tile). All of it is exact algebra; only float rounding differs (measured ~2e-5 on logits
of ~20, the size of the official graph's own float32 rounding against float64). The training model and its
state_dict keys are left as they are.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fer_perception import labels as L
from fer_perception.errors import CheckpointError, ConfigError
from fer_perception.models.frame_checkpoint import (
    float_state,
    is_frame_checkpoint,
    load_state_dict_strict,
    torch_load,
)
from fer_perception.models.fold import fold_conv_bn, fold_linear_bn
from fer_perception.models.resnet import resnet18
from fer_perception.models.winograd import FusedBasicBlock, static_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Official DAN preprocessing, in the form runtime/frame_models.py understands.
DAN_PREPROCESS: Dict[str, Any] = {"size": 224, "color": "rgb", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                                  "resize": "pil"}
#: Class order by checkpoint family (docs/facts.md#dan).
CLASS_SETS: Dict[str, Tuple[str, ...]] = {
    "rafdb": L.RAFDB_CLASSES,
    "affectnet8": L.AFFECTNET8_CLASSES,
    "affectnet7": L.AFFECTNET7_CLASSES,
}


class SpatialAttention(nn.Module):
    """1x1 reduction then three asymmetric conv branches, summed over channels into one spatial map."""

    def __init__(self, channels: int = 512, reduced: int = 256):
        super().__init__()
        self.conv1x1 = nn.Sequential(nn.Conv2d(channels, reduced, kernel_size=1), nn.BatchNorm2d(reduced))
        self.conv_3x3 = nn.Sequential(nn.Conv2d(reduced, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.conv_1x3 = nn.Sequential(nn.Conv2d(reduced, channels, (1, 3), padding=(0, 1)), nn.BatchNorm2d(channels))
        self.conv_3x1 = nn.Sequential(nn.Conv2d(reduced, channels, (3, 1), padding=(1, 0)), nn.BatchNorm2d(channels))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1x1(x)
        y = self.relu(self.conv_3x3(y) + self.conv_1x3(y) + self.conv_3x1(y))
        return x * y.sum(dim=1, keepdim=True)


class FusedSpatialAttention(nn.Module):
    """Inference form of :class:`SpatialAttention`: 1x1 conv (BN folded), one 3x3 conv (three branches folded).

    Equal to the source module in eval mode (up to float rounding); built by :meth:`from_spatial_attention`.
    """

    def __init__(self, channels: int = 512, reduced: int = 256):
        super().__init__()
        self.conv1x1 = nn.Conv2d(channels, reduced, kernel_size=1)
        self.conv = nn.Conv2d(reduced, channels, 3, padding=1)
        self.relu = nn.ReLU()

    @classmethod
    def from_spatial_attention(cls, sa: SpatialAttention) -> "FusedSpatialAttention":
        """Fold ``sa``'s BatchNorms (running statistics) and sum its zero-padded 3x3, 1x3 and 3x1 kernels."""
        reduce_conv = sa.conv1x1[0]
        out = cls(reduce_conv.in_channels, reduce_conv.out_channels)
        w1, b1 = fold_conv_bn(sa.conv1x1[0], sa.conv1x1[1])
        w33, b33 = fold_conv_bn(sa.conv_3x3[0], sa.conv_3x3[1])
        w13, b13 = fold_conv_bn(sa.conv_1x3[0], sa.conv_1x3[1])
        w31, b31 = fold_conv_bn(sa.conv_3x1[0], sa.conv_3x1[1])
        # a 1x3 kernel with padding (0, 1) is a 3x3 kernel with zero top/bottom rows and padding 1; same for 3x1
        w = w33 + F.pad(w13, (0, 0, 1, 1)) + F.pad(w31, (1, 1, 0, 0))
        with torch.no_grad():
            out.conv1x1.weight.copy_(w1.to(reduce_conv.weight.dtype))
            out.conv1x1.bias.copy_(b1.to(reduce_conv.weight.dtype))
            out.conv.weight.copy_(w.to(reduce_conv.weight.dtype))
            out.conv.bias.copy_((b33 + b13 + b31).to(reduce_conv.weight.dtype))
        return out.to(reduce_conv.weight.device).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv(self.conv1x1(x)))
        return x * y.sum(dim=1, keepdim=True)


class ChannelAttention(nn.Module):
    """Global average pooling then a 512->32->512 gate."""

    def __init__(self, channels: int = 512, hidden: int = 32):
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.attention = nn.Sequential(
            nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(self.gap(x), 1)
        return pooled * self.attention(pooled)


class CrossAttentionHead(nn.Module):
    """Spatial then channel attention; returns one 512-d vector per image."""

    def __init__(self):
        super().__init__()
        self.sa = SpatialAttention()
        self.ca = ChannelAttention()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ca(self.sa(x))


class DAN(nn.Module):
    """DAN with ``num_head`` attention heads over a ResNet-18 trunk; ``forward -> (logits, features, heads)``."""

    def __init__(self, num_class: int = 7, num_head: int = 4):
        super().__init__()
        if num_class < 2:
            raise ConfigError(f"DAN num_class must be >= 2, got {num_class}")
        if num_head < 1:
            raise ConfigError(f"DAN num_head must be >= 1, got {num_head}")
        self.num_class = int(num_class)
        self.num_head = int(num_head)
        self.features = nn.Sequential(*resnet18().trunk())
        for i in range(self.num_head):
            setattr(self, f"cat_head{i}", CrossAttentionHead())
        self.fc = nn.Linear(512, self.num_class)
        self.bn = nn.BatchNorm1d(self.num_class)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        heads = torch.stack([getattr(self, f"cat_head{i}")(feats) for i in range(self.num_head)], dim=1)
        if self.num_head > 1:
            heads = F.log_softmax(heads, dim=1)
        logits = self.bn(self.fc(heads.sum(dim=1)))
        return logits, feats, heads


def fuse_for_inference(model: DAN) -> DAN:
    """An eval-mode copy of ``model`` whose spatial attentions are :class:`FusedSpatialAttention` (same maths).

    ``model`` itself is not modified (its state_dict keeps the official layout). The copy is for inference and
    export only: its BatchNorm statistics are frozen into conv weights, so it must not be trained.
    """
    fused = copy.deepcopy(model).eval()
    for i in range(fused.num_head):
        head = getattr(fused, f"cat_head{i}")
        if isinstance(head.sa, SpatialAttention):
            head.sa = FusedSpatialAttention.from_spatial_attention(head.sa)
    return fused


class FusedHeads(nn.Module):
    """All cross-attention heads of a DAN plus its ``fc``/``bn`` as one batched, BatchNorm-free computation.

    Inference form of ``cat_head0..H-1`` -> stack -> log_softmax -> sum -> ``fc`` -> ``bn`` (eval mode), built by
    :meth:`from_dan`. The heads share their input, so their 1x1 convs are one conv with ``H * 256`` outputs and
    their (branch-fused) 3x3 convs one conv with ``groups=H``; ``GAP(x * s)`` is ``s @ x^T / P`` over the ``P``
    pixels (one matmul for all heads); the channel attention's Linear+BN1d and Linear run as ``(H, 512, 32)``
    and ``(H, 32, 512)`` batched matmuls; ``bn`` is folded into ``fc``. Input: the trunk's ``(B, 512, h, w)``;
    output: the logits ``(B, num_class)``.
    """

    def __init__(self, num_head: int, num_class: int, channels: int = 512, reduced: int = 256, hidden: int = 32):
        super().__init__()
        self.num_head, self.channels = int(num_head), int(channels)
        self.conv1x1 = nn.Conv2d(channels, reduced * num_head, kernel_size=1)
        self.conv = nn.Conv2d(reduced * num_head, channels * num_head, 3, padding=1, groups=num_head)
        self.register_buffer("ca_w1", torch.zeros(num_head, channels, hidden))
        self.register_buffer("ca_b1", torch.zeros(num_head, 1, hidden))
        self.register_buffer("ca_w2", torch.zeros(num_head, hidden, channels))
        self.register_buffer("ca_b2", torch.zeros(num_head, 1, channels))
        self.fc = nn.Linear(channels, num_class)

    @classmethod
    def from_dan(cls, dan: DAN) -> "FusedHeads":
        """Fold ``dan``'s heads (BatchNorm running statistics, conv branches) and ``fc``/``bn`` into one module."""
        heads = [getattr(dan, f"cat_head{i}") for i in range(dan.num_head)]
        sas = [h.sa if isinstance(h.sa, FusedSpatialAttention) else FusedSpatialAttention.from_spatial_attention(h.sa)
               for h in heads]
        ref = dan.fc.weight
        out = cls(dan.num_head, dan.num_class, sas[0].conv1x1.in_channels, sas[0].conv1x1.out_channels,
                  heads[0].ca.attention[0].out_features)
        w1, b1, w2, b2 = [], [], [], []
        for h in heads:
            att = h.ca.attention
            w, b = fold_linear_bn(att[0], att[1])
            w1.append(w.t())
            b1.append(b[None])
            w2.append(att[3].weight.detach().double().t())
            b2.append(att[3].bias.detach().double()[None])
        wf, bf = fold_linear_bn(dan.fc, dan.bn)
        with torch.no_grad():
            out.conv1x1.weight.copy_(torch.cat([s.conv1x1.weight for s in sas]))
            out.conv1x1.bias.copy_(torch.cat([s.conv1x1.bias for s in sas]))
            out.conv.weight.copy_(torch.cat([s.conv.weight for s in sas]))
            out.conv.bias.copy_(torch.cat([s.conv.bias for s in sas]))
            for name, parts in (("ca_w1", w1), ("ca_b1", b1), ("ca_w2", w2), ("ca_b2", b2)):
                getattr(out, name).copy_(torch.stack(parts).to(ref.dtype))
            out.fc.weight.copy_(wf.to(ref.dtype))
            out.fc.bias.copy_(bf.to(ref.dtype))
        return out.to(ref.device).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = static_size(x, 2) * static_size(x, 3)                       # pixels (static in an ONNX export)
        y = torch.relu(self.conv(self.conv1x1(x)))                       # (B, H * C, h, w)
        s = y.reshape(-1, self.num_head, self.channels, p).sum(dim=2)    # (B, H, P): each head's spatial map
        xf = x.reshape(-1, self.channels, p)                             # (B, C, P)
        pooled = torch.matmul(s, xf.transpose(1, 2)) / p               # (B, H, C) = GAP(x * s) per head
        pooled = pooled.unsqueeze(2)                                     # (B, H, 1, C)
        att = torch.relu(torch.matmul(pooled, self.ca_w1) + self.ca_b1)
        att = torch.sigmoid(torch.matmul(att, self.ca_w2) + self.ca_b2)
        heads = (pooled * att).squeeze(2)                                # (B, H, C)
        if self.num_head > 1:
            heads = F.log_softmax(heads, dim=1)
        return self.fc(heads.sum(dim=1))


class FusedDANLogits(nn.Module):
    """Logits-only inference form of :class:`DAN`: its ``features`` trunk then :class:`FusedHeads`."""

    def __init__(self, features: nn.Module, heads: FusedHeads):
        super().__init__()
        self.features = features
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.features(x))


#: Winograd output tile (F(t x t, 3x3)) by ResNet-18 stage (1..4) for :func:`inference_logits`'s stride-1 3x3
#: convs; stages left out stay direct. Chosen by measurement through onnxruntime on 2 cores at 224 px
#: (A/B in one process, 4 chained convs per shape): layer2 (28x28x128) F(4x4) -0.3 ms per conv (F(2x2) -0.15),
#: layer3 (14x14x256) F(2x2) -0.24 ms (F(4x4) pads 14 to 16 and gains less), layer4 (7x7x512) F(2x2) -0.07 ms
#: (bound by reading its weights, which Winograd makes larger), layer1 (56x56x64) no gain (the transforms move
#: too much data). Whole graph: ~19.6 -> ~17.7 ms.
WINOGRAD_TILES: Dict[int, int] = {2: 4, 3: 2, 4: 2}


def inference_logits(model: DAN, winograd: Optional[Dict[int, int]] = None) -> FusedDANLogits:
    """An eval-only module computing ``model(x)[0]`` (the logits): heads fused (:class:`FusedHeads`), and in
    the trunk stages named in ``winograd`` (``{stage 1..4: output tile 2 or 4}``, default
    :data:`WINOGRAD_TILES`; ``{}`` keeps the trunk as it is) BatchNorms folded and the stride-1 3x3 convs
    computed as Winograd F(t x t, 3x3) (:mod:`fer_perception.models.winograd`).

    What the runtime exports to ONNX. ``model`` is not modified; the result must not be trained.
    """
    tiles = dict(WINOGRAD_TILES if winograd is None else winograd)
    bad = {k: v for k, v in tiles.items() if k not in (1, 2, 3, 4) or v not in (2, 4)}
    if bad:
        raise ConfigError(f"winograd maps ResNet stages 1..4 to output tiles 2 or 4, got {bad}")
    src = copy.deepcopy(model).eval()
    features = src.features
    for stage, tile in sorted(tiles.items()):
        layer = features[3 + stage]  # features: conv1, bn1, relu, maxpool, layer1..layer4
        features[3 + stage] = nn.Sequential(*[FusedBasicBlock.from_block(b, tile) for b in layer])
    return FusedDANLogits(features, FusedHeads.from_dan(src)).eval()


class DANLogits(nn.Module):
    """DAN reduced to its logits (what inference and ONNX export need)."""

    def __init__(self, dan: DAN):
        super().__init__()
        self.dan = dan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dan(x)[0]


class AffinityLoss(nn.Module):
    """Mean squared distance of pooled features to learnable class centres, over the centres' variance."""

    def __init__(self, num_class: int, feat_dim: int = 512):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_class, feat_dim))

    def forward(self, feature_map: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = feature_map.mean(dim=(2, 3)) if feature_map.dim() == 4 else feature_map
        dist = ((x - self.centers[target]) ** 2).sum(dim=1)
        return (dist / self.centers.var(dim=0).sum()).clamp(1e-12, 1e12).mean()


class PartitionLoss(nn.Module):
    """``log(1 + H / mean variance across heads)``: pushes the heads to attend to different regions."""

    def forward(self, heads: torch.Tensor) -> torch.Tensor:
        num_head = heads.size(1)
        if num_head < 2:
            return heads.new_zeros(())
        return torch.log1p(num_head / heads.var(dim=1).mean())


def classes_for(
    path: "str | os.PathLike", num_class: int, classes: Optional[Sequence[str] | str] = None
) -> Tuple[str, ...]:
    """The class order of a DAN checkpoint: from ``classes`` (a family name or a list), else from its file name."""
    if classes is not None:
        if isinstance(classes, str):
            key = classes.strip().lower().replace("-", "").replace("_", "").replace("affecnet", "affectnet")
            if key not in CLASS_SETS:
                raise ConfigError(f"unknown DAN class set {classes!r}; choose one of {sorted(CLASS_SETS)}")
            out = CLASS_SETS[key]
        else:
            out = tuple(str(c) for c in classes)
    else:
        name = os.path.basename(os.fspath(path)).lower().replace("-", "").replace("_", "")
        name = name.replace("affecnet", "affectnet")
        found = [k for k in CLASS_SETS if k in name]
        if found:
            out = CLASS_SETS[found[0]]
        elif num_class == 8:
            out = L.AFFECTNET8_CLASSES
        else:
            raise ConfigError(
                f"cannot tell the class order of {os.fspath(path)} ({num_class} classes) from its name; "
                f"pass classes= one of {sorted(CLASS_SETS)}"
            )
    if len(out) != num_class:
        raise ConfigError(f"class list has {len(out)} names but the checkpoint has {num_class} outputs")
    return tuple(out)


def load_dan(
    path: "str | os.PathLike", classes: Optional[Sequence[str] | str] = None
) -> Tuple[DAN, Tuple[str, ...], Dict[str, Any]]:
    """Load an official DAN checkpoint or one of ours; returns ``(model in eval mode, classes, info)``."""
    blob = torch_load(path)
    info: Dict[str, Any] = {"source": os.fspath(path)}
    if is_frame_checkpoint(blob):
        if blob["kind"] != "dan":
            raise CheckpointError(f"{os.fspath(path)} holds a {blob['kind']!r} model, not DAN")
        state = float_state(blob["state_dict"])
        own_classes = blob.get("classes") or None
        info.update(meta=blob.get("meta", {}), format="fer_perception", preprocess=blob.get("preprocess") or None)
    elif isinstance(blob, dict) and "model_state_dict" in blob:
        state, own_classes = blob["model_state_dict"], None
        info.update(iter=blob.get("iter"), format="official")
    elif isinstance(blob, dict) and blob and all(hasattr(v, "shape") for v in blob.values()):
        state, own_classes = blob, None
        info.update(format="state_dict")
    else:
        top = sorted(blob)[:10] if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{os.fspath(path)} is not a DAN checkpoint (top level: {top})")
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    if "fc.weight" not in state:
        raise CheckpointError(f"{os.fspath(path)}: no 'fc.weight' key, not a DAN state_dict")
    num_class = int(state["fc.weight"].shape[0])
    num_head = len({k.split(".")[0] for k in state if k.startswith("cat_head")})
    model = DAN(num_class=num_class, num_head=max(1, num_head))
    load_state_dict_strict(model, state, source=os.fspath(path))
    model.eval()
    names = classes_for(path, num_class, classes if classes is not None else own_classes)
    return model, names, info
