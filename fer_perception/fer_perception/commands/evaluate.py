"""`fer-perception evaluate`: accuracy, confusion matrices, latency and a report for replay results or bags."""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from fer_perception.errors import ConfigError

NAME = "evaluate"
HELP = "score replay results against labels: accuracy, F1, confusion matrices, latency; Markdown/PNG report"
DESCRIPTION = """\
Evaluate one or more runs. A RUN is either a replay output folder (holding results.jsonl) or a bag, which is
replayed first (into REPORT/runs/<name>, with --config/--set). Labels come from --labels CSV
(start_s,end_s,label[,face_id]; seconds relative to the recording start, or absolute ROS time), from
labels.csv beside the bag, or from a std_msgs/String label topic that replay copied into the results.

Per source (events vs frames): accuracy, balanced accuracy, macro-F1, per-class precision/recall/F1, confusion
matrix, latency p50/p95/p99, throughput. Labels of every model go through one canonical naming, so a 6-class
Spiking-FER and a 7-class frame model compare; true classes a model cannot output (neutral for Spiking-FER) are
excluded and counted. --compare A B replays every bag with two configurations (YAML files, checkpoints or
key=value,... overrides) and shows them side by side. Several bags or configurations run in a process pool.
"""
EPILOG = """\
examples:
  fer-perception evaluate out/run1 --labels out/sample/labels.csv
  fer-perception evaluate out/sample/sample_bag --report out/eval
  fer-perception evaluate bag1 bag2 bag3 --jobs 2 --report out/eval_all
  fer-perception evaluate out/sample/sample_bag --compare smoothing=none smoothing=ema,smoothing_alpha=0.3
  fer-perception evaluate rec --compare weights/a.pt weights/b.pt --labels rec_labels.csv
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="replay output folders and/or bags")
    p.add_argument("--labels", help="label CSV for every run (default: labels.csv beside a bag, or label topic)")
    p.add_argument("--report", help="report folder [REPORT = <first run>_report]")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="two configurations: YAML file, .pt SNN checkpoint, or key=value[,key=value]")
    p.add_argument("--config", help="pipeline YAML for bags that need replaying")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pipeline override")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes for several bags/configurations [1]")
    p.add_argument("--keep-unknown", action="store_true",
                   help="score true classes the model cannot output as errors instead of excluding them")
    p.add_argument("--title", default="fer-perception evaluation", help="report title")


@dataclass
class Job:
    name: str
    run_dir: str
    bag: Optional[str]
    overrides: Dict[str, object]
    config_path: Optional[str]
    labels: Optional[str]
    keep_unknown: bool
    threads: int


def parse_variant(spec: str) -> Dict[str, object]:
    """Overrides for a --compare argument: YAML file, .pt/.ckpt SNN checkpoint, or key=value[,key=value]."""
    from fer_perception.commands.replay import parse_overrides
    from fer_perception.pipeline import PipelineConfig

    p = Path(spec)
    if spec.endswith((".yaml", ".yml")):
        return PipelineConfig.from_yaml(p).to_dict()
    if spec.endswith((".pt", ".ckpt", ".pth")):
        if not p.is_file():
            raise ConfigError(f"--compare checkpoint {p} does not exist")
        return {"snn_checkpoint": str(p)}
    if "=" in spec:
        return parse_overrides([s for s in spec.split(",") if s])
    raise ConfigError(f"--compare {spec!r}: expected a .yaml file, a checkpoint or key=value[,key=value]")


def _is_run_dir(path: Path) -> bool:
    return (path / "results.jsonl").is_file()


def _execute(job: Job):
    """Replay (when needed) and evaluate one job; runs in a worker process."""
    from fer_perception.commands.replay import load_config, replay_bag
    from fer_perception.evaluate import evaluate_run

    if job.threads:
        try:
            import torch

            torch.set_num_threads(job.threads)
        except ImportError:  # pragma: no cover
            pass
    if job.bag is not None:
        cfg = load_config(job.config_path, job.overrides)
        replay_bag(Path(job.bag), Path(job.run_dir), cfg, overwrite=True, progress=False, event_frame_hz=0.0,
                   annotated=False)
    return evaluate_run(job.run_dir, job.labels, exclude_unknown=not job.keep_unknown, name=job.name)


def build_jobs(args: argparse.Namespace, report: Path) -> List[Job]:
    from fer_perception.commands.replay import parse_overrides

    base = parse_overrides(args.set)
    variants = [("", base)]
    if args.compare:
        variants = [(f"A:{args.compare[0]}", {**parse_variant(args.compare[0]), **base}),
                    (f"B:{args.compare[1]}", {**parse_variant(args.compare[1]), **base})]
    jobs: List[Job] = []
    n_threads = 0 if args.jobs <= 1 else max(1, (os.cpu_count() or 2) // args.jobs)
    for run in args.runs:
        path = Path(run)
        if not path.exists():
            raise ConfigError(f"run {path} does not exist")
        labels = args.labels
        if _is_run_dir(path) and not args.compare:
            jobs.append(Job(path.name, str(path), None, {}, None, labels, args.keep_unknown, n_threads))
            continue
        if labels is None:
            beside = (path.parent if path.is_dir() else path.parent) / "labels.csv"
            labels = str(beside) if beside.is_file() else None
        for tag, ov in variants:
            name = path.name if not tag else f"{path.name} [{tag}]"
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            jobs.append(Job(name, str(report / "runs" / safe), str(path), ov, args.config, labels,
                            args.keep_unknown, n_threads))
    return jobs


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from fer_perception.report import write_report

    report = Path(args.report) if args.report else Path(str(Path(args.runs[0]).resolve()) + "_report")
    jobs = build_jobs(args, report)
    if args.jobs > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            evals = list(pool.map(_execute, jobs))
    else:
        evals = [_execute(j) for j in jobs]
    md = write_report(evals, report, title=args.title)
    print_table(evals, Console())
    print(f"report: {md}")
    return 0


def print_table(evals, console) -> None:
    from rich.table import Table

    from fer_perception.evaluate import summary_rows

    rows = summary_rows(evals)
    several = len({r["run"] for r in rows}) > 1
    t = Table(title="evaluation")
    cols = (["run"] if several else []) + ["path", "model", "n", "acc", "bal.acc", "F1", "p50 ms", "p95 ms", "RT"]
    for c in cols:
        t.add_column(c, no_wrap=c in ("path", "acc", "RT"))
    for r in rows:
        model = r["model"].replace("_synthetic_demo", " (demo)")
        cells = [r["source"], model, str(r["n"]), f"{r['accuracy']:.3f}", f"{r['balanced_accuracy']:.3f}",
                 f"{r['macro_f1']:.3f}", f"{r['latency_p50_ms']:.1f}", f"{r['latency_p95_ms']:.1f}",
                 f"{r['real_time_factor']:.2f}x"]
        t.add_row(*(([r["run"]] if several else []) + cells))
    console.print(t)
