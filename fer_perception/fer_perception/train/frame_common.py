"""Shared pieces of the frame-model training modules (``train/dan.py``, ``train/light.py``,
``train/agegender.py``): datasets over crops or image files, batch augmentation, a Lightning classifier task
that remembers its best weights, and evaluation helpers.

The Lightning trainer options, the report (metrics.json, confusion_matrix.png, learning curves) and the
confusion-matrix maths come from :mod:`fer_perception.train.common`.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from fer_perception.errors import ConfigError

log = logging.getLogger(__name__)


def group_split(groups: Sequence[Any], val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Train/validation indices with no group (subject, seed) on both sides."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {val_fraction}")
    g = np.asarray(groups)
    uniq = np.unique(g)
    if len(uniq) < 2:
        raise ConfigError("need at least two groups (subjects) to split train/validation")
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(len(uniq) * val_fraction)))
    val_groups = rng.choice(uniq, size=n_val, replace=False)
    is_val = np.isin(g, val_groups)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def augment_batch(x, *, max_shift: float = 0.06, max_scale: float = 0.08, max_rot_deg: float = 8.0,
                  brightness: float = 0.15, contrast: float = 0.2, flip: bool = True):
    """Random flip, small affine jitter and brightness/contrast of a normalised batch ``(B, C, H, W)``."""
    import math

    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    dev = x.device
    ang = (torch.rand(b, device=dev) * 2 - 1) * math.radians(max_rot_deg)
    sc = 1 + (torch.rand(b, device=dev) * 2 - 1) * max_scale
    tx, ty = [(torch.rand(b, device=dev) * 2 - 1) * 2 * max_shift for _ in range(2)]
    sx = torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0) if flip else torch.ones(b, device=dev)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * sx, -sin, tx], 1), torch.stack([sin * sx, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    out = F.grid_sample(x - mean, grid, padding_mode="zeros", align_corners=False) + mean
    c = 1 + (torch.rand(b, 1, 1, 1, device=dev) * 2 - 1) * contrast
    br = (torch.rand(b, 1, 1, 1, device=dev) * 2 - 1) * brightness * 2
    return (out - mean) * c + mean + br


def random_erasing(x, *, p: float = 0.5, scale=(0.02, 0.25), ratio=(0.3, 3.3)):
    """Zero one random rectangle (area ``scale`` of the image, aspect ``ratio``) in each image with
    probability ``p`` - torchvision's RandomErasing (value 0), vectorised over the batch."""
    import torch

    b, _, h, w = x.shape
    dev = x.device
    area = (torch.rand(b, device=dev) * (scale[1] - scale[0]) + scale[0]) * h * w
    log_r = torch.rand(b, device=dev) * (np.log(ratio[1]) - np.log(ratio[0])) + np.log(ratio[0])
    aspect = torch.exp(log_r)
    eh = torch.sqrt(area * aspect).clamp(1, h).floor()
    ew = torch.sqrt(area / aspect).clamp(1, w).floor()
    y0 = (torch.rand(b, device=dev) * (h - eh + 1)).floor()
    x0 = (torch.rand(b, device=dev) * (w - ew + 1)).floor()
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1))
              & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1)))
    apply = (torch.rand(b, device=dev) < p).view(b, 1, 1)
    return x.masked_fill((inside & apply).unsqueeze(1), 0.0)


class ImageFileDataset:
    """Reads image files lazily, returns ``(preprocessed float32 (C, S, S), target)`` items."""

    def __init__(self, paths: Sequence[str], targets: Sequence[Any], preprocess):
        if len(paths) != len(targets):
            raise ConfigError(f"{len(paths)} paths but {len(targets)} targets")
        self.paths, self.targets, self.preprocess = list(paths), list(targets), preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import cv2
        import torch

        from fer_perception.errors import DatasetError

        img = cv2.imread(self.paths[i], cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"cannot read image {self.paths[i]}")
        x = self.preprocess([cv2.cvtColor(img, cv2.COLOR_BGR2RGB)])[0]
        t = self.targets[i]
        return torch.from_numpy(x), torch.as_tensor(t)


