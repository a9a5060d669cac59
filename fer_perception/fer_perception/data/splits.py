"""Train/test splits of a FerDVS dataset: the official folds and subject-independent k-fold splits.

The official ``folds.csv`` folds are per *sequence*: the same subject appears in train and test (e.g. on
CK+DVS fold 0 most test subjects also have other sequences in the training set), so accuracies on them are
not subject-independent. :func:`subject_kfold` groups sequences by subject (no subject on both sides),
stratifies the label distribution across folds where the grouping allows it, and is seeded. Every split
describes itself (:meth:`Split.describe`) so a training run can record exactly what it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from fer_perception.data.ferdvs import FoldEntry
from fer_perception.errors import ConfigError, DatasetError

SPLIT_KINDS: Tuple[str, ...] = ("official", "subject")


@dataclass(frozen=True)
class Split:
    """Indices (into the ``folds.csv`` rows) of the training and test items of one fold."""

    kind: str
    fold: int
    n_folds: int
    seed: int
    train: Tuple[int, ...]
    test: Tuple[int, ...]
    train_subjects: Tuple[str, ...]
    test_subjects: Tuple[str, ...]

    @property
    def shared_subjects(self) -> Tuple[str, ...]:
        """Subjects with sequences on both sides (empty for subject-independent splits)."""
        return tuple(sorted(set(self.train_subjects) & set(self.test_subjects)))

    def describe(self) -> dict:
        shared = self.shared_subjects
        return {
            "kind": self.kind,
            "fold": self.fold,
            "n_folds": self.n_folds,
            "seed": self.seed if self.kind == "subject" else None,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "subject_independent": not shared,
            "n_shared_subjects": len(shared),
            "test_subjects": list(self.test_subjects),
            "test_indices": list(self.test),
        }


def _subjects(entries: Sequence[FoldEntry], idx: Sequence[int]) -> Tuple[str, ...]:
    return tuple(sorted({entries[i].subject for i in idx}))


def official_split(entries: Sequence[FoldEntry], fold: int) -> Split:
    """The split given by column ``fold<k>`` of ``folds.csv`` (1 = test)."""
    if not entries:
        raise DatasetError("no entries to split")
    n_folds = len(entries[0].test_folds)
    if not 0 <= fold < n_folds:
        raise ConfigError(f"fold {fold} outside 0..{n_folds - 1} (folds.csv has {n_folds} fold columns)")
    test = tuple(i for i, e in enumerate(entries) if e.test_folds[fold])
    train = tuple(i for i, e in enumerate(entries) if not e.test_folds[fold])
    if not test or not train:
        raise DatasetError(f"official fold {fold} has {len(train)} training and {len(test)} test items")
    return Split("official", fold, n_folds, 0, train, test, _subjects(entries, train), _subjects(entries, test))


def assign_subject_folds(entries: Sequence[FoldEntry], n_folds: int, seed: int) -> Dict[str, int]:
    """Map every subject to a fold: grouped by subject, greedily balancing per-class counts, seeded.

    Subjects are shuffled with ``seed`` and then taken in order of decreasing sequence count (stable, so
    ties keep the shuffled order); each goes to the fold where the per-class counts stay most even, with the
    smaller fold winning ties (the approach of scikit-learn's StratifiedGroupKFold).
    """
    subjects = sorted({e.subject for e in entries})
    if n_folds < 2:
        raise ConfigError(f"n_folds must be at least 2, got {n_folds}")
    if len(subjects) < n_folds:
        raise DatasetError(f"{len(subjects)} subject(s) cannot fill {n_folds} subject-independent folds")
    n_classes = max(e.label for e in entries) + 1
    counts = {s: np.zeros(n_classes, np.int64) for s in subjects}
    for e in entries:
        counts[e.subject][e.label] += 1
    rng = np.random.default_rng(seed)
    order = [subjects[i] for i in rng.permutation(len(subjects))]
    order.sort(key=lambda s: -int(counts[s].sum()))
    totals = np.zeros((n_folds, n_classes), np.float64)
    class_total = np.maximum(sum(counts.values()).astype(np.float64), 1.0)
    assignment: Dict[str, int] = {}
    for s in order:
        best, best_key = 0, None
        for k in range(n_folds):
            trial = totals.copy()
            trial[k] += counts[s]
            spread = float(np.std(trial / class_total, axis=0).mean())
            key = (spread, float(trial[k].sum()), k)
            if best_key is None or key < best_key:
                best, best_key = k, key
        totals[best] += counts[s]
        assignment[s] = best
    return assignment


def subject_kfold(entries: Sequence[FoldEntry], fold: int, n_folds: int = 10, seed: int = 0) -> Split:
    """Subject-independent split: fold ``fold`` of ``n_folds`` stratified group folds."""
    if not 0 <= fold < n_folds:
        raise ConfigError(f"fold {fold} outside 0..{n_folds - 1}")
    assignment = assign_subject_folds(entries, n_folds, seed)
    test = tuple(i for i, e in enumerate(entries) if assignment[e.subject] == fold)
    train = tuple(i for i, e in enumerate(entries) if assignment[e.subject] != fold)
    return Split("subject", fold, n_folds, seed, train, test, _subjects(entries, train), _subjects(entries, test))


def make_split(kind: str, entries: Sequence[FoldEntry], fold: int, n_folds: int = 10, seed: int = 0) -> Split:
    """``kind`` is ``"official"`` (folds.csv columns) or ``"subject"`` (:func:`subject_kfold`)."""
    if kind == "official":
        return official_split(entries, fold)
    if kind == "subject":
        return subject_kfold(entries, fold, n_folds, seed)
    raise ConfigError(f"unknown split {kind!r}; choose one of {', '.join(SPLIT_KINDS)}")


def label_histogram(entries: Sequence[FoldEntry], idx: Sequence[int], n_classes: int) -> List[int]:
    h = np.zeros(n_classes, np.int64)
    for i in idx:
        h[entries[i].label] += 1
    return h.tolist()
