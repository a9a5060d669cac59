"""Evaluation reports: Markdown, JSON and PNG plots (confusion matrices, timelines, latency histograms).

:func:`write_report` writes ``report.md``, ``report.json`` and one PNG per plot into a folder; several runs
(``--compare A B`` or many bags) share one summary table. matplotlib runs on the Agg backend (no display).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np

from fer_perception.evaluate import RunEvaluation, SourceEvaluation, summary_rows


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(se: SourceEvaluation, path: Path, title: str) -> Path:
    plt = _plt()
    m = se.metrics
    cm = m.confusion.astype(np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(m.classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.6 * k), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), m.classes, rotation=45, ha="right")
    ax.set_yticks(range(k), m.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"{title}\nacc {m.accuracy:.3f}  bal-acc {m.balanced_accuracy:.3f}  macro-F1 {m.macro_f1:.3f}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_timeline(se: SourceEvaluation, path: Path, title: str) -> Path:
    plt = _plt()
    tl = se.timeline
    classes = list(se.metrics.classes)
    for c in list(tl["true"]) + list(tl["pred"]):
        if c and c not in classes:
            classes.append(c)
    idx = {c: i for i, c in enumerate(classes)}
    t = np.asarray(tl["t_s"])
    true = np.array([idx.get(c, np.nan) if c else np.nan for c in tl["true"]], dtype=np.float64)
    pred = np.array([idx[c] for c in tl["pred"]], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=110)
    ax.plot(t, true, "-", color="0.3", lw=4, alpha=0.35, label="true", drawstyle="steps-post")
    ok = pred == true
    ax.scatter(t[ok], pred[ok], s=8, color="tab:green", label="predicted (correct)")
    ax.scatter(t[~ok], pred[~ok], s=8, color="tab:red", label="predicted (wrong)")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("time since recording start (s)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_latency(evals: Sequence[RunEvaluation], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    series = [(f"{ev.name}: {src} (p95 {se.latency['p95']:.1f} ms)", se.timeline.get("latency_ms") or [])
              for ev in evals for src, se in ev.sources.items()]
    every = [v for _, lat in series for v in lat]
    if every:
        hi = float(np.percentile(every, 99.5)) * 1.05 + 1e-3
        bins = np.linspace(0.0, hi, 41)
        for label, lat in series:
            if lat:
                ax.hist(np.clip(lat, 0, hi), bins=bins, alpha=0.5, label=label)
    ax.set_xlabel("latency from arrival to result (ms; last bin: p99.5 and above)")
    ax.set_ylabel("results")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown_table(rows: List[Dict], columns: Sequence[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)


SUMMARY_COLUMNS = ("run", "source", "model", "n", "accuracy", "balanced_accuracy", "macro_f1",
                   "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "real_time_factor")


def write_report(evals: Sequence[RunEvaluation], out_dir: Union[str, Path], title: str = "Evaluation") -> Path:
    """Write report.md, report.json and PNGs for ``evals`` into ``out_dir``; returns the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(evals)
    md = [f"# {title}", "", markdown_table(rows, SUMMARY_COLUMNS), ""]
    md.append("Accuracy counts results whose stamp lies in a labelled range; true classes a model cannot output "
              "are excluded (counted below). Latency: from the input's arrival to its result.")
    md.append("")
    for ev in evals:
        s = ev.summary
        md.append(f"## {ev.name}")
        if s:
            md.append(
                f"Bag `{s.get('bag', '')}`: {s.get('duration_s', 0):.1f} s replayed in {s.get('wall_s', 0):.1f} s "
                f"(real-time factor {s.get('real_time_factor', 0):.2f}x); malformed messages skipped: "
                f"{s.get('malformed_total', 0)}."
            )
        for src, se in ev.sources.items():
            stem = f"{_safe(ev.name)}_{src}"
            cm_png = plot_confusion(se, out / f"confusion_{stem}.png", f"{ev.name} - {src} ({se.model})")
            tl_png = plot_timeline(se, out / f"timeline_{stem}.png", f"{ev.name} - {src}: predicted vs true")
            m = se.metrics
            md += [
                "", f"### {src} - model `{se.model}`", "",
                f"{se.n_results} results; evaluated {m.n}; unlabelled {se.unlabelled}; excluded (class not in the "
                f"model) {se.excluded}. Accuracy {m.accuracy:.3f}, balanced accuracy {m.balanced_accuracy:.3f}, "
                f"macro-F1 {m.macro_f1:.3f}. Latency p50 {se.latency['p50']:.1f} ms, p95 {se.latency['p95']:.1f} "
                f"ms, p99 {se.latency['p99']:.1f} ms.", "",
                markdown_table(
                    [{"class": c, "precision": m.precision[c], "recall": m.recall[c], "f1": m.f1[c],
                      "support": m.support[c]} for c in m.classes],
                    ("class", "precision", "recall", "f1", "support"),
                ), "",
                f"![confusion]({cm_png.name})", "", f"![timeline]({tl_png.name})",
            ]
        md.append("")
    lat_png = plot_latency(evals, out / "latency.png")
    md += ["## Latency", "", f"![latency]({lat_png.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(md))
    (out / "report.json").write_text(json.dumps(
        {"title": title, "summary": rows, "runs": [e.to_dict() for e in evals]}, indent=2))
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