def class_balanced_sampler(labels: Sequence[int], n_classes: int, seed: int = 0):
    """A ``WeightedRandomSampler`` drawing every class equally often (DAN's AffectNet recipe)."""
    import torch
    from torch.utils.data import WeightedRandomSampler

    y = np.asarray(labels, np.int64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = 1.0 / np.maximum(counts[y], 1.0)
    gen = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(torch.as_tensor(w, dtype=torch.double), num_samples=len(y), replacement=True,
                                 generator=gen)


def make_classifier_task(
    model,
    n_classes: int,
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    scheduler: Optional[Dict[str, Any]] = None,
    augment: bool = True,
    erasing: bool = False,
    label_smoothing: float = 0.0,
    extra_loss: Optional[Callable] = None,
    extra_params: Sequence = (),
):
    """A LightningModule training ``model`` (logits, or a tuple starting with logits) with cross-entropy.

    ``extra_loss(outputs, y) -> tensor`` adds terms (DAN's affinity and partition losses); ``extra_params``
    are optimised with the model (the affinity centres); ``erasing`` adds :func:`random_erasing`. Logs
    ``train_loss``, ``val_loss``, ``val_acc``; keeps the state_dict of the best validation accuracy in
    ``best_state``.
    """
    import lightning.pytorch as pl
    import torch
    import torch.nn.functional as F

    if optimizer not in ("adam", "sgd", "adamw"):
        raise ConfigError(f"optimizer must be adam, adamw or sgd, got {optimizer!r}")

    class ClassifierTask(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model
            self.extra = torch.nn.ModuleList([m for m in extra_params if isinstance(m, torch.nn.Module)])
            self.best_acc = -1.0
            self.best_state = None
            self._val: List[Tuple[np.ndarray, np.ndarray]] = []

        def _logits(self, out):
            return out[0] if isinstance(out, tuple) else out

        def training_step(self, batch, _idx):
            x, y = batch
            if augment:
                x = augment_batch(x)
            if erasing:
                x = random_erasing(x)
            out = self.model(x)
            loss = F.cross_entropy(self._logits(out), y, label_smoothing=label_smoothing)
            if extra_loss is not None:
                loss = loss + extra_loss(out, y)
            self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
            return loss

        def validation_step(self, batch, _idx):
            x, y = batch
            logits = self._logits(self.model(x))
            self.log("val_loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True)
            self._val.append((logits.argmax(1).cpu().numpy(), y.cpu().numpy()))

        def on_validation_epoch_end(self):
            if not self._val:
                return
            pred = np.concatenate([p for p, _ in self._val])
            true = np.concatenate([t for _, t in self._val])
            self._val.clear()
            acc = float((pred == true).mean())
            self.log("val_acc", acc, prog_bar=True)
            if acc >= self.best_acc and not self.trainer.sanity_checking:
                self.best_acc = acc
                self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

        def configure_optimizers(self):
            params = list(self.model.parameters()) + list(self.extra.parameters())
            if optimizer == "sgd":
                opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
            elif optimizer == "adamw":
                opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
            else:
                opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
            if not scheduler:
                return opt
            kind = scheduler.get("kind")
            if kind == "step":
                sch = torch.optim.lr_scheduler.StepLR(opt, step_size=scheduler["step"], gamma=scheduler["gamma"])
            elif kind == "exp":
                sch = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=scheduler["gamma"])
            elif kind == "cosine":
                sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=scheduler["epochs"])
            else:
                raise ConfigError(f"unknown scheduler {kind!r}")
            return {"optimizer": opt, "lr_scheduler": sch}

    return ClassifierTask()


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> List[np.ndarray]:
    """Model outputs (eval mode, no grad) for preprocessed inputs, concatenated per output."""
    import torch

    model.eval()
    outs: List[List[np.ndarray]] = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            res = model(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size])))
            res = res if isinstance(res, tuple) else (res,)
            outs.append([r.cpu().numpy() for r in res])
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]


def tensor_loader(x: np.ndarray, *targets: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0,
                  sampler=None):
    """A DataLoader over in-memory arrays (preprocessed inputs and targets)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    ds = TensorDataset(torch.from_numpy(np.ascontiguousarray(x)), *[torch.from_numpy(np.asarray(t)) for t in targets])
    gen = torch.Generator().manual_seed(int(seed))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=gen, drop_last=False)
