"""Evaluation metrics on hand-computed examples, label parsing, run evaluation and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_perception.evaluate import (
    EvaluationError, LabelRange, classification_metrics, evaluate_run, label_at, latency_stats, read_label_csv,
    ranges_from_messages,
)
from fer_perception.report import write_report


def test_metrics_hand_computed():
    # truth:  a a a b b c ; pred: a a b b c c
    y_true = list("aaabbc")
    y_pred = list("aabbcc")
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    np.testing.assert_array_equal(m.confusion, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert m.accuracy == pytest.approx(4 / 6)
    # recall a 2/3, b 1/2, c 1 -> balanced accuracy 13/18
    assert m.recall == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
    assert m.balanced_accuracy == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    # precision a 1, b 1/2, c 1/2
    assert m.precision == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.5})
    f1 = {"a": 2 * 1 * (2 / 3) / (1 + 2 / 3), "b": 0.5, "c": 2 * 0.5 / 1.5}
    assert m.f1 == pytest.approx(f1)
    assert m.macro_f1 == pytest.approx(sum(f1.values()) / 3)
    assert m.support == {"a": 3, "b": 2, "c": 1} and m.n == 6


def test_metrics_classes_absent_from_truth_and_prediction():
    # class "d" offered by the model but never seen: excluded from balanced accuracy and macro-F1
    m = classification_metrics(["a", "b"], ["a", "a"], ["a", "b", "d"])
    assert m.accuracy == 0.5
    assert m.balanced_accuracy == pytest.approx((1.0 + 0.0) / 2)
    # a: P 0.5 R 1 -> F1 2/3; b: 0
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)
    assert m.precision["d"] == 0.0 and m.support["d"] == 0
    with pytest.raises(EvaluationError):
        classification_metrics(["a"], [])


def test_metrics_empty():
    m = classification_metrics([], [], ["a"])
    assert m.n == 0 and m.accuracy == 0.0 and m.confusion.shape == (1, 1)


def test_latency_stats():
    s = latency_stats(np.arange(1, 101, dtype=float))
    assert s["p50"] == pytest.approx(50.5) and s["max"] == 100 and s["n"] == 100
    assert s["p99"] == pytest.approx(99.01)
    assert latency_stats([])["n"] == 0


def test_label_csv_relative_absolute_canonical(tmp_path: Path):
    p = tmp_path / "l.csv"
    p.write_text("start_s,end_s,label,face_id\n0,1.5,Happiness\n2,3,sadness,face_2\n1700000000.0,1700000001.0,anger\n")
    r = read_label_csv(p, start_ns=10_000_000_000)
    assert r[0] == LabelRange(10_000_000_000, 11_500_000_000, "happy", "")
    assert r[1] == LabelRange(12_000_000_000, 13_000_000_000, "sad", "face_2")
    assert r[2].start_ns == 1_700_000_000_000_000_000 and r[2].label == "angry"
    t = np.array([10_500_000_000, 11_600_000_000, 12_500_000_000, 12_500_000_000])
    assert label_at(r, t, ["x", "x", "face_2", "face_1"]) == ["happy", "", "sad", ""]


@pytest.mark.parametrize("text,match", [
    ("0,1\n", "expected"), ("a,1,happy\n", "numbers"), ("2,1,happy\n", "greater"),
    ("start_s,end_s,label\n", "no label"),
])
def test_label_csv_errors(tmp_path: Path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(EvaluationError, match=match):
        read_label_csv(p)
    with pytest.raises(EvaluationError, match="does not exist"):
        read_label_csv(tmp_path / "missing.csv")


def test_ranges_from_label_messages():
    r = ranges_from_messages([(10, "happy"), (0, "neutral"), (20, "none"), (30, "Surprised")], end_ns=40)
    assert r == [LabelRange(0, 10, "neutral"), LabelRange(10, 20, "happy"), LabelRange(30, 40, "surprise")]


def _write_run(d: Path, records, summary):
    d.mkdir(parents=True)
    (d / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (d / "replay_summary.json").write_text(json.dumps(summary))


def _emotion(source, t_s, label, labels, lat=5.0, model="m"):
    probs = [1.0 if c == label else 0.0 for c in labels]
    return {"kind": "emotion", "source": source, "stamp_ns": int(t_s * 1e9) + 1_000_000_000, "face_id": "face_1",
            "label": label, "confidence": 1.0, "labels": labels, "probabilities": probs, "latency_ms": lat,
            "model": model}


def test_evaluate_run_with_label_messages_and_report(tmp_path: Path):
    ev_labels = ["happy", "fear", "surprise"]
    fr_labels = ["happiness", "surprise", "neutral"]
    recs = [
        {"kind": "label", "t_ns": 1_000_000_000, "text": "neutral"},
        {"kind": "label", "t_ns": 2_000_000_000, "text": "happy"},
        {"kind": "label", "t_ns": 4_000_000_000, "text": "surprise"},
        _emotion("events", 0.5, "fear", ev_labels),      # truth neutral: excluded for the 3-class event model
        _emotion("events", 1.5, "happy", ev_labels),     # correct
        _emotion("events", 2.5, "fear", ev_labels),      # wrong
        _emotion("events", 3.5, "surprise", ev_labels, lat=7.0),  # correct
        _emotion("frames", 0.5, "neutral", fr_labels),   # correct
        _emotion("frames", 1.5, "happiness", fr_labels),  # correct (canonical happy)
        _emotion("frames", 3.5, "happiness", fr_labels),  # wrong
        _emotion("frames", -0.5, "neutral", fr_labels),  # before the first label: unlabelled
    ]
    run = tmp_path / "run"
    _write_run(run, recs, {"bag_start_ns": 1_000_000_000, "bag_end_ns": 5_000_000_000, "wall_s": 2.0,
                           "duration_s": 4.0, "real_time_factor": 2.0, "bag": "x"})
    ev = evaluate_run(run)
    e, f = ev.sources["events"], ev.sources["frames"]
    assert e.excluded == 1 and e.metrics.n == 3 and e.metrics.accuracy == pytest.approx(2 / 3)
    assert f.unlabelled == 1 and f.metrics.n == 3 and f.metrics.accuracy == pytest.approx(2 / 3)
    assert f.metrics.classes[:3] == ["happy", "surprise", "neutral"]
    assert e.latency["max"] == 7.0 and e.results_per_s == pytest.approx(2.0)
    md = write_report([ev], tmp_path / "report")
    text = md.read_text()
    assert "| run | source |" in text and "events" in text and "frames" in text
    for png in ("confusion_run_events.png", "timeline_run_frames.png", "latency.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["summary"][0]["accuracy"] == pytest.approx(2 / 3)


def test_evaluate_run_errors(tmp_path: Path):
    with pytest.raises(EvaluationError, match="results.jsonl"):
        evaluate_run(tmp_path)
    run = tmp_path / "r"
    _write_run(run, [_emotion("events", 1, "happy", ["happy"])], {})
    with pytest.raises(EvaluationError, match="no labels"):
        evaluate_run(run)
