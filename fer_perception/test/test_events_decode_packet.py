"""event_camera_msgs/EventPacket: envelope vs rosbags, every encoding against a per-word reference decoder
written from the format descriptions, hand-built word streams, stream state, roundtrips and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.errors import (
    EventOutOfBoundsError,
    TimestampOrderError,
    TruncatedMessageError,
    UnknownEncodingError,
)
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import EncodeError, MalformedMessageError
from fer_perception.events.event_packet import (
    ENCODINGS,
    EventPacketDecoder,
    decode_envelope,
    decode_event_packet,
    encode_event_packet,
)
from fer_perception.msgdefs import EVENT_PACKET_TYPE, get_typestore

NS = 1_000_000_000
STAMP = 1_700_000_000 * NS


@pytest.fixture(scope="module")
def store():
    return get_typestore()


def packet(words, encoding, *, stamp_ns=STAMP, time_base=0, width=0, height=0, seq=0, big_endian=False,
           frame_id="evk4", dtype="u2"):
    """Serialize an EventPacket with rosbags around raw payload words."""
    st = get_typestore()
    Time = st.types["builtin_interfaces/msg/Time"]
    Header = st.types["std_msgs/msg/Header"]
    payload = np.asarray(words, dtype=(">" if big_endian else "<") + dtype).tobytes()
    msg = st.types[EVENT_PACKET_TYPE](
        header=Header(stamp=Time(sec=stamp_ns // NS, nanosec=stamp_ns % NS), frame_id=frame_id),
        height=height, width=width, seq=seq, time_base=time_base, encoding=encoding, is_bigendian=big_endian,
        events=np.frombuffer(payload, np.uint8).copy(),
    )
    return bytes(st.serialize_cdr(msg, EVENT_PACKET_TYPE, little_endian=not big_endian))


def events_of(batch):
    return list(zip(batch.x.tolist(), batch.y.tolist(), batch.t.tolist(), batch.p.tolist()))


# ---------------------------------------------------------------------- reference decoders (one word at a time)


class RefEvt3:
    """EVT 3.0 read word by word, as the Prophesee format description and the ros-event-camera codec do."""

    def __init__(self):
        self.saw_high = self.has_time = False
        self.high = self.low = self.y = self.bx = self.pol = 0

    def decode(self, words):
        out = []
        for w in words:
            c, v = w >> 12, w & 0xFFF
            if c == 8:
                last = (self.high >> 12) & 0xFFF
                if v < last and last - v > 10:
                    self.high += 1 << 24
                self.high = (self.high & ~0xFFFFFF) | (v << 12)
                self.saw_high = True
            elif c == 6:
                self.low = v
                self.has_time = self.has_time or self.saw_high
            elif c == 0:
                self.y = v & 0x7FF
            elif c == 3:
                self.bx, self.pol = v & 0x7FF, v >> 11
            elif c == 2:
                if self.has_time:
                    out.append((v & 0x7FF, self.y, self.high | self.low, v >> 11))
            elif c in (4, 5):
                nbits = 12 if c == 4 else 8
                if self.has_time:
                    out += [(self.bx + i, self.y, self.high | self.low, self.pol)
                            for i in range(nbits) if (v >> i) & 1]
                self.bx += nbits
        return out


class RefCmp:
    """libcaer_cmp read token by token (time restarts in every packet)."""

    def __init__(self):
        self.x = self.by = self.pol = 0

    def decode(self, words):
        high = low = 0
        out = []
        for w in words:
            c, v = w >> 12, w & 0xFFF
            if c == 0:
                high = v << 12
            elif c == 1:
                low = v
            elif c == 2:
                self.x = v & 0x7FF
            elif c == 3:
                out.append((self.x, v & 0x7FF, high | low, v >> 11))
            elif c == 4:
                self.by, self.pol = v & 0x7FF, v >> 11
            elif c == 5:
                out += [(self.x, self.by + i, high | low, self.pol) for i in range(8) if (v >> i) & 1]
                self.by += 8
        return out


def random_words(rng, n, codes, weights):
    c = rng.choice(codes, n, p=np.asarray(weights) / np.sum(weights))
    return ((c << 12) | rng.integers(0, 4096, n)).astype(np.uint16)


EVT3_CODES = [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15]
EVT3_WEIGHTS = [10, 30, 5, 5, 5, 15, 1, 3, 1, 1, 1, 1]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("big_endian", [False, True])
def test_evt3_matches_reference_over_a_stream_of_random_packets(seed, big_endian):
    rng = np.random.default_rng(seed)
    ref, dec = RefEvt3(), EventPacketDecoder(time_reference="sensor")
    for k in range(5):
        words = random_words(rng, int(rng.integers(0, 400)), EVT3_CODES, EVT3_WEIGHTS)
        got = dec.decode(packet(words, "evt3", seq=k, big_endian=big_endian))
        want = [(x, y, t * 1000, p) for x, y, t, p in ref.decode(words.tolist())]
        assert events_of(got) == want, (seed, k)


@pytest.mark.parametrize("seed", range(6))
def test_libcaer_cmp_matches_reference_over_a_stream_of_random_packets(seed):
    rng = np.random.default_rng(100 + seed)
    ref, dec = RefCmp(), EventPacketDecoder()
    for k in range(5):
        words = random_words(rng, int(rng.integers(0, 400)), [0, 1, 2, 3, 4, 5], [2, 10, 5, 20, 5, 8])
        base = STAMP + k * 10**8
        got = dec.decode(packet(words, "libcaer_cmp", time_base=base, seq=k))
        want = [(x, y, base + t * 1000, p) for x, y, t, p in ref.decode(words.tolist())]
        assert events_of(got) == want, (seed, k)


def driver_like_words(rng, groups, base_code, vec_codes, time_codes, addr_code, single_code):
    """Word streams shaped like the drivers write them: optional time/address words, then either one single
    event word or a base word directly followed by one vector word (the decoders' fast path)."""
    out = []
    for _ in range(groups):
        for code in time_codes + (addr_code,):
            if rng.random() < 0.5:
                out.append((code << 12) | int(rng.integers(0, 4096)))
        if rng.random() < 0.4:
            out.append((single_code << 12) | int(rng.integers(0, 4096)))
        else:
            out.append((base_code << 12) | int(rng.integers(0, 4096)))
            out.append((int(rng.choice(vec_codes)) << 12) | int(rng.integers(0, 4096)))
    return np.array(out, np.uint16)


@pytest.mark.parametrize("seed", range(4))
def test_driver_shaped_streams_match_reference(seed):
    rng = np.random.default_rng(200 + seed)
    ref3, dec3 = RefEvt3(), EventPacketDecoder(time_reference="sensor")
    refc, decc = RefCmp(), EventPacketDecoder()
    for k in range(4):
        w3 = driver_like_words(rng, 150, 3, [4, 5], (8, 6), 0, 2)
        got = dec3.decode(packet(w3, "evt3", seq=k))
        assert events_of(got) == [(x, y, t * 1000, p) for x, y, t, p in ref3.decode(w3.tolist())]
        wc = driver_like_words(rng, 150, 4, [5], (0, 1), 2, 3)
        got = decc.decode(packet(wc, "libcaer_cmp", time_base=STAMP, seq=k))
        assert events_of(got) == [(x, y, STAMP + t * 1000, p) for x, y, t, p in refc.decode(wc.tolist())]


# ---------------------------------------------------------------------------------- hand-built evt3 streams


def TH(v): return (8 << 12) | v  # noqa: E704 - word builders read best as one-liners
def TL(v): return (6 << 12) | v  # noqa: E704
def AY(y): return y  # noqa: E704
def AX(x, p): return (2 << 12) | (p << 11) | x  # noqa: E704
def VBX(x, p): return (3 << 12) | (p << 11) | x  # noqa: E704
def V12(m): return (4 << 12) | m  # noqa: E704
def V8(m): return (5 << 12) | m  # noqa: E704


def test_evt3_single_and_vector_events():
    words = [TH(1), TL(5), AY(10), AX(3, 1), VBX(100, 0), V12(0b101), V8(0b11), AX(7, 0),
             (10 << 12) | 1, (14 << 12), (7 << 12), (15 << 12), (9 << 12)]  # trigger, others, continued, pad
    got = decode_event_packet(packet(words, "evt3"), time_reference="sensor")
    t = (4096 + 5) * 1000
    assert events_of(got) == [(3, 10, t, 1), (100, 10, t, 0), (102, 10, t, 0), (112, 10, t, 0),
                              (113, 10, t, 0), (7, 10, t, 0)]


def test_evt3_ignores_events_until_time_high_then_time_low():
    words = [AY(1), AX(2, 1), TL(3), AX(3, 1), TH(0), AX(4, 1), TL(9), AX(5, 1)]
    got = decode_event_packet(packet(words, "evt3"), time_reference="sensor")
    assert events_of(got) == [(5, 1, 9000, 1)]


def test_evt3_clock_wrap_and_small_steps_back():
    dec = EventPacketDecoder(time_reference="sensor")
    a = dec.decode(packet([TH(4095), TL(0), AY(0), AX(1, 0)], "evt3"))
    b = dec.decode(packet([TH(2), TL(7), AX(2, 0)], "evt3", seq=1))
    assert a.t.tolist() == [4095 * 4096 * 1000]
    assert b.t.tolist() == [((1 << 24) + 2 * 4096 + 7) * 1000]
    # a TIME_HIGH up to 10 steps back is jitter, not a wrap
    c = dec.decode(packet([TH(20), TL(0), AX(3, 0), TH(12), AX(4, 0)], "evt3", seq=2))
    assert c.t.tolist() == [((1 << 24) + 20 * 4096) * 1000, ((1 << 24) + 12 * 4096) * 1000]


def test_evt3_state_carries_across_packets():
    dec = EventPacketDecoder(time_reference="sensor")
    dec.decode(packet([TH(0), TL(1), AY(42), VBX(200, 1), V8(0b1)], "evt3"))
    got = dec.decode(packet([V12(0b11)], "evt3", seq=1))
    assert events_of(got) == [(208, 42, 1000, 1), (209, 42, 1000, 1)]
    # a fresh decoder has no valid time yet: the same packet yields nothing
    assert len(decode_event_packet(packet([V12(0b11)], "evt3"))) == 0


def test_evt3_ros_time_anchor_keeps_sensor_deltas():
    dec = EventPacketDecoder()  # time_reference="ros"
    a = dec.decode(packet([TH(1), TL(0), AY(0), AX(1, 0), TL(10), AX(2, 0)], "evt3", stamp_ns=STAMP))
    b = dec.decode(packet([TL(20), AX(3, 0)], "evt3", stamp_ns=STAMP + 999_999, seq=1))
    assert a.t.tolist() == [STAMP, STAMP + 10_000]
    assert b.t.tolist() == [STAMP + 20_000]  # the second stamp does not re-anchor
    assert b.stamp_ns == STAMP + 999_999 and b.meta["encoding"] == "evt3"


@pytest.mark.parametrize("code", [1, 11, 12, 13])
def test_evt3_reserved_codes_are_rejected(code):
    with pytest.raises(MalformedMessageError, match=f"reserved type code 0x{code:x}"):
        decode_event_packet(packet([TH(0), TL(0), code << 12], "evt3"))


def test_libcaer_cmp_tokens_and_time_reset_per_packet():
    words = [(0 << 12) | 2, (1 << 12) | 3, (2 << 12) | 50, (3 << 12) | (1 << 11) | 7,
             (4 << 12) | 16, (5 << 12) | 0b10000001]
    dec = EventPacketDecoder()
    got = dec.decode(packet(words, "libcaer_cmp", time_base=STAMP))
    t = STAMP + (2 * 4096 + 3) * 1000
    assert events_of(got) == [(50, 7, t, 1), (50, 16, t, 0), (50, 23, t, 0)]
    again = dec.decode(packet([(3 << 12) | 9], "libcaer_cmp", time_base=STAMP + 5, seq=1))
    assert events_of(again) == [(50, 9, STAMP + 5, 0)]  # x carried, time restarted at the new time_base
    with pytest.raises(MalformedMessageError, match="unknown code 6"):
        dec.decode(packet([(6 << 12)], "libcaer_cmp"))


# -------------------------------------------------------------------------------------- mono and libcaer


def test_mono_ros_and_sensor_time():
    w = np.array([5 | (10 << 32) | (20 << 48) | (1 << 63), 9 | (11 << 32) | (21 << 48)], np.uint64)
    data = packet(w, "mono", stamp_ns=STAMP, time_base=777, dtype="u8")
    assert events_of(decode_event_packet(data)) == [(10, 20, STAMP + 5, 1), (11, 21, STAMP + 9, 0)]
    assert decode_event_packet(data, time_reference="sensor").t.tolist() == [782, 786]
    back = packet(w[::-1], "mono", dtype="u8")
    with pytest.raises(TimestampOrderError, match="event 1"):
        decode_event_packet(back)
    assert len(decode_event_packet(back, strict_order=False)) == 2


def libcaer_words(xs, ys, ps, ts, valid=None):
    valid = np.ones(len(xs), int) if valid is None else np.asarray(valid)
    data = (np.asarray(xs) << 17) | (np.asarray(ys) << 2) | (np.asarray(ps) << 1) | valid
    out = np.empty(2 * len(xs), np.int64)
    out[0::2], out[1::2] = data, np.asarray(ts) & 0xFFFFFFFF
    return out


def test_libcaer_fields_overflow_and_valid_bit():
    w = libcaer_words([1, 2, 3], [4, 5, 6], [1, 0, 1], [(1 << 31) - 10, 5, 6], valid=[1, 1, 0])
    dec = EventPacketDecoder()
    got = dec.decode(packet(w, "libcaer", time_base=STAMP, dtype="u4"))
    assert events_of(got) == [(1, 4, STAMP + ((1 << 31) - 10) * 1000, 1), (2, 5, STAMP + ((1 << 31) + 5) * 1000, 0)]
    assert dec.dropped_invalid == 1


def test_libcaer_small_step_back_and_negative_timestamps():
    back = packet(libcaer_words([1, 2], [1, 2], [0, 0], [100, 50]), "libcaer", dtype="u4")
    with pytest.raises(TimestampOrderError):
        decode_event_packet(back)
    negative = packet(libcaer_words([1], [1], [0], [-5]), "libcaer", dtype="u4")
    with pytest.raises(MalformedMessageError, match="negative timestamp"):
        decode_event_packet(negative)


# ----------------------------------------------------------------------------------- roundtrips, envelope


def random_batch(rng, n, width=640, height=480, t0=STAMP, span_us=2_000_000):
    t = t0 + np.sort(rng.integers(0, span_us, n)) * 1000
    return EventBatch.from_arrays(rng.integers(0, width, n), rng.integers(0, height, n), t,
                                  rng.integers(0, 2, n), width, height, 0, "evk4")


def clustered_batch(rng, n, width=640, height=480):
    """Events in runs along rows at shared timestamps, so the encoders emit vector words."""
    b = random_batch(rng, n, width, height, span_us=2000)
    order = np.lexsort((b.x, b.p, b.y, b.t))
    return b.select(order)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("n", [0, 1, 7, 2000])
def test_roundtrip_and_envelope_identical_to_rosbags(store, encoding, big_endian, n):
    rng = np.random.default_rng(n + 31 * big_endian)
    for batch in (random_batch(rng, n), clustered_batch(rng, n)):
        data = encode_event_packet(batch, encoding, seq=9, big_endian=big_endian)
        env = decode_envelope(data)
        assert (env.encoding, env.seq, env.is_bigendian, env.width, env.height) == (encoding, 9, big_endian, 640, 480)
        msg = store.deserialize_cdr(data, EVENT_PACKET_TYPE)
        assert bytes(store.serialize_cdr(msg, EVENT_PACKET_TYPE, little_endian=not big_endian)) == data
        got = decode_event_packet(data)
        for name in "xytp":
            np.testing.assert_array_equal(getattr(got, name), getattr(batch, name), err_msg=f"{encoding} {name}")


def test_vector_words_make_edge_events_compact_and_roundtrip():
    # an edge sweeping over a 48x16 patch: every pixel of a column fires at one timestamp
    ts, xs = np.meshgrid(np.arange(200), np.arange(48), indexing="ij")
    t = np.repeat(STAMP + ts.ravel() * 1000, 16)
    x = np.repeat(xs.ravel(), 16)
    y = np.tile(np.arange(16), 200 * 48)
    # evt3 vectors run along x (row order), libcaer_cmp vectors along y (column order)
    for enc, order in (("evt3", np.lexsort((x, y, t))), ("libcaer_cmp", np.lexsort((y, x, t)))):
        b = EventBatch.from_arrays(x[order], y[order], t[order], np.ones(len(t)), 48, 16, 0, "")
        data = encode_event_packet(b, enc)
        assert len(data) < len(encode_event_packet(b, "mono")) / 3, enc
        assert events_of(decode_event_packet(data)) == events_of(b)


def test_evt3_stream_roundtrip_across_clock_wraps():
    rng = np.random.default_rng(4)
    dec = EventPacketDecoder()
    origin = STAMP
    for k in range(5):  # packets every 9 s: the 24-bit us clock wraps between some of them
        batch = random_batch(rng, 300, t0=STAMP + k * 9 * NS, span_us=20_000)
        got = dec.decode(encode_event_packet(batch, "evt3", seq=k, sensor_origin_ns=origin))
        np.testing.assert_array_equal(got.t, batch.t)
        np.testing.assert_array_equal(got.x, batch.x)
    assert dec.lost_packets == 0 and dec.packets == 5


def test_seq_gaps_are_counted():
    dec = EventPacketDecoder()
    for seq in (3, 4, 7, 8):
        dec.decode(encode_event_packet(EventBatch.empty(), "mono", seq=seq))
    assert dec.lost_packets == 2


def test_encoders_reject_what_the_format_cannot_hold():
    with pytest.raises(EncodeError, match="2\\^32"):
        encode_event_packet(EventBatch.from_arrays([1, 1], [1, 1], [0, 5 * NS], [1, 1]), "mono")
    with pytest.raises(EncodeError, match="whole microseconds"):
        encode_event_packet(EventBatch.from_arrays([1, 1], [1, 1], [0, 1500], [1, 1]), "evt3")
    with pytest.raises(EncodeError, match="x <= 2047"):
        encode_event_packet(EventBatch.from_arrays([3000], [1], [0], [1]), "libcaer_cmp")
    with pytest.raises(EncodeError, match="must not decrease"):
        encode_event_packet(EventBatch.from_arrays([1, 1], [1, 1], [2000, 1000], [1, 1]), "evt3")
    with pytest.raises(UnknownEncodingError):
        encode_event_packet(EventBatch.empty(), "trigger")


# ----------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("encoding", ["trigger", "evt2", "", "EVT3"])
def test_unknown_encodings_list_supported(encoding):
    with pytest.raises(UnknownEncodingError) as info:
        decode_event_packet(packet([], encoding))
    assert all(e in str(info.value) for e in ENCODINGS)


@pytest.mark.parametrize("encoding,nbytes", [("mono", 12), ("libcaer", 4), ("evt3", 3), ("libcaer_cmp", 5)])
def test_partial_words_are_truncation(encoding, nbytes):
    with pytest.raises(TruncatedMessageError, match="whole number"):
        decode_event_packet(packet(np.zeros(nbytes, np.uint8), encoding, dtype="u1"))


def test_truncated_packet_and_inflated_payload_length():
    data = encode_event_packet(random_batch(np.random.default_rng(1), 50), "evt3")
    for cut in (0, 3, 10, 30, 48, 60, len(data) - 1):
        with pytest.raises(TruncatedMessageError):
            decode_event_packet(data[:cut])
    env_len_offset = len(data) - len(decode_envelope(data).payload) - 4
    bad = bytearray(data)
    bad[env_len_offset:env_len_offset + 4] = (len(data)).to_bytes(4, "little")
    with pytest.raises(TruncatedMessageError, match="announces"):
        decode_event_packet(bytes(bad))


def test_out_of_bounds_error_or_drop():
    words = [TH(0), TL(0), AY(5), AX(10, 1), AX(700, 1)]
    data = packet(words, "evt3", width=640, height=480)
    with pytest.raises(EventOutOfBoundsError, match="x=700"):
        decode_event_packet(data)
    dec = EventPacketDecoder(out_of_bounds="drop")
    assert dec.decode(data).x.tolist() == [10] and dec.dropped_out_of_bounds == 1


def test_time_base_overflow_is_malformed():
    w = np.array([5 | (10 << 32)], np.uint64)
    with pytest.raises(MalformedMessageError, match="int64"):
        decode_event_packet(packet(w, "mono", time_base=(1 << 64) - 1, dtype="u8"), time_reference="sensor")


def test_bad_options_are_rejected():
    with pytest.raises(ValueError):
        EventPacketDecoder(time_reference="wall")
    with pytest.raises(ValueError):
        EventPacketDecoder(out_of_bounds="clip")
