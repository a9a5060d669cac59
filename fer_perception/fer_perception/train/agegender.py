"""``fer-perception train agegender``: the multi-task apparent age / gender network
(:mod:`fer_perception.models.age_gender`).

Data sources (one of):

- ``--utkface DIR``: UTKFace images named ``[age]_[gender]_[race]_[datetime].jpg`` (malformed names are
  skipped and counted); a seeded 80/10/10 train/val/test split.
- ``--synthetic N``: N synthetic subjects with an apparent age and gender made visible in the drawing
  (:mod:`fer_perception.data.synthetic_faces`); the test set is fresh subjects. This is how the demo weights
  ``weights/age_gender_synthetic_demo.pt`` are made.

Loss: cross-entropy on gender plus the Gaussian negative log-likelihood of the age (mean and log-variance
heads). Evaluation (``OUT/metrics.json``): age MAE (and the MAE of always predicting the training mean),
1-sigma coverage of ``age_std``, gender accuracy, and the breakdown by age group, gender and race (UTKFace) -
the bias analysis; ``OUT/confusion_matrix.png`` is the gender confusion matrix.
"""

from __future__ import annotations

import argparse
import copy
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

from fer_perception.errors import ConfigError

TRAIN_NAME = "agegender"
TRAIN_HELP = "train the apparent age + gender network on UTKFace or synthetic faces"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fer_perception.train.common import add_trainer_arguments

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--utkface", help="folder of UTKFace images")
    src.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic subjects (demo weights)")
    p.add_argument("--backbone", choices=("light", "resnet18"), default="light", help="shared backbone [light]")
    p.add_argument("--size", type=int, default=64, help="input size in pixels [64; use 224 for resnet18]")
    p.add_argument("--width", type=int, default=16, help="light backbone width [16]")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (cosine schedule) [2e-3]")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation (and test) share [0.1]")
    p.add_argument("--export", help="where to write the trained checkpoint [OUT/age_gender.pt]")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the file size)")
    add_trainer_arguments(p, epochs=30, batch_size=64)


def evaluate_age_gender(age_true, age_pred, age_std, gender_true, p_female, race=None,
                        train_mean_age: Optional[float] = None) -> Dict[str, Any]:
    """MAE, coverage, gender accuracy and the per-group breakdown (age group, gender, race)."""
    from fer_perception.data.utkface import AGE_GROUPS, GENDERS, RACES, age_group, age_group_name

    at = np.asarray(age_true, np.float64)
    ap = np.asarray(age_pred, np.float64)
    sd = np.asarray(age_std, np.float64)
    gt = np.asarray(gender_true, np.int64)
    gp = (np.asarray(p_female) >= 0.5).astype(np.int64)
    if not (len(at) == len(ap) == len(sd) == len(gt) == len(gp)) or len(at) == 0:
        raise ConfigError("evaluate_age_gender: inputs must be non-empty and of equal length")
    err = np.abs(at - ap)

    def summary(mask) -> Dict[str, Any]:
        return {"n": int(mask.sum()), "age_mae": float(err[mask].mean()),
                "gender_accuracy": float((gp[mask] == gt[mask]).mean())}

    out: Dict[str, Any] = {
        "n": int(len(at)), "age_mae": float(err.mean()), "age_rmse": float(np.sqrt(((at - ap) ** 2).mean())),
        "age_1sigma_coverage": float((err <= sd).mean()), "age_std_mean": float(sd.mean()),
        "gender_accuracy": float((gp == gt).mean()),
    }
    if train_mean_age is not None:
        out["age_mae_predict_train_mean"] = float(np.abs(at - train_mean_age).mean())
    groups = age_group(at)
    out["by_age_group"] = {age_group_name(i): summary(groups == i) for i in range(len(AGE_GROUPS))
                           if (groups == i).any()}
    out["by_gender"] = {GENDERS[g]: summary(gt == g) for g in (0, 1) if (gt == g).any()}
    if race is not None:
        r = np.asarray(race, np.int64)
        out["by_race"] = {RACES[i]: summary(r == i) for i in range(len(RACES)) if (r == i).any()}
    return out


