"""Bag reading: round trips in sqlite3 and mcap, time order, decoded inputs, malformed/corrupt/missing cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_perception.bag.reader import BagReader, EventsMessage, ImageMessage, LabelMessage, normalize_type
from fer_perception.bag.writer import BagWriter
from fer_perception.errors import BagError
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import encode_event_array

EV = "dv_ros2_msgs/msg/EventArray"
IMG = "sensor_msgs/msg/Image"
CIMG = "sensor_msgs/msg/CompressedImage"
STR = "std_msgs/msg/String"
T0 = 1_700_000_000_000_000_000


def _events(k: int) -> EventBatch:
    rng = np.random.default_rng(k)
    n = 50 + k
    t = T0 + k * 1_000_000 + np.arange(n) * 1000
    return EventBatch.from_arrays(rng.integers(0, 32, n), rng.integers(0, 24, n), t, rng.integers(0, 2, n),
                                  32, 24, int(t[-1]), "dvs")


def _image_msg(bag: BagWriter, stamp: int, value: int):
    Image = bag.msg(IMG)
    data = np.full((24, 32, 3), value, np.uint8)
    return Image(header=bag.header(bag.typestore, stamp, "cam"), height=24, width=32, encoding="rgb8",
                 is_bigendian=0, step=96, data=data.reshape(-1))


def write_bag(path: Path, storage: str, malformed: int = 0) -> dict:
    """5 event messages, 3 images (written out of time order), 1 compressed image, 2 labels; returns truth."""
    import cv2

    with BagWriter(path, storage=storage) as bag:
        for k in (2, 0, 1):
            bag.write("/cam/image", IMG, T0 + k * 2_000_000 + 500, _image_msg(bag, T0 + k * 2_000_000 + 500, 10 * k))
        for k in range(5):
            b = _events(k)
            bag.write_raw("/dvs/events", EV, int(b.t[-1]), encode_event_array(b))
        for i in range(malformed):
            bag.write_raw("/dvs/events", EV, T0 + 7_000_000 + i, b"\x00\x01\x00\x00\x01")  # truncated CDR
        CImg = bag.msg(CIMG)
        ok, png = cv2.imencode(".png", np.full((8, 8, 3), 200, np.uint8))
        bag.write("/cam/compressed", CIMG, T0 + 9_000_000,
                  CImg(header=bag.header(bag.typestore, T0 + 9_000_000, "cam"), format="png",
                       data=np.frombuffer(png.tobytes(), np.uint8)))
        String = bag.msg(STR)
        bag.write("/labels", STR, T0, String(data="neutral"))
        bag.write("/labels", STR, T0 + 3_000_000, String(data="happy"))
    return {"events": 5 + malformed, "images": 3}


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip_topics_order_and_decoding(tmp_path: Path, storage: str):
    path = tmp_path / f"bag_{storage}"
    write_bag(path, storage)
    with BagReader(path) as r:
        assert r.topics == {"/cam/image": IMG, "/dvs/events": EV, "/cam/compressed": CIMG, "/labels": STR}
        assert r.counts == {"/cam/image": 3, "/dvs/events": 5, "/cam/compressed": 1, "/labels": 2}
        assert r.find_event_topic() == "/dvs/events"
        assert r.find_image_topics() == ["/cam/compressed", "/cam/image"]
        raw = list(r.messages())
        ts = [m.t_ns for m in raw]
        assert ts == sorted(ts) and len(raw) == 11
        items = list(r.decoded("/dvs/events", ["/cam/image", "/cam/compressed"], "/labels"))
        evs = [i for i in items if isinstance(i, EventsMessage)]
        imgs = [i for i in items if isinstance(i, ImageMessage)]
        labs = [i for i in items if isinstance(i, LabelMessage)]
        assert len(evs) == 5 and len(imgs) == 4 and [x.text for x in labs] == ["neutral", "happy"]
        for k, e in enumerate(evs):
            ref = _events(k)
            np.testing.assert_array_equal(e.batch.x, ref.x)
            np.testing.assert_array_equal(e.batch.t, ref.t)
            np.testing.assert_array_equal(e.batch.p, ref.p)
            assert e.batch.frame_id == "dvs" and e.batch.width == 32
        raw_images = [i for i in imgs if i.topic == "/cam/image"]
        assert [int(i.image[0, 0, 0]) for i in raw_images] == [0, 10, 20]  # time order, not write order
        assert raw_images[1].stamp_ns == T0 + 2_000_500 and raw_images[1].frame_id == "cam"
        comp = [i for i in imgs if i.topic == "/cam/compressed"][0]
        assert comp.image.shape == (8, 8, 3) and int(comp.image[0, 0, 0]) == 200
        assert r.malformed_total == 0


def test_malformed_messages_skipped_and_counted(tmp_path: Path):
    path = tmp_path / "bag"
    write_bag(path, "sqlite3", malformed=3)
    with BagReader(path) as r:
        items = list(r.decoded("/dvs/events"))
    assert len(items) == 5
    assert r.malformed == {"/dvs/events": 3}
    assert "Truncated" in r.malformed_reasons["/dvs/events"] or "truncated" in r.malformed_reasons["/dvs/events"]


def test_missing_topic_and_wrong_type_list_contents(tmp_path: Path):
    path = tmp_path / "bag"
    write_bag(path, "mcap")
    with BagReader(path) as r:
        listing = r"'/nope'.*the bag contains: .*/dvs/events \[dv_ros2_msgs/msg/EventArray, 5 msgs\]"
        with pytest.raises(BagError, match=listing):
            list(r.decoded("/nope"))
        with pytest.raises(BagError, match="expected one of"):
            list(r.decoded(None, ["/labels"]))
        with pytest.raises(BagError, match="unsupported event message type.*the bag contains"):
            list(r.decoded("/labels"))


def test_missing_and_corrupt_bags(tmp_path: Path):
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "nothing")
    # a folder without metadata
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="cannot open"):
        BagReader(tmp_path / "empty").open()
    # garbage metadata
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, mapping")
    with pytest.raises(BagError, match="cannot open"):
        BagReader(bad).open()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_storage_file(tmp_path: Path, storage: str):
    path = tmp_path / "bag"
    write_bag(path, storage)
    data_file = next(p for p in path.iterdir() if p.suffix in (".db3", ".mcap"))
    raw = data_file.read_bytes()
    data_file.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BagError, match="bag"):
        with BagReader(path) as r:
            list(r.messages())


def test_no_event_topic_error(tmp_path: Path):
    path = tmp_path / "bag"
    with BagWriter(path) as bag:
        bag.write("/labels", STR, T0, bag.msg(STR)(data="x"))
    with BagReader(path) as r:
        with pytest.raises(BagError, match="no event topic.*?/labels"):
            r.find_event_topic()


def test_ros1_bag_events_and_images(tmp_path: Path):
    """A ROS 1 bag (Noetic definitions, header with seq): events converted to CDR and decoded, labels read."""
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    from fer_perception.msgdefs import THIRD_PARTY_DEFINITIONS

    store = get_typestore(Stores.ROS1_NOETIC)
    types = {}
    for name in ("dvs_msgs/msg/Event", "dvs_msgs/msg/EventArray"):
        types.update(get_types_from_msg(THIRD_PARTY_DEFINITIONS[name], name))
    store.register(types)
    T, H = store.types["builtin_interfaces/msg/Time"], store.types["std_msgs/msg/Header"]
    Ev, Arr = store.types["dvs_msgs/msg/Event"], store.types["dvs_msgs/msg/EventArray"]
    batch = _events(3)
    evs = [Ev(x=int(x), y=int(y), ts=T(sec=int(t // 10**9), nanosec=int(t % 10**9)), polarity=bool(p))
           for x, y, t, p in zip(batch.x, batch.y, batch.t, batch.p)]
    stamp = int(batch.t[-1])
    msg = Arr(header=H(seq=11, stamp=T(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="dvs"), height=24,
              width=32, events=evs)
    path = tmp_path / "rec.bag"
    with Writer1(path) as w:
        conn = w.add_connection("/dvs/events", "dvs_msgs/msg/EventArray", typestore=store)
        w.write(conn, stamp, store.serialize_ros1(msg, "dvs_msgs/msg/EventArray"))
        lab = w.add_connection("/labels", "std_msgs/msg/String", typestore=store)
        w.write(lab, stamp + 1, store.serialize_ros1(store.types["std_msgs/msg/String"](data="happy"),
                                                     "std_msgs/msg/String"))
    with BagReader(path) as r:
        assert r.is_ros1 and r.find_event_topic() == "/dvs/events"
        ev, label = list(r.decoded("/dvs/events", label_topic="/labels"))
    np.testing.assert_array_equal(ev.batch.x, batch.x)
    np.testing.assert_array_equal(ev.batch.t, batch.t)
    assert ev.batch.frame_id == "dvs" and ev.batch.stamp_ns == stamp and ev.batch.width == 32
    assert label.text == "happy"


def test_normalize_type():
    assert normalize_type("sensor_msgs/Image") == "sensor_msgs/msg/Image"
    assert normalize_type("sensor_msgs/msg/Image") == "sensor_msgs/msg/Image"
