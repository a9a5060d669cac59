"""EventArray CDR decoding/encoding against rosbags (both endiannesses), and its rejection of bad input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from fer_perception.errors import (
    DecodeError,
    EventOutOfBoundsError,
    TimestampOrderError,
    TruncatedMessageError,
    UnknownEncodingError,
    UnknownMessageTypeError,
)
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import (
    EncodeError,
    MalformedMessageError,
    decode_event_array,
    encode_event_array,
)
from fer_perception.events.decoders import (
    SUPPORTED_MESSAGE_TYPES,
    SUPPORTED_PACKET_ENCODINGS,
    EventArrayDecoder,
    make_decoder,
    normalize_type_name,
)
from fer_perception.events.event_packet import EventPacketDecoder
from fer_perception.msgdefs import EVENT_ARRAY_TYPES, get_typestore

NS = 1_000_000_000


@pytest.fixture(scope="module")
def store():
    return get_typestore()


def random_batch(rng, n, width=346, height=260, frame_id="dvs", stamp_ns=None):
    x = rng.integers(0, width, n)
    y = rng.integers(0, height, n)
    t = np.sort(rng.integers(1_700_000_000 * NS, 1_700_000_002 * NS, n)) // 1000 * 1000
    p = rng.integers(0, 2, n)
    stamp = int(t[-1]) if n and stamp_ns is None else (stamp_ns or 0)
    return EventBatch.from_arrays(x, y, t, p, width, height, stamp, frame_id)


def rosbags_message(store, batch, msg_type="dv_ros2_msgs/msg/EventArray"):
    pkg = msg_type.split("/")[0]
    Ev = store.types[f"{pkg}/msg/Event"]
    Arr = store.types[msg_type]
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    events = [
        Ev(x=int(x), y=int(y), ts=Time(sec=int(t // NS), nanosec=int(t % NS)), polarity=bool(p))
        for x, y, t, p in zip(batch.x, batch.y, batch.t, batch.p)
    ]
    stamp = Time(sec=batch.stamp_ns // NS, nanosec=batch.stamp_ns % NS)
    return Arr(header=Header(stamp=stamp, frame_id=batch.frame_id), height=batch.height, width=batch.width,
               events=events)


def assert_same_events(a: EventBatch, b: EventBatch):
    assert len(a) == len(b)
    for name in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.width, a.height, a.stamp_ns, a.frame_id) == (b.width, b.height, b.stamp_ns, b.frame_id)


@pytest.mark.parametrize("msg_type", EVENT_ARRAY_TYPES)
@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 300])
def test_encode_is_byte_identical_to_rosbags_and_decodes_back(store, msg_type, little_endian, n):
    rng = np.random.default_rng(n * 7 + little_endian)
    for frame_id in ("", "a", "ab", "abc", "abcd", "camera_optical_frame"):
        batch = random_batch(rng, n, frame_id=frame_id, stamp_ns=1_700_000_001 * NS + 123)
        ref = bytes(store.serialize_cdr(rosbags_message(store, batch, msg_type), msg_type,
                                        little_endian=little_endian))
        mine = encode_event_array(batch, big_endian=not little_endian)
        assert mine == ref, (frame_id, n)
        assert_same_events(decode_event_array(ref), batch)


def test_decode_matches_rosbags_deserialize(store):
    batch = random_batch(np.random.default_rng(3), 500)
    data = encode_event_array(batch)
    msg = store.deserialize_cdr(data, "dvs_msgs/msg/EventArray")
    dec = decode_event_array(data)
    assert [e.x for e in msg.events] == dec.x.tolist()
    assert [e.y for e in msg.events] == dec.y.tolist()
    assert [e.ts.sec * NS + e.ts.nanosec for e in msg.events] == dec.t.tolist()
    assert [int(e.polarity) for e in msg.events] == dec.p.tolist()
    assert msg.header.stamp.sec * NS + msg.header.stamp.nanosec == dec.stamp_ns
    assert (msg.width, msg.height, msg.header.frame_id) == (dec.width, dec.height, dec.frame_id)


def test_decoded_arrays_have_canonical_dtypes_and_t_from_sec_nanosec():
    batch = EventBatch.from_arrays([5, 6], [7, 8], [3 * NS + 999_999_000, 4 * NS], [1, 0], 10, 10, 4 * NS, "f")
    dec = decode_event_array(encode_event_array(batch))
    assert dec.x.dtype == np.uint16 and dec.y.dtype == np.uint16
    assert dec.t.dtype == np.int64 and dec.p.dtype == np.uint8
    assert dec.t.tolist() == [3 * NS + 999_999_000, 4 * NS]
    assert dec.p.tolist() == [1, 0]


def test_trailing_padding_is_ignored_and_memoryview_input_works():
    batch = random_batch(np.random.default_rng(1), 10)
    data = encode_event_array(batch)
    assert_same_events(decode_event_array(data + b"\x00\x00\x00"), batch)
    assert_same_events(decode_event_array(memoryview(bytearray(data))), batch)


def test_nonzero_polarity_byte_reads_as_on():
    batch = EventBatch.from_arrays([1, 2], [1, 2], [10, 20], [1, 1], 4, 4, 0, "")
    data = bytearray(encode_event_array(batch))
    s = len(data) - (16 * 2 - 3)
    data[s + 12] = 7
    assert decode_event_array(bytes(data)).p.tolist() == [1, 1]


def test_empty_event_array_keeps_header():
    batch = EventBatch.empty(640, 480, 5 * NS + 1, "cam")
    dec = decode_event_array(encode_event_array(batch))
    assert len(dec) == 0 and (dec.width, dec.height, dec.stamp_ns, dec.frame_id) == (640, 480, 5 * NS + 1, "cam")


@pytest.mark.parametrize("cut", [0, 1, 3, 4, 10, 15, 20, 28, 33, -1, -13, -16])
def test_truncated_buffers_raise_truncated_message_error(cut):
    data = encode_event_array(random_batch(np.random.default_rng(2), 4, frame_id="abc"))
    short = data[:cut] if cut >= 0 else data[:len(data) + cut]
    with pytest.raises(TruncatedMessageError):
        decode_event_array(short)


def test_event_count_larger_than_buffer_is_rejected_before_reading():
    data = bytearray(encode_event_array(random_batch(np.random.default_rng(2), 4, frame_id="abc")))
    # header: 4 encaps + 8 stamp + 4 len + 4 "abc\0" + height + width -> count at offset 28
    assert struct.unpack_from("<I", data, 28)[0] == 4
    for count in (5, 1 << 20, 0xFFFFFFFF):
        struct.pack_into("<I", data, 28, count)
        with pytest.raises(TruncatedMessageError, match=f"announces {count} events"):
            decode_event_array(bytes(data))


def test_frame_id_length_beyond_buffer():
    data = bytearray(encode_event_array(random_batch(np.random.default_rng(2), 4)))
    struct.pack_into("<I", data, 12, 0x7FFFFFFF)
    with pytest.raises(TruncatedMessageError, match="header.frame_id"):
        decode_event_array(bytes(data))


@pytest.mark.parametrize("rep", [b"\x00\x02", b"\x00\x03", b"\x00\x07", b"\x12\x34"])
def test_unknown_representation_id(rep):
    data = rep + encode_event_array(random_batch(np.random.default_rng(2), 2))[2:]
    with pytest.raises(UnknownEncodingError, match="representation id"):
        decode_event_array(data)


def test_string_without_terminator_or_bad_utf8_is_malformed():
    data = bytearray(encode_event_array(random_batch(np.random.default_rng(2), 2, frame_id="abc")))
    bad = bytearray(data)
    bad[19] = ord("x")  # the NUL after "abc"
    with pytest.raises(MalformedMessageError, match="NUL"):
        decode_event_array(bytes(bad))
    bad = bytearray(data)
    bad[16] = 0xFF
    with pytest.raises(MalformedMessageError, match="UTF-8"):
        decode_event_array(bytes(bad))


def test_out_of_bounds_events_raise_unless_size_unknown():
    batch = EventBatch.from_arrays([1, 346], [2, 3], [1, 2], [1, 0], 346, 260, 0, "")
    data = encode_event_array(batch)
    with pytest.raises(EventOutOfBoundsError, match="x=346"):
        decode_event_array(data)
    assert len(decode_event_array(data, check_sensor_bounds=False)) == 2
    unknown = encode_event_array(batch, width=0, height=0)
    assert decode_event_array(unknown).x.tolist() == [1, 346]


def test_timestamps_going_back_inside_a_message():
    batch = EventBatch.from_arrays([1, 2, 3], [1, 2, 3], [10, 30, 20], [1, 0, 1], 8, 8, 0, "")
    data = encode_event_array(batch)
    with pytest.raises(TimestampOrderError, match="event 2"):
        decode_event_array(data)
    assert decode_event_array(data, strict_order=False).t.tolist() == [10, 30, 20]
    same = encode_event_array(EventBatch.from_arrays([1, 2], [1, 2], [10, 10], [1, 0], 8, 8, 0, ""))
    assert decode_event_array(same).t.tolist() == [10, 10]


def test_encode_rejects_unrepresentable_timestamps():
    batch = EventBatch.from_arrays([1], [1], [(1 << 31) * NS], [1], 8, 8, 0, "")
    with pytest.raises(EncodeError):
        encode_event_array(batch)


def test_all_errors_are_decode_errors():
    for exc in (TruncatedMessageError, UnknownEncodingError, MalformedMessageError, EventOutOfBoundsError,
                TimestampOrderError):
        assert issubclass(exc, DecodeError)


# ------------------------------------------------------------------------------------------ make_decoder


def test_supported_lists():
    assert set(EVENT_ARRAY_TYPES) < set(SUPPORTED_MESSAGE_TYPES)
    assert "event_camera_msgs/msg/EventPacket" in SUPPORTED_MESSAGE_TYPES
    assert set(SUPPORTED_PACKET_ENCODINGS) == {"mono", "libcaer", "libcaer_cmp", "evt3"}


@pytest.mark.parametrize("name", ["dv_ros2_msgs/msg/EventArray", "dv_ros2_msgs/EventArray",
                                  "prophesee_event_msgs/EventArray", "/dvs_msgs/msg/EventArray"])
def test_make_decoder_accepts_both_spellings(name):
    dec = make_decoder(name)
    assert isinstance(dec, EventArrayDecoder)
    assert dec.msg_type == normalize_type_name(name)
    batch = random_batch(np.random.default_rng(5), 20)
    assert_same_events(dec.decode(encode_event_array(batch)), batch)


def test_make_decoder_event_packet_is_fresh_per_call():
    a = make_decoder("event_camera_msgs/EventPacket")
    b = make_decoder("event_camera_msgs/msg/EventPacket", time_reference="sensor")
    assert isinstance(a, EventPacketDecoder) and a is not b
    assert a.msg_type == "event_camera_msgs/msg/EventPacket" and b.time_reference == "sensor"


@pytest.mark.parametrize("name", ["sensor_msgs/msg/Image", "dvs_msgs/srv/EventArray", "EventArray",
                                  "dvs_msgs/msg/Event", "a/b/c/d", ""])
def test_unknown_message_types_list_the_supported_ones(name):
    with pytest.raises(UnknownMessageTypeError) as info:
        make_decoder(name)
    for supported in SUPPORTED_MESSAGE_TYPES:
        assert supported in str(info.value)