def make_age_gender_task(model, *, lr: float, epochs: int, weight_decay: float = 1e-4, augment: bool = True):
    """LightningModule: CE(gender) + Gaussian NLL(age); logs val_mae; keeps the best (lowest MAE) weights."""
    import lightning.pytorch as pl
    import torch
    import torch.nn.functional as F

    from fer_perception.models.age_gender import gaussian_nll
    from fer_perception.train.frame_common import augment_batch

    center = float(model.config.age_center)
    scale = float(model.config.age_scale)

    class AgeGenderTask(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model
            self.best_mae = float("inf")
            self.best_state = None
            self._val = []

        def _losses(self, x, t):
            g, mu, log_var = self.model.forward_normalised(x)
            age_n = (t[:, 0] - center) / scale
            return F.cross_entropy(g, t[:, 1].long()), gaussian_nll(mu, log_var, age_n), g, mu

        def training_step(self, batch, _idx):
            x, t = batch
            if augment:
                x = augment_batch(x)
            ce, nll, _, _ = self._losses(x, t.float())
            loss = ce + nll
            self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
            return loss

        def validation_step(self, batch, _idx):
            x, t = batch
            t = t.float()
            ce, nll, g, mu = self._losses(x, t)
            self.log("val_loss", ce + nll, on_step=False, on_epoch=True)
            age = center + scale * mu
            self._val.append((torch.abs(age - t[:, 0]).cpu().numpy(), (g.argmax(1) == t[:, 1].long()).cpu().numpy()))

        def on_validation_epoch_end(self):
            if not self._val:
                return
            mae = float(np.concatenate([a for a, _ in self._val]).mean())
            acc = float(np.concatenate([b for _, b in self._val]).mean())
            self._val.clear()
            self.log("val_mae", mae, prog_bar=True)
            self.log("val_acc", acc, prog_bar=True)
            if mae <= self.best_mae and not self.trainer.sanity_checking:
                self.best_mae = mae
                self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)
            sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
            return {"optimizer": opt, "lr_scheduler": sch}

    return AgeGenderTask()


