"""Evaluation of replay results against time-ranged labels: classification metrics, latency, throughput.

Inputs:

- results: the ``results.jsonl`` that ``fer-perception replay`` writes into its output folder (one JSON object
  per line: ``kind`` = ``emotion`` | ``demographics`` | ``label``; see :mod:`fer_perception.commands.replay`),
  plus its ``replay_summary.json`` (bag start, duration, wall time).
- labels: a CSV of time ranges ``start_s,end_s,label[,face_id]`` (header optional; times in seconds, relative to
  the start of the recording, or absolute ROS time when larger than 1e6 s), or the label messages replay copied
  from a ``std_msgs/String`` topic (each message's text is the label from its time until the next message;
  ``""``/``none`` = unlabelled).

Every label (predicted and true) goes through :func:`fer_perception.labels.canonical`, so models with different
class names compare. A prediction is matched with the range that contains its stamp (and its face, when the CSV
gives face ids). Predictions in no range are ``unlabelled``; true classes the model cannot output (e.g. neutral
for the 6-class Spiking-FER) are ``excluded`` by default and counted.

Metrics follow the usual definitions (scikit-learn's): accuracy; balanced accuracy = mean recall over the classes
present in the truth; macro-F1 = mean F1 over the classes in truth or prediction; precision/recall/F1 with 0
where undefined; confusion matrix rows = truth, columns = prediction.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from fer_perception.errors import FerPerceptionError
from fer_perception.labels import canonical

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "replay_summary.json"
ABSOLUTE_TIME_S = 1e6


class EvaluationError(FerPerceptionError, ValueError):
    """Labels or results cannot be evaluated (missing file, bad CSV row, no results)."""


@dataclass(frozen=True)
class LabelRange:
    start_ns: int
    end_ns: int
    label: str
    face_id: str = ""


# -------------------------------------------------------------------------------------------------- labels
def read_label_csv(path: Union[str, Path], start_ns: int = 0) -> List[LabelRange]:
    """Ranges from ``start_s,end_s,label[,face_id]``; relative times are offset by ``start_ns``."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationError(f"label file {p} does not exist")
    out: List[LabelRange] = []
    with p.open(newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if lineno == 1 and row[0].lower() in ("start_s", "start"):
                continue
            if len(row) < 3:
                raise EvaluationError(f"{p}:{lineno}: expected start_s,end_s,label[,face_id], got {row}")
            try:
                s, e = float(row[0]), float(row[1])
            except ValueError as exc:
                raise EvaluationError(f"{p}:{lineno}: start_s/end_s must be numbers, got {row[:2]}") from exc
            if not e > s:
                raise EvaluationError(f"{p}:{lineno}: end_s ({e}) must be greater than start_s ({s})")
            offset = 0 if s > ABSOLUTE_TIME_S else start_ns
            out.append(LabelRange(offset + int(round(s * 1e9)), offset + int(round(e * 1e9)), canonical(row[2]),
                                  row[3] if len(row) > 3 else ""))
    if not out:
        raise EvaluationError(f"label file {p} holds no label ranges")
    return sorted(out, key=lambda r: r.start_ns)


def ranges_from_messages(messages: Sequence[Tuple[int, str]], end_ns: int) -> List[LabelRange]:
    """Ranges from (t_ns, text) label messages: each text holds until the next message (last: ``end_ns``)."""
    msgs = sorted(messages)
    out = []
    for i, (t, text) in enumerate(msgs):
        stop = msgs[i + 1][0] if i + 1 < len(msgs) else max(end_ns, t + 1)
        label = canonical(text)
        if label and label != "none" and stop > t:
            out.append(LabelRange(int(t), int(stop), label))
    return out


def label_at(ranges: Sequence[LabelRange], t_ns: np.ndarray, face_ids: Optional[Sequence[str]] = None) -> List[str]:
    """The true label at each time (``""`` when none); ranges with a face id only match that face."""
    t = np.asarray(t_ns, dtype=np.int64)
    out = np.full(len(t), "", dtype=object)
    generic = [r for r in ranges if not r.face_id]
    specific = [r for r in ranges if r.face_id]
    if generic:
        starts = np.array([r.start_ns for r in generic], dtype=np.int64)
        ends = np.array([r.end_ns for r in generic], dtype=np.int64)
        idx = np.searchsorted(starts, t, side="right") - 1
        ok = (idx >= 0) & (t < ends[np.clip(idx, 0, None)])
        labels = np.array([r.label for r in generic], dtype=object)
        out[ok] = labels[idx[ok]]
    if specific and face_ids is not None:
        fids = np.asarray(face_ids, dtype=object)
        for r in specific:
            m = (t >= r.start_ns) & (t < r.end_ns) & (fids == r.face_id)
            out[m] = r.label
    return [str(v) for v in out]


# -------------------------------------------------------------------------------------------------- metrics
@dataclass
class ClassificationMetrics:
    classes: List[str]
    confusion: np.ndarray  # (C, C) rows truth, columns prediction
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    precision: Dict[str, float]
    recall: Dict[str, float]
    f1: Dict[str, float]
    support: Dict[str, int]
    n: int

    def to_dict(self) -> dict:
        return {
            "classes": self.classes, "confusion": self.confusion.tolist(), "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1, "precision": self.precision,
            "recall": self.recall, "f1": self.f1, "support": self.support, "n": self.n,
        }


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], classes: Optional[Sequence[str]] = None
) -> ClassificationMetrics:
    """Accuracy, balanced accuracy, macro-F1, per-class P/R/F1 and the confusion matrix."""
    if len(y_true) != len(y_pred):
        raise EvaluationError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    seen = list(dict.fromkeys(list(y_true) + list(y_pred)))
    cls = list(classes) if classes is not None else []
    cls += [c for c in seen if c not in cls]
    index = {c: i for i, c in enumerate(cls)}
    k = len(cls)
    cm = np.zeros((k, k), dtype=np.int64)
    if len(y_true):
        ti = np.array([index[c] for c in y_true])
        pi = np.array([index[c] for c in y_pred])
        np.add.at(cm, (ti, pi), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    n = int(cm.sum())
    present_true = support > 0
    present_any = present_true | (predicted > 0)
    return ClassificationMetrics(
        classes=cls, confusion=cm,
        accuracy=float(tp.sum() / n) if n else 0.0,
        balanced_accuracy=float(recall[present_true].mean()) if present_true.any() else 0.0,
        macro_f1=float(f1[present_any].mean()) if present_any.any() else 0.0,
        precision={c: float(precision[i]) for c, i in index.items()},
        recall={c: float(recall[i]) for c, i in index.items()},
        f1={c: float(f1[i]) for c, i in index.items()},
        support={c: int(support[i]) for c, i in index.items()},
        n=n,
    )


def latency_stats(latencies_ms: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(latencies_ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(a.max())}


# -------------------------------------------------------------------------------------------------- runs
@dataclass
class SourceEvaluation:
    source: str
    model: str
    metrics: ClassificationMetrics
    latency: Dict[str, float]
    n_results: int
    unlabelled: int
    excluded: int
    results_per_s: float
    timeline: Dict[str, list] = field(default_factory=dict)  # t_s, true, pred, confidence

    def to_dict(self) -> dict:
        return {
            "source": self.source, "model": self.model, "metrics": self.metrics.to_dict(),
            "latency_ms": self.latency, "n_results": self.n_results, "unlabelled": self.unlabelled,
            "excluded": self.excluded, "results_per_s_wall": self.results_per_s,
        }


@dataclass
class RunEvaluation:
    name: str
    sources: Dict[str, SourceEvaluation]
    summary: dict

    def to_dict(self) -> dict:
        return {"name": self.name, "summary": self.summary,
                "sources": {k: v.to_dict() for k, v in self.sources.items()}}


def load_results(run_dir: Union[str, Path]) -> Tuple[List[dict], dict]:
    """(records, replay summary) of a replay output folder."""
    d = Path(run_dir)
    f = d / RESULTS_FILE if d.is_dir() else d
    if not f.is_file():
        raise EvaluationError(f"{d} holds no {RESULTS_FILE}; run `fer-perception replay BAG -o {d}` first")
    records = []
    with f.open() as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EvaluationError(f"{f}:{lineno}: not JSON: {exc}") from exc
    summary_path = f.parent / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return records, summary


def evaluate_run(
    run_dir: Union[str, Path],
    labels_csv: Optional[Union[str, Path]] = None,
    exclude_unknown: bool = True,
    name: Optional[str] = None,
) -> RunEvaluation:
    """Evaluate one replay output folder against a label CSV or the label messages it holds."""
    records, summary = load_results(run_dir)
    start_ns = int(summary.get("bag_start_ns", 0))
    end_ns = int(summary.get("bag_end_ns", 0))
    if labels_csv is not None:
        ranges = read_label_csv(labels_csv, start_ns)
    else:
        msgs = [(int(r["t_ns"]), str(r["text"])) for r in records if r.get("kind") == "label"]
        if not msgs:
            raise EvaluationError(
                f"{run_dir}: no labels: pass a label CSV (start_s,end_s,label[,face_id]) or replay a bag with a "
                "std_msgs/String label topic"
            )
        ranges = ranges_from_messages(msgs, end_ns or max(t for t, _ in msgs) + 1)
    wall_s = float(summary.get("wall_s", 0.0))
    sources: Dict[str, SourceEvaluation] = {}
    emotions = [r for r in records if r.get("kind") == "emotion"]
    if not emotions:
        raise EvaluationError(f"{run_dir}: the replay produced no emotion results to evaluate")
    for source in sorted({r["source"] for r in emotions}):
        rs = [r for r in emotions if r["source"] == source]
        t = np.array([int(r["stamp_ns"]) for r in rs], dtype=np.int64)
        truth = label_at(ranges, t, [r.get("face_id", "") for r in rs])
        pred = [canonical(r["label"]) for r in rs]
        model_classes = list(dict.fromkeys(canonical(c) for c in rs[0].get("labels", [])))
        keep, unlabelled, excluded = [], 0, 0
        for i, y in enumerate(truth):
            if not y:
                unlabelled += 1
            elif exclude_unknown and model_classes and y not in model_classes:
                excluded += 1
            else:
                keep.append(i)
        yt = [truth[i] for i in keep]
        yp = [pred[i] for i in keep]
        metrics = classification_metrics(yt, yp, model_classes or None)
        lat = latency_stats([float(r.get("latency_ms", 0.0)) for r in rs])
        timeline = {
            "t_s": [float((t[i] - start_ns) / 1e9) for i in range(len(rs))],
            "true": truth, "pred": pred, "confidence": [float(r.get("confidence", 0.0)) for r in rs],
            "latency_ms": [float(r.get("latency_ms", 0.0)) for r in rs],
        }
        sources[source] = SourceEvaluation(
            source=source, model=str(rs[0].get("model", "")), metrics=metrics, latency=lat, n_results=len(rs),
            unlabelled=unlabelled, excluded=excluded, results_per_s=len(rs) / wall_s if wall_s > 0 else 0.0,
            timeline=timeline,
        )
    return RunEvaluation(name=name or Path(run_dir).name, sources=sources, summary=summary)


def summary_rows(evals: Sequence[RunEvaluation]) -> List[dict]:
    """One row per run and source, for the multi-run table."""
    rows = []
    for ev in evals:
        for src, se in ev.sources.items():
            rows.append({
                "run": ev.name, "source": src, "model": se.model, "n": se.metrics.n,
                "accuracy": se.metrics.accuracy, "balanced_accuracy": se.metrics.balanced_accuracy,
                "macro_f1": se.metrics.macro_f1, "latency_p50_ms": se.latency["p50"],
                "latency_p95_ms": se.latency["p95"], "latency_p99_ms": se.latency["p99"],
                "real_time_factor": float(ev.summary.get("real_time_factor", 0.0)),
            })
    return rows
