"""Fuzz every event decoder: random bytes and mutated valid messages may only raise DecodeError subclasses.

Mutations: truncation, byte flips, and length fields inflated (any 4-byte slot overwritten with a large
count). Whatever decodes must be a consistent EventBatch (equal array lengths, canonical dtypes).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_perception.errors import DecodeError
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import encode_event_array
from fer_perception.events.decoders import SUPPORTED_MESSAGE_TYPES, make_decoder
from fer_perception.events.event_packet import ENCODINGS, encode_event_packet

NS = 1_000_000_000
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seed_batch(n: int, seed: int) -> EventBatch:
    rng = np.random.default_rng(seed)
    t = 1_700_000_000 * NS + np.sort(rng.integers(0, 50_000, n)) * 1000
    return EventBatch.from_arrays(rng.integers(0, 64, n), rng.integers(0, 48, n), t, rng.integers(0, 2, n),
                                  64, 48, 0, "cam")


def _valid_messages():
    out = []
    for n, seed in ((0, 0), (1, 1), (40, 2)):
        b = _seed_batch(n, seed)
        for be in (False, True):
            out.append(("dv_ros2_msgs/msg/EventArray", encode_event_array(b, big_endian=be)))
            for enc in ENCODINGS:
                out.append(("event_camera_msgs/msg/EventPacket", encode_event_packet(b, enc, big_endian=be)))
    # a clustered batch so that vector words are present
    ts, xs = np.meshgrid(np.arange(5), np.arange(24), indexing="ij")
    edge = EventBatch.from_arrays(np.repeat(xs.ravel(), 4), np.tile(np.arange(4), 120),
                                  np.repeat(ts.ravel() * 1000, 4), np.ones(480), 64, 48, 0, "")
    for enc in ("evt3", "libcaer_cmp"):
        out.append(("event_camera_msgs/msg/EventPacket", encode_event_packet(edge, enc)))
    return out


VALID = _valid_messages()


def _check(msg_type: str, data: bytes, decoder=None) -> None:
    dec = decoder or make_decoder(msg_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy overflow/cast warnings would mean silent garbage
        try:
            batch = dec.decode(data)
        except DecodeError as exc:
            assert str(exc)  # every rejection names its problem
            return
    assert isinstance(batch, EventBatch)
    assert len(batch.x) == len(batch.y) == len(batch.t) == len(batch.p)
    assert batch.x.dtype == np.uint16 and batch.y.dtype == np.uint16
    assert batch.t.dtype == np.int64 and batch.p.dtype == np.uint8
    if len(batch) and batch.width > 0 and batch.height > 0:
        assert int(batch.x.max()) < batch.width and int(batch.y.max()) < batch.height


@pytest.mark.parametrize("msg_type", SUPPORTED_MESSAGE_TYPES)
@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes(msg_type, data):
    _check(msg_type, data)


@FUZZ
@given(body=st.binary(max_size=300), le=st.booleans())
def test_random_bodies_behind_a_valid_cdr_header(body, le):
    data = (b"\x00\x01\x00\x00" if le else b"\x00\x00\x00\x00") + body
    for msg_type in ("dvs_msgs/msg/EventArray", "event_camera_msgs/msg/EventPacket"):
        _check(msg_type, data)


@FUZZ
@given(idx=st.integers(0, len(VALID) - 1), cut=st.integers(0, 10_000))
def test_truncated_valid_messages(idx, cut):
    msg_type, data = VALID[idx]
    _check(msg_type, data[: cut % (len(data) + 1)])


@FUZZ
@given(idx=st.integers(0, len(VALID) - 1),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=6))
def test_byte_flips(idx, flips):
    msg_type, data = VALID[idx]
    buf = bytearray(data)
    for pos, xor in flips:
        buf[pos % len(buf)] ^= xor
    _check(msg_type, bytes(buf))


@FUZZ
@given(idx=st.integers(0, len(VALID) - 1), slot=st.integers(0, 10_000),
       value=st.sampled_from([0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 1 << 20, 65535, 257]))
def test_inflated_length_fields(idx, slot, value):
    msg_type, data = VALID[idx]
    buf = bytearray(data)
    pos = 4 + 4 * (slot % max(1, (len(buf) - 4) // 4))
    if pos + 4 <= len(buf):
        buf[pos:pos + 4] = value.to_bytes(4, "little" if buf[1] == 1 else "big")
    _check(msg_type, bytes(buf))


@FUZZ
@given(seq=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 10_000), st.integers(0, 255)),
                    min_size=2, max_size=6))
def test_stateful_packet_decoder_survives_a_stream_of_mutated_packets(seq):
    dec = make_decoder("event_camera_msgs/msg/EventPacket")
    packets = [(m, d) for m, d in VALID if m.endswith("EventPacket")]
    for idx, pos, xor in seq:
        _, data = packets[idx % len(packets)]
        buf = bytearray(data)
        buf[pos % len(buf)] ^= xor
        _check("event_camera_msgs/msg/EventPacket", bytes(buf), decoder=dec)


@FUZZ
@given(words=st.lists(st.integers(0, 0xFFFF), max_size=300), enc=st.sampled_from(["evt3", "libcaer_cmp"]),
       width=st.sampled_from([0, 640]))
def test_random_word_streams(words, enc, width):
    """Random 16-bit word payloads in a valid envelope: reserved codes, vectors at any base, no time."""
    payload = np.asarray(words, "<u2").tobytes()
    data = bytearray(encode_event_packet(EventBatch.empty(width, 480 if width else 0), enc))
    data[-4:] = len(payload).to_bytes(4, "little")
    _check("event_camera_msgs/msg/EventPacket", bytes(data) + payload)
