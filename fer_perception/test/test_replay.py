"""End to end: a short sample replayed through the real pipeline into a bag + results, then evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_perception.bag.reader import BagReader
from fer_perception.bag.writer import BagWriter
from fer_perception.cli import main
from fer_perception.commands.replay import OUT_TOPICS, load_config, replay_bag
from fer_perception.errors import BagError, ConfigError
from fer_perception.evaluate import evaluate_run
from fer_perception.sample import EVENTS_TOPIC, SampleConfig, make_sample

WEIGHTS = Path(__file__).resolve().parents[1] / "fer_perception" / "weights"
HAVE_FRAME_DEMO = (WEIGHTS / "light_fer_synthetic_demo.pt").is_file() and \
    (WEIGHTS / "age_gender_synthetic_demo.pt").is_file()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from fer_perception.models.checkpoint import save_checkpoint
    from fer_perception.models.spiking_fer import build_model

    root = tmp_path_factory.mktemp("replay")
    torch.manual_seed(0)
    model = build_model("snn", n_classes=6, timesteps=4, width=0.125, input_size=32)
    ckpt = root / "tiny_snn.pt"
    save_checkpoint(ckpt, model, {"representation": {"events_per_frame": 500, "timesteps": 4, "size": 32,
                                                     "crop_size": 200}})
    sample = make_sample(root / "sample", SampleConfig(identities=1, clips_per_identity=2, clip_s=0.5,
                                                       rgb_size=(160, 120)))
    settings = {"snn_checkpoint": str(ckpt), "event_faces_from": "aps", "event_roi_scale": 1.25,
                "frame_source": "rgb", "tracker_min_hits": 1, "threads": 1,
                "expression_model": "light" if HAVE_FRAME_DEMO else "none",
                "age_gender_checkpoint": "demo" if HAVE_FRAME_DEMO else ""}
    return root, sample, settings


def _run(root, sample, settings, name, **kw):
    return replay_bag(sample.bag, root / name, load_config(None, settings), overwrite=True, progress=False, **kw)


def test_replay_writes_bag_results_and_summary(setup):
    root, sample, settings = setup
    summary = _run(root, sample, settings, "run")
    out = root / "run"
    p = summary["pipeline"]
    assert summary["topics"]["events"] == EVENTS_TOPIC and summary["topics"]["labels"] == "/labels"
    assert p["events"] == sample.counts["events"] and p["frames"] == 32
    assert p["windows"] > 5 and p["windows"] == summary["results"]["emotion_events"]
    assert summary["malformed_total"] == 0 and summary["real_time_factor"] > 0
    assert summary["config"]["events_per_frame"] == 500  # taken from the checkpoint
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    ev = [r for r in records if r["kind"] == "emotion" and r["source"] == "events"]
    assert len(ev) == p["windows"] and all(abs(sum(r["probabilities"]) - 1) < 1e-4 for r in ev)
    assert [r["text"] for r in records if r["kind"] == "label"] == ["neutral", "happy", "neutral", "fear"]
    # every window: 2000 events of one face (or the fallback region), stamps increase per face
    faces = {r["face_id"] for r in ev}
    for f in faces:
        stamps = [r["stamp_ns"] for r in ev if r["face_id"] == f]
        assert stamps == sorted(stamps)
    with BagReader(out) as r:
        topics = r.topics
        assert topics[OUT_TOPICS["emotion_events"][0]] == "fer_perception_msgs/msg/Emotion"
        assert topics[OUT_TOPICS["event_frame"][0]] == "sensor_msgs/msg/Image"
        msgs = [r.deserialize(m) for m in r.messages([OUT_TOPICS["emotion_events"][0]])]
    assert len(msgs) == len(ev)
    m0, r0 = msgs[0], ev[0]
    assert m0.face_id == r0["face_id"] and m0.label == r0["label"] and m0.source == "events"
    assert list(m0.labels) == r0["labels"]
    np.testing.assert_allclose(m0.probabilities, r0["probabilities"], atol=1e-5)
    assert m0.header.stamp.sec * 10**9 + m0.header.stamp.nanosec == r0["stamp_ns"]
    assert m0.window.sec * 10**9 + m0.window.nanosec == r0["window_ns"] > 0
    if HAVE_FRAME_DEMO:
        assert summary["results"]["emotion_frames"] > 0 and summary["results"]["demographics"] > 0
    # evaluation of the run, from the copied label topic and from the CSV
    e1 = evaluate_run(out)
    e2 = evaluate_run(out, sample.labels_csv)
    assert e1.sources["events"].metrics.n == e2.sources["events"].metrics.n > 0
    assert e1.sources["events"].metrics.accuracy == e2.sources["events"].metrics.accuracy


def test_replay_is_deterministic_and_mcap_output(setup):
    root, sample, settings = setup
    _run(root, sample, settings, "a")
    _run(root, sample, settings, "b", storage="mcap")

    def strip(path):
        out = []
        for line in (path / "results.jsonl").read_text().splitlines():
            r = json.loads(line)
            r.pop("latency_ms", None)
            out.append(r)
        return out

    assert strip(root / "a") == strip(root / "b")
    assert any(p.suffix == ".mcap" for p in (root / "b").iterdir())


def test_malformed_input_messages_are_skipped_and_counted(setup, tmp_path):
    root, sample, settings = setup
    bag = tmp_path / "with_bad"
    with BagReader(sample.bag) as r, BagWriter(bag) as w:
        for i, m in enumerate(r.messages()):
            w.write_raw(m.topic, m.msgtype, m.t_ns, m.data)
            if m.topic == EVENTS_TOPIC and i % 200 == 0:
                w.write_raw(m.topic, m.msgtype, m.t_ns, m.data[: len(m.data) // 2])  # truncated copy
    summary = replay_bag(bag, tmp_path / "out", load_config(None, {**settings, "expression_model": "none",
                                                                   "age_gender_checkpoint": ""}),
                         progress=False, event_frame_hz=0)
    assert summary["malformed"] == {EVENTS_TOPIC: summary["malformed_total"]}
    assert summary["malformed_total"] > 3 and summary["pipeline"]["malformed"] == summary["malformed_total"]
    assert summary["pipeline"]["events"] == sample.counts["events"]


def test_replay_errors(setup, tmp_path):
    root, sample, settings = setup
    cfg = load_config(None, settings)
    with pytest.raises(BagError, match="exists"):
        replay_bag(sample.bag, sample.bag, cfg, progress=False)
    with pytest.raises(BagError, match="/nope.*the bag contains"):
        replay_bag(sample.bag, tmp_path / "o", cfg, events_topic="/nope", progress=False)
    with pytest.raises(ConfigError, match="unknown pipeline parameter"):
        load_config(None, {"no_such_setting": 1})


def test_cli_replay_and_evaluate(setup, tmp_path, capsys):
    root, sample, settings = setup
    sets = []
    for k, v in {**settings, "expression_model": "none", "age_gender_checkpoint": ""}.items():
        sets += ["--set", f"{k}={v}"]
    assert main(["replay", str(sample.bag), "-o", str(tmp_path / "cli"), "--no-progress", "--event-frame-hz", "0",
                 "--include-input", *sets]) == 0
    with BagReader(tmp_path / "cli") as r, BagReader(sample.bag) as src:
        assert r.counts[EVENTS_TOPIC] == src.counts[EVENTS_TOPIC] and "/fer/emotion/events" in r.topics
        assert "/fer/event_frame" not in r.topics
    assert main(["evaluate", str(tmp_path / "cli"), "--labels", str(sample.labels_csv), "--report",
                 str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").is_file()
    assert "events" in capsys.readouterr().out
    assert main(["replay", str(tmp_path / "missing"), "-o", str(tmp_path / "x")]) == 2


def test_evaluate_compare_two_configurations_in_a_process_pool(setup, tmp_path, capsys):
    root, sample, settings = setup
    sets = []
    for k, v in {**settings, "expression_model": "none", "age_gender_checkpoint": ""}.items():
        sets += ["--set", f"{k}={v}"]
    rep = tmp_path / "cmp"
    assert main(["evaluate", str(sample.bag), "--compare", "smoothing=none", "smoothing=ema,smoothing_alpha=0.3",
                 "--jobs", "2", "--report", str(rep), *sets]) == 0
    data = json.loads((rep / "report.json").read_text())
    runs = {row["run"] for row in data["summary"]}
    assert runs == {"sample_bag [A:smoothing=none]", "sample_bag [B:smoothing=ema,smoothing_alpha=0.3]"}
    cfgs = {r["name"]: r["summary"]["config"] for r in data["runs"]}
    assert cfgs["sample_bag [A:smoothing=none]"]["smoothing"] == "none"
    assert cfgs["sample_bag [B:smoothing=ema,smoothing_alpha=0.3]"]["smoothing_alpha"] == 0.3
    assert "labels.csv" not in capsys.readouterr().err
