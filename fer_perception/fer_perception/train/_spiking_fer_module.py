"""The Lightning module and callback behind ``fer-perception train snn|cnn`` (imports torch and Lightning).

Kept apart from :mod:`fer_perception.train.snn` (whose import must stay cheap for the CLI) and at module level
so Lightning can pickle it for ``ddp_spawn``. The network sits in ``self.model`` and the hyper-parameters use
the official names (``learning_rate, timesteps, n_classes, epochs, mode``), so a ``.ckpt`` written here has the
official layout (``state_dict`` keys prefixed ``model.``) and loads with
:func:`fer_perception.models.checkpoint.load_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import lightning.pytorch as pl
import torch
from torch.nn import functional as F

from fer_perception.models.spiking_fer import build_model


class SpikingFerLightning(pl.LightningModule):
    """SGD (momentum 0.9, weight decay 5e-4) with cosine annealing over ``epochs``, cross-entropy
    (docs/facts.md#spiking-fer).

    ``optimizer="adam"`` swaps SGD for Adam (same weight decay and schedule) for short CPU schedules such as the
    synthetic demo; the paper's recipe is SGD.

    Batches are ``(x, y)`` with ``x`` of shape (B, T, 2, H, W) (what the DataLoader stacks); the model gets
    (T, B, 2, H, W).
    """

    def __init__(
        self, mode: str = "snn", n_classes: int = 6, timesteps: int = 6, width: float = 1.0,
        learning_rate: float = 5e-3, momentum: float = 0.9, weight_decay: float = 5e-4, epochs: int = 500,
        input_size: int = 128, dropout: float = 0.5, optimizer: str = "sgd",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(mode, n_classes, timesteps, width, 2, input_size, dropout)
        self._val_true: List[torch.Tensor] = []
        self._val_pred: List[torch.Tensor] = []
        self.last_val_true: Optional[torch.Tensor] = None
        self.last_val_pred: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            x = x.transpose(0, 1).contiguous()  # (B, T, 2, H, W) -> (T, B, 2, H, W)
        return self.model(x)

    def _step(self, batch, stage: str):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage == "train",
                 batch_size=len(y), sync_dist=True)
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y),
                 sync_dist=True)
        return loss, logits, y

    def training_step(self, batch, batch_idx):
        loss, _, _ = self._step(batch, "train")
        return loss

    def validation_step(self, batch, batch_idx):
        _, logits, y = self._step(batch, "val")
        self._val_true.append(y.detach().cpu())
        self._val_pred.append(logits.argmax(dim=1).detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if self._val_true:
            self.last_val_true = torch.cat(self._val_true)
            self.last_val_pred = torch.cat(self._val_pred)
        self._val_true, self._val_pred = [], []

    def configure_optimizers(self):
        if self.hparams.optimizer == "adam":
            opt = torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate,
                                   weight_decay=self.hparams.weight_decay)
        else:
            opt = torch.optim.SGD(
                self.parameters(), lr=self.hparams.learning_rate, momentum=self.hparams.momentum,
                weight_decay=self.hparams.weight_decay,
            )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(self.hparams.epochs))
        return [opt], [{"scheduler": sched, "interval": "epoch"}]


class SaveOurCheckpoints(pl.Callback):
    """Writes ``best.pt`` (highest ``val_acc``) and ``last.pt`` in our checkpoint format (rank 0 only)."""

    def __init__(self, out: Path, meta: Dict[str, Any], monitor: str = "val_acc") -> None:
        self.out = Path(out)
        self.meta = meta
        self.monitor = monitor
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.best_epoch = state_dict.get("best_epoch")

    def _save(self, pl_module: SpikingFerLightning, name: str, epoch: int, score: Optional[float]) -> None:
        from fer_perception.models.checkpoint import save_checkpoint

        meta = dict(self.meta)
        prov = dict(meta.get("provenance", {}))
        prov.update({"epoch": int(epoch), self.monitor: None if score is None else float(score)})
        meta["provenance"] = prov
        save_checkpoint(self.out / name, pl_module.model, meta)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: SpikingFerLightning) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        score = float(value)
        if trainer.is_global_zero and (self.best is None or score > self.best):
            self.best, self.best_epoch = score, int(trainer.current_epoch)
            self._save(pl_module, "best.pt", trainer.current_epoch, score)

    def on_train_end(self, trainer: pl.Trainer, pl_module: SpikingFerLightning) -> None:
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            epoch = max(0, int(trainer.current_epoch) - 1)  # current_epoch has moved past the last one
            self._save(pl_module, "last.pt", epoch, None if value is None else float(value))
