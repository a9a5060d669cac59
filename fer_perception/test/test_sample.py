"""The sample recording: topics, message layout, labels, determinism and reuse."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from fer_perception.bag.reader import BagReader, EventsMessage, ImageMessage, LabelMessage
from fer_perception.errors import ConfigError
from fer_perception.sample import (
    APS_TOPIC, EVENTS_TOPIC, LABEL_TOPIC, RGB_TOPIC, SampleConfig, _split_messages, make_sample,
)

TINY = dict(identities=1, clips_per_identity=2, clip_s=0.5, rgb_size=(160, 120))


@pytest.fixture(scope="module")
def tiny_sample(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("sample"), SampleConfig(**TINY))


def test_topics_types_and_layout(tiny_sample):
    s = tiny_sample
    with BagReader(s.bag) as r:
        assert r.topics == {
            EVENTS_TOPIC: "dv_ros2_msgs/msg/EventArray", APS_TOPIC: "sensor_msgs/msg/Image",
            RGB_TOPIC: "sensor_msgs/msg/Image", LABEL_TOPIC: "std_msgs/msg/String",
        }
        items = list(r.decoded(EVENTS_TOPIC, [APS_TOPIC, RGB_TOPIC], LABEL_TOPIC))
        assert r.malformed_total == 0
    evs = [i for i in items if isinstance(i, EventsMessage)]
    aps = [i for i in items if isinstance(i, ImageMessage) and i.topic == APS_TOPIC]
    rgb = [i for i in items if isinstance(i, ImageMessage) and i.topic == RGB_TOPIC]
    labels = [i for i in items if isinstance(i, LabelMessage)]
    assert len(evs) > 100 and sum(len(e.batch) for e in evs) == s.counts["events"]
    for e in evs[:50]:
        b = e.batch
        assert (b.width, b.height) == (346, 260) and b.frame_id == "dvs"
        assert b.stamp_ns == int(b.t[-1]) and np.all(b.t % 1000 == 0)   # dv-ros2: microsecond clock
        assert b.t[-1] - b.t[0] < 1_000_000                               # ~1 ms messages
        assert e.t_ns == b.stamp_ns
    t_all = np.concatenate([e.batch.t for e in evs])
    assert np.all(np.diff(t_all) >= 0)
    # 15 frames per clip (0.5 s at 30 fps), every 2nd published
    assert len(aps) == len(rgb) == 2 * 8
    assert aps[0].image.shape == (260, 346, 3) and rgb[0].image.shape == (120, 160, 3)
    assert np.array_equal(aps[0].image[..., 0], aps[0].image[..., 1])  # mono8 decoded to grey RGB
    assert [lab.text for lab in labels] == ["neutral", "happy", "neutral", "fear"]


def test_label_csv_matches_label_topic(tiny_sample):
    s = tiny_sample
    rows = list(csv.DictReader(s.labels_csv.open()))
    assert [r["label"] for r in rows] == ["neutral", "happy", "neutral", "fear"]
    assert float(rows[0]["start_s"]) == 0.0 and float(rows[-1]["end_s"]) == pytest.approx(1.0)
    for a, b in zip(rows, rows[1:]):
        assert float(a["end_s"]) == pytest.approx(float(b["start_s"]))
    with BagReader(s.bag) as r:
        start = r.start_ns
        msgs = [(m.t_ns, r.deserialize(m).data) for m in r.messages([LABEL_TOPIC])]
    assert [(t - start) / 1e9 for t, _ in msgs] == pytest.approx([float(r["start_s"]) for r in rows], abs=1e-6)


def test_deterministic_and_reused(tmp_path: Path, tiny_sample):
    cfg = SampleConfig(**TINY)
    again = make_sample(tmp_path / "again", cfg)
    assert not again.reused
    with BagReader(tiny_sample.bag) as a, BagReader(again.bag) as b:
        ma, mb = list(a.messages()), list(b.messages())
    assert len(ma) == len(mb) and all(x == y for x, y in zip(ma, mb))
    assert make_sample(tmp_path / "again", cfg).reused
    assert not make_sample(tmp_path / "again", SampleConfig(**{**TINY, "seed": 8})).reused


def test_split_messages_periods():
    from fer_perception.events.batch import EventBatch

    t = np.array([0, 10, 999_999, 1_000_000, 3_500_000, 3_600_000], dtype=np.int64)
    b = EventBatch.from_arrays(np.zeros(6), np.zeros(6), t, np.ones(6), 4, 4)
    parts = _split_messages(b, 0, 1_000_000)
    assert [list(p.t) for p in parts] == [[0, 10, 999_999], [1_000_000], [3_500_000, 3_600_000]]


@pytest.mark.parametrize("kw", [{"sensor": "qvga"}, {"identities": 0}, {"clip_s": 0}, {"storage": "zip"}])
def test_config_errors(kw):
    with pytest.raises(ConfigError):
        SampleConfig(**kw)


def test_schedule_covers_all_expressions():
    sched = SampleConfig().schedule()
    assert len(sched) == 18 and {e for _, e in sched} == {"happy", "fear", "surprise", "anger", "disgust", "sadness"}
    assert SampleConfig().duration_s == pytest.approx(32.4)
