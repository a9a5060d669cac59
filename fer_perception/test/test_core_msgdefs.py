"""Message definitions without ROS: our .msg files parse, typestores know every type, bags round-trip."""

import numpy as np
import pytest

from fer_perception import labels
from fer_perception.bag.writer import BagWriter
from fer_perception.errors import BagError
from fer_perception.msgdefs import EVENT_ARRAY_TYPES, EVENT_PACKET_TYPE, find_msg_dir, get_typestore


def test_msg_files_are_found_in_the_msgs_package():
    d = find_msg_dir()
    assert (d / "Emotion.msg").is_file() and d.parent.name == "fer_perception_msgs"


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_typestore_has_all_types(distro):
    ts = get_typestore(distro)
    for name in (*EVENT_ARRAY_TYPES, EVENT_PACKET_TYPE, "fer_perception_msgs/msg/Emotion",
                 "fer_perception_msgs/msg/Demographics", "hri_msgs/msg/Expression", "hri_msgs/msg/IdsList"):
        assert name in ts.types, name
    emotion = ts.types["fer_perception_msgs/msg/Emotion"]
    assert emotion.SOURCE_EVENTS == "events" and emotion.SOURCE_FRAMES == "frames"
    fields = list(emotion.__dataclass_fields__)
    for f in ("header", "face_id", "roi", "source", "model", "label", "confidence", "labels",
              "probabilities", "window", "latency_ms"):
        assert f in fields


def _emotion(ts, stamp_ns):
    T = ts.types
    return T["fer_perception_msgs/msg/Emotion"](
        header=BagWriter.header(ts, stamp_ns, "davis"),
        face_id="face_1",
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=1, y_offset=2, height=30, width=40, do_rectify=False),
        source="events", model="spiking_fer", label="happy", confidence=0.9,
        labels=list(labels.FERDVS_CLASSES), probabilities=np.full(6, 1 / 6, np.float32),
        window=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=87_000_000), latency_ms=4.5,
    )


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_writer_round_trip(tmp_path, storage):
    from rosbags.rosbag2 import Reader

    path = tmp_path / f"bag_{storage}"
    with BagWriter(path, storage=storage) as bag:
        ts = bag.typestore
        for i in range(3):
            bag.write("/fer/emotion/events", "fer_perception_msgs/msg/Emotion", 1_000 + i, _emotion(ts, 1_000 + i))
    with Reader(path) as reader:
        msgs = [(c.topic, t, ts.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]
    assert [m[1] for m in msgs] == [1000, 1001, 1002]
    assert msgs[0][2].face_id == "face_1" and msgs[0][2].labels[0] == "happy"
    with pytest.raises(BagError, match="exists"):
        BagWriter(path, storage=storage)


def test_bag_writer_rejects_type_change_and_unknown_type(tmp_path):
    with BagWriter(tmp_path / "b") as bag:
        bag.write("/a", "fer_perception_msgs/msg/Emotion", 1, _emotion(bag.typestore, 1))
        with pytest.raises(BagError, match="already has type"):
            bag.write_raw("/a", "fer_perception_msgs/msg/Demographics", 2, b"\x00\x01\x00\x00")
        with pytest.raises(BagError, match="unknown"):
            bag.write_raw("/b", "nope_msgs/msg/Nope", 2, b"\x00\x01\x00\x00")


def test_labels_mapping():
    assert labels.canonical("Happiness") == "happy"
    assert labels.to_rep155("fear") == "scared" and labels.to_rep155("sadness") == "sad"
    assert len(labels.AFFECTNET8_CLASSES) == 8 and labels.AFFECTNET7_CLASSES[-1] == "anger"