def run(args: argparse.Namespace) -> int:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader

    from fer_perception.models.age_gender import GENDERS, AgeGenderConfig, AgeGenderNet
    from fer_perception.models.frame_checkpoint import save_frame_checkpoint
    from fer_perception.runtime.frame_models import Preprocess
    from fer_perception.train.common import TrainerOptions, git_commit, make_trainer, utc_now, write_report
    from fer_perception.train.frame_common import ImageFileDataset, predict_logits, tensor_loader

    opts = TrainerOptions.from_args(args)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    pl.seed_everything(opts.seed, workers=True)
    race_test = None
    if args.synthetic is not None:
        from fer_perception.data.synthetic_faces import age_gender_crops

        n = int(args.synthetic)
        if n < 10:
            raise ConfigError(f"--synthetic needs at least 10 subjects, got {n}")
        base = 5000 + 100_000 * opts.seed
        nv = max(2, int(round(n * args.val_fraction)))
        parts = [age_gender_crops(range(a, b), frames_per_clip=k) for a, b, k in (
            (base, base + n, 3), (base + n, base + n + nv, 2), (base + 50_000, base + 50_000 + max(nv, 40), 2))]
        ages_train = parts[0][1]
        source = f"synthetic faces: {n} train / {nv} val subjects"
    else:
        from fer_perception.data.utkface import scan_utkface

        index = scan_utkface(args.utkface)
        ages, genders, races = index.arrays()
        rng = np.random.default_rng(opts.seed)
        idx = rng.permutation(len(ages))
        nv = max(1, int(len(idx) * args.val_fraction))
        splits = (idx[2 * nv:], idx[:nv], idx[nv:2 * nv])
        ages_train = ages[splits[0]].astype(np.float32)
        race_test = races[splits[2]]
        source = f"UTKFace {args.utkface}: {len(ages)} images, {len(index.skipped)} malformed names skipped"
    center = float(np.mean(ages_train))
    scale = float(max(np.std(ages_train), 1.0))
    cfg = AgeGenderConfig(backbone=args.backbone, input_size=args.size, width=args.width,
                          age_center=round(center, 3), age_scale=round(scale, 3)).validate()
    pre = Preprocess.from_dict(cfg.preprocess())
    model = AgeGenderNet(cfg)
    if args.synthetic is not None:
        xs = [pre(list(p[0])) for p in parts]
        ts = [np.stack([p[1], p[2].astype(np.float32)], 1) for p in parts]
        train_dl = tensor_loader(xs[0], ts[0], batch_size=opts.batch_size, shuffle=True, seed=opts.seed)
        val_dl = tensor_loader(xs[1], ts[1], batch_size=256, shuffle=False)
        test_x, test_t = xs[2], ts[2]
    else:
        recs = index.records
        tgt = np.stack([ages, genders], 1).astype(np.float32)
        dsets = [ImageFileDataset([recs[i].path for i in s], list(tgt[s]), pre) for s in splits]
        gen = torch.Generator().manual_seed(opts.seed)
        train_dl = DataLoader(dsets[0], batch_size=opts.batch_size, shuffle=True, num_workers=opts.workers,
                              generator=gen)
        val_dl = DataLoader(dsets[1], batch_size=128, num_workers=opts.workers)
        test_x = np.stack([dsets[2][i][0].numpy() for i in range(len(dsets[2]))])
        test_t = tgt[splits[2]]
    task = make_age_gender_task(model, lr=args.lr, epochs=opts.epochs)
    trainer, _ckpt = make_trainer(opts, monitor="val_mae", mode="min")
    trainer.fit(task, train_dl, val_dl)
    if task.best_state is not None:
        model.load_state_dict(task.best_state)
    g, age, log_var = predict_logits(model, test_x)
    p_female = torch.softmax(torch.from_numpy(g), 1)[:, 1].numpy()
    std = np.exp(0.5 * log_var)
    ev = evaluate_age_gender(test_t[:, 0], age, std, test_t[:, 1].astype(np.int64), p_female, race_test,
                             train_mean_age=center)
    extra: Dict[str, Any] = {"model": "agegender", "config": cfg.to_dict(), "source": source,
                             "best_val_mae": task.best_mae, "epochs": opts.epochs, "age_gender": ev,
                             "created": utc_now(), "git_commit": git_commit()}
    from pathlib import Path

    csvp = Path(opts.out) / "logs" / "csv" / "metrics.csv"
    write_report(opts.out, title=f"age/gender ({source[:40]})", classes=GENDERS,
                 y_true=test_t[:, 1].astype(np.int64), y_pred=(p_female >= 0.5).astype(np.int64), extra=extra,
                 csv_path=csvp if csvp.is_file() else None)
    path = args.export or os.path.join(opts.out, "age_gender.pt")
    meta = {k: v for k, v in extra.items() if k not in ("config", "age_gender")}
    meta.update({k: ev[k] for k in ("age_mae", "age_mae_predict_train_mean", "gender_accuracy",
                                    "age_1sigma_coverage") if k in ev})
    save_frame_checkpoint(path, model, kind="agegender", config=cfg.to_dict(), classes=GENDERS,
                          preprocess=pre.to_dict(), meta=meta, half=args.half)
    baseline = ev.get("age_mae_predict_train_mean", float("nan"))
    print(f"age MAE {ev['age_mae']:.2f} (train-mean baseline {baseline:.2f}), "
          f"gender accuracy {ev['gender_accuracy']:.3f}; checkpoint {path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_perception.train.agegender", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
