"""Decode and encode ``event_camera_msgs/EventPacket`` (ros-event-camera: metavision_driver, libcaer_driver).

Envelope (CDR, checked byte for byte against rosbags ``serialize_cdr`` in both endiannesses)::

    std_msgs/Header header, uint32 height, uint32 width, uint64 seq, uint64 time_base,
    string encoding, bool is_bigendian, uint8[] events

The payload ``events`` is decoded per ``encoding``; all decoders are vectorised numpy (no per-event Python).
What was checked, and where (stored copies of the public repositories, read 2026-11):

* ``mono`` (event_camera_msgs README; event_camera_codecs ``mono_decoder.h``): one uint64 per event, bits 0-31
  ``dt`` [ns], 32-47 x, 48-62 y, 63 polarity. Sensor time = ``time_base + dt``; the best ROS time estimate is
  ``header.stamp + dt`` (README), which is what we return by default.
* ``libcaer`` (event_camera_codecs ``libcaer_decoder.h``; libcaer_driver ``message_converter.cpp``): the raw
  libcaer polarity event ``{uint32 data; int32 timestamp_us}``: x = (data >> 17) & 0x7FFF,
  y = (data >> 2) & 0x7FFF, polarity = (data >> 1) & 1, bit 0 = libcaer's "valid" mark. ``time_base`` is ROS
  time at driver start plus the timestamp overflow bits, so ``t = time_base + ts_us * 1000``; a timestamp
  that falls back by more than 2^30 us inside a packet is a 31-bit overflow (+2^31 us). Events whose valid
  bit is 0 (invalidated by a libcaer filter) are dropped and counted (the codec keeps them).
* ``libcaer_cmp`` (codecs ``libcaer_cmp_decoder.h``/``libcaer_cmp_types.h``; driver ``compression_tokens.hpp``):
  16-bit tokens, 4-bit code in bits 12-15: 0 TIME_HIGH (bits 12-23 of dt_us), 1 TIME_LOW (bits 0-11),
  2 ADDR_X (x, 11 bits), 3 ADDR_Y (y 11 bits, polarity bit 11: one event at the current x),
  4 VECT_BASE_Y (base y, polarity), 5 VECT_8 (8-bit mask: events at base_y + i; base_y += 8).
  Time restarts at 0 in every packet: ``t = time_base + ((high << 12) | low) * 1000``. x and base y carry
  over between packets. The driver never writes other codes; we reject them (the codec ignores them in
  ``decode`` but throws in ``summarize``).
* ``evt3`` (Prophesee EVT 3.0; codecs ``evt3_types.h``/``evt3_decoder.h``): 16-bit words, code in bits
  12-15: 0 EVT_ADDR_Y (y 11 bits, bit 11 system type), 2 EVT_ADDR_X (x 11 bits, polarity bit 11: one event),
  3 VECT_BASE_X (x, polarity), 4 VECT_12 (12-bit mask, base_x += 12), 5 VECT_8 (8-bit mask, base_x += 8),
  6 EVT_TIME_LOW (bits 0-11 of the 24-bit us clock), 7 CONTINUED_4, 8 EVT_TIME_HIGH (bits 12-23),
  9 padding (seen on Lucid cameras), 10 EXT_TRIGGER, 14 OTHERS, 15 CONTINUED_12. Codes 1, 11, 12, 13 are
  reserved: rejected. The clock wraps every 2^24 us = 16.777 s: a TIME_HIGH more than 10 steps below the
  previous one counts a wrap (a smaller step back is sensor jitter, as in the codec). Events are ignored until
  a TIME_HIGH followed by a TIME_LOW has been seen (the codec's "valid time"); unlike the codec, EVT_ADDR_Y
  and VECT_BASE_X words before that point still set y and the vector base. ``time_base`` is undefined for
  evt3 (README), so ROS time comes from an anchor: the first decoded event of the stream is placed at its
  packet's header stamp, later events keep exact sensor-time deltas from it (monotonic, no per-packet
  jitter). ``time_reference="sensor"`` returns the unwrapped sensor clock in ns instead.

State: :class:`EventPacketDecoder` is one object per stream and carries the evt3 time-high/low, wrap count,
y, base x and polarity, the libcaer_cmp x/base-y/polarity, the evt3 ROS-time anchor and the last ``seq``
(gaps are counted in ``lost_packets``). :func:`decode_event_packet` is the stateless convenience.

Bad input raises a :class:`~fer_perception.errors.DecodeError` subclass naming the problem: truncated envelope
or payload shorter than its length field, or a payload that is not a whole number of words
(:class:`TruncatedMessageError`); unknown ``encoding`` (:class:`UnknownEncodingError`); reserved word codes or
negative libcaer timestamps (:class:`~fer_perception.events.cdr.MalformedMessageError`); coordinates outside a
non-zero sensor size (:class:`EventOutOfBoundsError`, or dropped with ``out_of_bounds="drop"``); timestamps
going backwards inside a ``mono`` or ``libcaer`` packet (:class:`TimestampOrderError`; ``strict_order=False``
tolerates them). evt3 and libcaer_cmp are sensor word streams whose reference decoder tolerates small steps
back, so their order is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from fer_perception.errors import TimestampOrderError, TruncatedMessageError, UnknownEncodingError
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import (
    CdrCursor,
    CdrWriter,
    EncodeError,
    MalformedMessageError,
    check_bounds,
    check_time_order,
)

__all__ = [
    "ENCODINGS",
    "PacketEnvelope",
    "EventPacketDecoder",
    "decode_event_packet",
    "decode_envelope",
    "encode_event_packet",
]

ENCODINGS = ("evt3", "libcaer_cmp", "libcaer", "mono")
_TIME_REFERENCES = ("ros", "sensor")
_OOB_MODES = ("error", "drop")

# evt3 word codes
_E_ADDR_Y, _E_ADDR_X, _E_VECT_BASE_X, _E_VECT_12, _E_VECT_8 = 0, 2, 3, 4, 5
_E_TIME_LOW, _E_TIME_HIGH, _E_EXT_TRIGGER = 6, 8, 10
_EVT3_VALID = np.zeros(16, bool)
_EVT3_VALID[[0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15]] = True
_EVT3_RESERVED = int(sum(1 << c for c in range(16) if not _EVT3_VALID[c]))  # bit c set: code c reserved
_EVT3_NAMES = {
    0: "EVT_ADDR_Y", 2: "EVT_ADDR_X", 3: "VECT_BASE_X", 4: "VECT_12", 5: "VECT_8", 6: "EVT_TIME_LOW",
    7: "CONTINUED_4", 8: "EVT_TIME_HIGH", 9: "PADDING", 10: "EXT_TRIGGER", 14: "OTHERS", 15: "CONTINUED_12",
}
# libcaer_cmp token codes
_C_TIME_HIGH, _C_TIME_LOW, _C_ADDR_X, _C_ADDR_Y, _C_VECT_BASE_Y, _C_VECT_8 = 0, 1, 2, 3, 4, 5

_EVT3_WRAP_TOLERANCE = 10  # TIME_HIGH steps back by at most this much are jitter, not a wrap
_LIBCAER_OVERFLOW_US = 1 << 31
_POPCOUNT12 = np.array([bin(i).count("1") for i in range(4096)], np.int32)
_EVT3_INC = np.zeros(16, np.int64)
_EVT3_INC[[4, 5]] = (12, 8)  # VECT_12, VECT_8 advance the base x
_CMP_INC = np.zeros(16, np.int64)
_CMP_INC[5] = 8  # VECT_8 advances the base y
# _BITPOS12[mask * 12 + j]: position of the j-th set bit (lowest first) of a 12-bit vector mask
_BITPOS12 = np.argsort(
    1 - ((np.arange(4096)[:, None] >> np.arange(12)) & 1), axis=1, kind="stable"
).astype(np.uint8).ravel()


@dataclass
class PacketEnvelope:
    """The fields of an EventPacket around its payload; ``payload`` is a zero-copy memoryview."""

    stamp_ns: int
    frame_id: str
    height: int
    width: int
    seq: int
    time_base: int
    encoding: str
    is_bigendian: bool
    payload: memoryview


def decode_envelope(data) -> PacketEnvelope:
    """Parse the CDR envelope of an EventPacket (no payload decoding)."""
    cur = CdrCursor(data, "EventPacket")
    stamp_ns, frame_id = cur.header()
    height = cur.u32("height")
    width = cur.u32("width")
    seq = cur.u64("seq")
    time_base = cur.u64("time_base")
    encoding = cur.string("encoding")
    is_bigendian = cur.u8("is_bigendian") != 0
    n = cur.sequence_length("events", 1)
    payload = memoryview(cur.data)[cur.pos:cur.pos + n]
    return PacketEnvelope(stamp_ns, frame_id, height, width, seq, time_base, encoding, is_bigendian, payload)


def _words(payload: memoryview, size: int, dtype, encoding: str) -> np.ndarray:
    if len(payload) % size:
        raise TruncatedMessageError(
            f"EventPacket {encoding} payload of {len(payload)} bytes is not a whole number of {size}-byte words"
        )
    return np.frombuffer(payload, dtype=dtype)


def _state_at(is_setter: np.ndarray, setter_values: np.ndarray, initial, query: np.ndarray) -> np.ndarray:
    """Value of a state variable at the words ``query``: the last setter at or before each, else ``initial``.

    ``is_setter`` marks the setter words (full length); ``setter_values`` holds one value per setter in order.
    One int32 cumulative count over the words, then a gather at the queried words only.
    """
    k = np.cumsum(is_setter, dtype=np.int32)[query]
    src = np.empty(len(setter_values) + 1, setter_values.dtype)
    src[0] = initial
    src[1:] = setter_values
    return src[k]


def _expand(is_vec: np.ndarray, coord: np.ndarray, mask: np.ndarray):
    """Expand event words into events, in stream order.

    Per event word: ``is_vec`` (vector or single), ``coord`` (int32: the event's coordinate for a single word,
    the vector's base otherwise) and ``mask`` (vector bits; ignored for singles). A vector word yields one event
    at ``coord + bit`` per set bit, lowest bit first. Returns ``(count, coord)``: events per word (None when
    every word is a single, so attributes need no repeat) and the coordinate of every event.
    """
    if not is_vec.any():
        return None, coord
    mask_all = np.where(is_vec, mask, 1)
    cnt = _POPCOUNT12[mask_all]
    start = np.cumsum(cnt, dtype=np.int32)
    start -= cnt
    total = int(start[-1] + cnt[-1])
    key = np.repeat(mask_all * np.int32(12) - start, cnt)
    key += np.arange(total, dtype=np.int32)
    out = np.repeat(coord, cnt)
    out += _BITPOS12[key]
    return cnt, out


def _per_event(cnt, values: np.ndarray) -> np.ndarray:
    return values if cnt is None else np.repeat(values, cnt)


def _vector_bases(code_sub, val_sub, base_code: int, inc_lut: np.ndarray, init_base: int, init_pol: int):
    """Base coordinate and polarity of every vector word, from the subset of base + vector words.

    A base word sets the coordinate and polarity; each vector word advances the base by ``inc_lut[code]``
    after it (evt3: VECT_12 +12, VECT_8 +8). Returns ``(base, pol, final_base, final_pol)`` with one entry per
    vector word of the subset, in order.
    """
    is_base = code_sub == base_code
    vec = np.flatnonzero(~is_base)
    if len(vec) and vec[0] > 0 and is_base[vec - 1].all():
        # fast path (what the drivers write): every vector word right after its base word
        bval = val_sub[vec - 1].astype(np.int32)
        last = len(code_sub) - 1
        if is_base[last]:
            final_base, final_pol = int(val_sub[last]) & 0x7FF, int(val_sub[last]) >> 11
        else:
            final_base, final_pol = int(bval[-1] & 0x7FF) + int(inc_lut[code_sub[last]]), int(bval[-1] >> 11)
        return bval & 0x7FF, bval >> 11, final_base & 0xFFFF, final_pol
    inc = inc_lut[code_sub]
    cum = np.cumsum(inc)
    excl = cum - inc
    bpos = np.flatnonzero(is_base)
    bval = val_sub[bpos].astype(np.int64)
    k = np.cumsum(is_base, dtype=np.int32)
    off_src = np.empty(len(bpos) + 1, np.int64)
    off_src[0] = init_base
    off_src[1:] = (bval & 0x7FF) - excl[bpos]
    pol_src = np.empty(len(bpos) + 1, np.int32)
    pol_src[0] = init_pol
    pol_src[1:] = bval >> 11
    kv = k[vec]
    base = off_src[kv] + excl[vec]
    return base, pol_src[kv], int(off_src[k[-1]] + cum[-1]) & 0xFFFF, int(pol_src[k[-1]])


@dataclass
class _Evt3State:
    saw_high: bool = False
    has_time: bool = False
    high: int = 0  # (wraps << 24) | (time_high << 12)
    low: int = 0
    y: int = 0
    base_x: int = 0
    pol: int = 0


@dataclass
class _CmpState:
    x: int = 0
    base_y: int = 0
    pol: int = 0


_EMPTY = np.zeros(0, np.int64)


def _decode_evt3(words: np.ndarray, st: _Evt3State) -> Tuple:
    """evt3 words -> ``(count, x, y, t_us, p)`` with ``st`` updated; t_us is the unwrapped sensor clock.

    ``x`` has one entry per event; ``y``, ``t_us`` and ``p`` one per event word, to be repeated ``count``
    times (count None: one event per word) once the caller has converted them.
    """
    n = len(words)
    if n == 0:
        return None, _EMPTY, _EMPTY, _EMPTY, _EMPTY
    words = words.astype(np.uint16, copy=False)
    code = words >> 12
    if ((np.uint16(_EVT3_RESERVED) >> code) & 1).any():
        i = int(np.argmax(~_EVT3_VALID[code]))
        raise MalformedMessageError(
            f"evt3 word {i} (0x{int(words[i]):04x}) has reserved type code 0x{int(code[i]):x}"
        )
    val = words & 0xFFF
    # time: resolved on the subset of time words, then looked up per event word
    is_time = (code == _E_TIME_LOW) | (code == _E_TIME_HIGH)
    tpos = np.flatnonzero(is_time)
    is_th = code[tpos] == _E_TIME_HIGH
    kh = np.cumsum(is_th, dtype=np.int32)  # TIME_HIGH words up to and including each time word
    kl = np.arange(1, len(tpos) + 1, dtype=np.int32) - kh
    h = val[tpos[is_th]].astype(np.int64)
    prev = np.empty(len(h), np.int64)
    if len(h):
        prev[0] = (st.high >> 12) & 0xFFF
        prev[1:] = h[:-1]
    wraps = (st.high >> 24) + np.cumsum((prev - h) > _EVT3_WRAP_TOLERANCE)
    high_src = np.concatenate([[st.high], (wraps << 24) | (h << 12)])
    low_src = np.empty(len(tpos) - len(h) + 1, np.uint16)
    low_src[0] = st.low
    low_src[1:] = val[tpos[~is_th]]
    time_after = high_src[kh] | low_src[kl]
    # valid time: a TIME_LOW after a TIME_HIGH (carried across packets)
    start = 0
    if not st.has_time:
        ok = ~is_th if st.saw_high else (~is_th & (kh > 0))  # a TIME_LOW with a TIME_HIGH before it
        start = int(tpos[int(np.argmax(ok))]) + 1 if ok.any() else n
        st.has_time = bool(ok.any())
        st.saw_high = st.saw_high or bool(is_th.any())
    # vectors: base x and polarity on the subset of VECT_BASE_X / VECT_12 / VECT_8 words
    vpos = np.flatnonzero((code >= _E_VECT_BASE_X) & (code <= _E_VECT_8))
    if len(vpos):
        vbase, vpol, st.base_x, st.pol = _vector_bases(
            code[vpos], val[vpos], _E_VECT_BASE_X, _EVT3_INC, st.base_x, st.pol
        )
    is_y = code == _E_ADDR_Y
    ypos = np.flatnonzero(is_y)
    yvals = val[ypos] & np.uint16(0x7FF)
    # event words: EVT_ADDR_X, VECT_12, VECT_8
    ev = np.flatnonzero((code == _E_ADDR_X) | (code == _E_VECT_12) | (code == _E_VECT_8))
    if start:
        ev = ev[ev >= start]
    ev_y = _state_at(is_y, yvals, st.y, ev)
    ev_t = _state_at(is_time, time_after, st.high | st.low, ev)
    # state for the next packet
    st.high, st.low = int(high_src[-1]), int(low_src[-1])
    if len(ypos):
        st.y = int(yvals[-1])
    if len(ev) == 0:
        return None, _EMPTY, _EMPTY, _EMPTY, _EMPTY
    ev_code = code[ev]
    ev_val = val[ev].astype(np.int32)
    is_vec = ev_code != _E_ADDR_X
    coord = ev_val & 0x7FF
    p = ev_val >> 11
    mask = ev_val
    nv = int(np.count_nonzero(is_vec))
    if nv:
        # the vector words left after the valid-time cut are the last nv of the packet's vector words
        coord[is_vec] = vbase[len(vbase) - nv:]
        p[is_vec] = vpol[len(vpol) - nv:]
        mask = np.where(ev_code == _E_VECT_8, ev_val & 0xFF, ev_val)
    cnt, x = _expand(is_vec, coord, mask)
    return cnt, x, ev_y, ev_t, p


def _decode_libcaer_cmp(words: np.ndarray, st: _CmpState) -> Tuple:
    """libcaer_cmp tokens -> ``(count, x, y, dt_us, p)``; time restarts at 0 in each packet.

    ``y`` has one entry per event; ``x``, ``dt_us`` and ``p`` one per event token (see :func:`_decode_evt3`).
    """
    n = len(words)
    if n == 0:
        return None, _EMPTY, _EMPTY, _EMPTY, _EMPTY
    words = words.astype(np.uint16, copy=False)
    code = words >> 12
    bad = code > _C_VECT_8
    if bad.any():
        i = int(np.argmax(bad))
        raise MalformedMessageError(
            f"libcaer_cmp token {i} (0x{int(words[i]):04x}) has unknown code {int(code[i])}"
        )
    val = words & 0xFFF
    is_time = code <= _C_TIME_LOW
    tpos = np.flatnonzero(is_time)
    is_th = code[tpos] == _C_TIME_HIGH
    kh = np.cumsum(is_th, dtype=np.int32)  # TIME_HIGH tokens up to and including each time token
    kl = np.arange(1, len(tpos) + 1, dtype=np.int32) - kh
    high_src = np.zeros(len(kh) + 1 - int(kl[-1] if len(kl) else 0), np.int64)
    high_src[1:] = val[tpos[is_th]].astype(np.int64) << 12
    low_src = np.zeros(int(kl[-1] if len(kl) else 0) + 1, np.uint16)
    low_src[1:] = val[tpos[~is_th]]
    time_after = high_src[kh] | low_src[kl]
    is_x = code == _C_ADDR_X
    xvals = val[np.flatnonzero(is_x)] & np.uint16(0x7FF)
    vpos = np.flatnonzero(code >= _C_VECT_BASE_Y)
    if len(vpos):
        vbase, vpol, st.base_y, st.pol = _vector_bases(
            code[vpos], val[vpos], _C_VECT_BASE_Y, _CMP_INC, st.base_y, st.pol
        )
    ev = np.flatnonzero((code == _C_ADDR_Y) | (code == _C_VECT_8))
    ev_x = _state_at(is_x, xvals, st.x, ev)
    ev_t = _state_at(is_time, time_after, 0, ev)
    if len(xvals):
        st.x = int(xvals[-1])
    if len(ev) == 0:
        return None, _EMPTY, _EMPTY, _EMPTY, _EMPTY
    ev_code = code[ev]
    ev_val = val[ev].astype(np.int32)
    is_vec = ev_code == _C_VECT_8
    coord = ev_val & 0x7FF
    p = ev_val >> 11
    mask = ev_val & 0xFF
    if is_vec.any():
        coord[is_vec] = vbase
        p[is_vec] = vpol
    cnt, y = _expand(is_vec, coord, mask)
    return cnt, ev_x, y, ev_t, p


_INT64_MAX = (1 << 63) - 1


def _time_origin(base: int, max_rel_ns: int, what: str) -> np.int64:
    """``base`` as int64 after checking that ``base + max_rel_ns`` still fits a ROS int64 nanosecond time."""
    if base + max_rel_ns > _INT64_MAX:
        raise MalformedMessageError(f"{what}: time base {base} ns puts event times beyond int64 nanoseconds")
    return np.int64(base)


class EventPacketDecoder:
    """Stateful decoder for one EventPacket stream (one topic); ``decode(data) -> EventBatch``.

    Args:
        time_reference: ``"ros"`` (default) for ROS-time stamps comparable with image headers, ``"sensor"``
            for the camera's own clock (mono: ``time_base + dt``; evt3: unwrapped sensor clock; libcaer and
            libcaer_cmp carry ROS-based time in ``time_base`` either way).
        out_of_bounds: ``"error"`` raises :class:`EventOutOfBoundsError`, ``"drop"`` drops such events
            (counted in ``dropped_out_of_bounds``) when the packet announces a non-zero sensor size.
        strict_order: raise :class:`TimestampOrderError` when mono/libcaer timestamps go backwards.
    """

    def __init__(self, *, time_reference: str = "ros", out_of_bounds: str = "error", strict_order: bool = True):
        if time_reference not in _TIME_REFERENCES:
            raise ValueError(f"time_reference must be one of {_TIME_REFERENCES}, not {time_reference!r}")
        if out_of_bounds not in _OOB_MODES:
            raise ValueError(f"out_of_bounds must be one of {_OOB_MODES}, not {out_of_bounds!r}")
        self.time_reference = time_reference
        self.out_of_bounds = out_of_bounds
        self.strict_order = strict_order
        self.reset()

    def reset(self) -> None:
        """Forget all stream state (after a seek or a driver restart)."""
        self._evt3 = _Evt3State()
        self._cmp = _CmpState()
        self._evt3_offset_ns: Optional[int] = None
        self._last_seq: Optional[int] = None
        self.lost_packets = 0
        self.dropped_out_of_bounds = 0
        self.dropped_invalid = 0
        self.packets = 0

    def decode(self, data) -> EventBatch:
        env = decode_envelope(data)
        enc = env.encoding
        if enc not in ENCODINGS:
            raise UnknownEncodingError(
                f"EventPacket encoding {enc!r} is not supported; supported: {', '.join(ENCODINGS)}"
            )
        if self._last_seq is not None and env.seq > self._last_seq + 1:
            self.lost_packets += env.seq - self._last_seq - 1
        self._last_seq = env.seq
        self.packets += 1
        e = ">" if env.is_bigendian else "<"
        what = f"EventPacket {enc}"
        if enc == "mono":
            w = _words(env.payload, 8, e + "u8", enc)
            dt = (w & np.uint64(0xFFFFFFFF)).astype(np.int64)
            x = ((w >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.uint16)
            y = ((w >> np.uint64(48)) & np.uint64(0x7FFF)).astype(np.uint16)
            p = (w >> np.uint64(63)).astype(np.uint8)
            base = env.stamp_ns if self.time_reference == "ros" else env.time_base
            t = dt + _time_origin(base, int(dt.max()) if len(dt) else 0, what)
            if self.strict_order:
                check_time_order(t, what)
        elif enc == "libcaer":
            rec = _words(env.payload, 8, np.dtype([("data", e + "u4"), ("ts", e + "i4")]), enc)
            data_w = rec["data"].astype(np.int64)
            ts = rec["ts"].astype(np.int64)
            if len(ts) and int(ts.min()) < 0:
                i = int(np.argmax(ts < 0))
                raise MalformedMessageError(f"{what}: negative timestamp {int(ts[i])} us at event {i}")
            valid = (data_w & 1).astype(bool)
            if len(ts) > 1:
                step = np.diff(ts)
                wrap = step < -(_LIBCAER_OVERFLOW_US // 2)
                if self.strict_order and ((step < 0) & ~wrap).any():
                    i = int(np.argmax((step < 0) & ~wrap)) + 1
                    raise TimestampOrderError(
                        f"{what}: timestamps go backwards at event {i} ({int(ts[i - 1])} us -> {int(ts[i])} us)"
                    )
                if wrap.any():
                    ts[1:] += np.cumsum(wrap) * _LIBCAER_OVERFLOW_US
            if not valid.all():
                self.dropped_invalid += int((~valid).sum())
                data_w, ts = data_w[valid], ts[valid]
            x = ((data_w >> 17) & 0x7FFF).astype(np.uint16)
            y = ((data_w >> 2) & 0x7FFF).astype(np.uint16)
            p = ((data_w >> 1) & 1).astype(np.uint8)
            t = ts * 1000 + _time_origin(env.time_base, int(ts.max()) * 1000 if len(ts) else 0, what)
        elif enc == "libcaer_cmp":
            cnt, xw, y, dt_us, pw = _decode_libcaer_cmp(_words(env.payload, 2, e + "u2", enc), self._cmp)
            tw = dt_us * 1000 + _time_origin(env.time_base, int(dt_us.max()) * 1000 if len(dt_us) else 0, what)
            x, t, p = _per_event(cnt, xw), _per_event(cnt, tw), _per_event(cnt, pw.astype(np.uint8))
        else:  # evt3
            cnt, x, yw, t_us, pw = _decode_evt3(_words(env.payload, 2, e + "u2", enc), self._evt3)
            tw = t_us * 1000
            if self.time_reference == "ros" and len(tw):
                if self._evt3_offset_ns is None:
                    self._evt3_offset_ns = env.stamp_ns - int(tw[0])
                tw += np.int64(self._evt3_offset_ns)
            y, t, p = _per_event(cnt, yw), _per_event(cnt, tw), _per_event(cnt, pw.astype(np.uint8))
        if len(x):
            if env.width > 0 and env.height > 0:
                if self.out_of_bounds == "drop":
                    inside = (x < env.width) & (y < env.height)
                    if not inside.all():
                        self.dropped_out_of_bounds += int((~inside).sum())
                        x, y, t, p = x[inside], y[inside], t[inside], p[inside]
                else:
                    check_bounds(x, y, env.width, env.height, what)
            elif int(x.max()) > 0xFFFF or int(y.max()) > 0xFFFF:
                raise MalformedMessageError(f"{what}: vector words run coordinates beyond 65535")
        meta = {"encoding": enc, "seq": env.seq, "time_base": env.time_base}
        return EventBatch(
            x.astype(np.uint16, copy=False), y.astype(np.uint16, copy=False), t, p,
            int(env.width), int(env.height), int(env.stamp_ns), env.frame_id, meta,
        )


def decode_event_packet(data, **kwargs) -> EventBatch:
    """Decode one EventPacket with a fresh :class:`EventPacketDecoder` (no state from earlier packets)."""
    return EventPacketDecoder(**kwargs).decode(data)


# ----------------------------------------------------------------------------------------------- encoders


def _interleave(slots) -> np.ndarray:
    """Per group, emit the words of every slot whose mask is set, slot by slot; groups in order.

    ``slots`` is a list of ``(mask, words)`` with one entry per group (``mask`` None = always).
    """
    g = len(slots[0][1])
    masks = [np.ones(g, bool) if m is None else m for m, _ in slots]
    counts = np.sum(masks, axis=0)
    cursor = np.cumsum(counts) - counts
    out = np.empty(int(counts.sum()), np.uint16)
    for m, (_, words) in zip(masks, slots):
        out[cursor[m]] = words[m]
        cursor = cursor + m
    return out


def _groups(key_arrays, coord: np.ndarray) -> np.ndarray:
    """Start indices of runs of consecutive events with equal keys and strictly increasing ``coord``."""
    n = len(coord)
    new = np.ones(n, bool)
    if n > 1:
        same = coord[1:] > coord[:-1]
        for k in key_arrays:
            same &= k[1:] == k[:-1]
        new[1:] = ~same
    return np.flatnonzero(new)


def _vector_tokens(coord, p, first, width_bits, base_code, vec_code, single_code, other_key=None):
    """Body tokens of each group: one single-event word, or a vector base word plus a mask word."""
    size = np.diff(np.append(first, len(coord)))
    block = coord // width_bits
    mask = np.bitwise_or.reduceat((1 << (coord - block * width_bits)).astype(np.int64), first)
    g_coord = coord[first]
    g_p = p[first]
    single = size == 1
    w_single = (single_code << 12) | (g_p << 11) | g_coord
    w_base = (base_code << 12) | (g_p << 11) | (block[first] * width_bits)
    w_vec = (vec_code << 12) | mask
    return single, w_single.astype(np.uint16), w_base.astype(np.uint16), w_vec.astype(np.uint16)


def _times_us(t: np.ndarray, origin_ns: int, encoding: str, limit: Optional[int]) -> np.ndarray:
    rel = t - np.int64(origin_ns)
    if len(rel) and int(rel.min()) < 0:
        raise EncodeError(f"{encoding}: events before the time origin {origin_ns} ns cannot be encoded")
    us, rest = np.divmod(rel, 1000)
    if rest.any():
        raise EncodeError(f"{encoding}: timestamps must be whole microseconds after the time origin")
    if limit is not None and len(us) and int(us.max()) >= limit:
        raise EncodeError(f"{encoding}: packet spans {int(us.max())} us, more than the format's {limit} us")
    return us


def _check_coords(batch: EventBatch, x_max: int, y_max: int, encoding: str) -> Tuple[np.ndarray, np.ndarray]:
    x = batch.x.astype(np.int64)
    y = batch.y.astype(np.int64)
    if len(x) and (int(x.max()) > x_max or int(y.max()) > y_max):
        raise EncodeError(f"{encoding}: coordinates beyond the format's x <= {x_max}, y <= {y_max}")
    return x, y


def _payload_evt3(batch: EventBatch, origin_ns: int, e: str) -> bytes:
    if len(batch) == 0:
        return b""
    if (np.diff(batch.t) < 0).any():
        raise EncodeError("evt3: timestamps must not decrease (a step back would read as a clock wrap)")
    us = _times_us(batch.t, origin_ns, "evt3", None)
    if len(us) > 1 and int(np.diff(us).max()) >= (1 << 24) - (_EVT3_WRAP_TOLERANCE + 1) * 4096:
        raise EncodeError("evt3: a gap between events longer than the 16.7 s clock period cannot be encoded")
    x, y = _check_coords(batch, 0x7FF, 0x7FF, "evt3")
    p = batch.p.astype(np.int64)
    first = _groups([us, y, p, x // 12], x)
    single, w_single, w_base, w_vec = _vector_tokens(x, p, first, 12, _E_VECT_BASE_X, _E_VECT_12, _E_ADDR_X)
    g_us, g_y = us[first], y[first]
    high = g_us >> 12
    low = g_us & 0xFFF
    is_first = np.zeros(len(first), bool)
    is_first[0] = True
    th = is_first.copy()
    th[1:] |= high[1:] != high[:-1]
    tl = is_first.copy()
    tl[1:] |= low[1:] != low[:-1]
    ay = is_first.copy()
    ay[1:] |= g_y[1:] != g_y[:-1]
    words = _interleave([
        (th, ((_E_TIME_HIGH << 12) | (high & 0xFFF)).astype(np.uint16)),
        (tl, ((_E_TIME_LOW << 12) | low).astype(np.uint16)),
        (ay, ((_E_ADDR_Y << 12) | g_y).astype(np.uint16)),
        (single, w_single),
        (~single, w_base),
        (~single, w_vec),
    ])
    return words.astype(e + "u2").tobytes()


def _payload_libcaer_cmp(batch: EventBatch, time_base: int, e: str) -> bytes:
    if len(batch) == 0:
        return b""
    us = _times_us(batch.t, time_base, "libcaer_cmp", 1 << 24)
    x, y = _check_coords(batch, 0x7FF, 0x7FF, "libcaer_cmp")
    p = batch.p.astype(np.int64)
    first = _groups([us, x, p, y // 8], y)
    single, w_single, w_base, w_vec = _vector_tokens(y, p, first, 8, _C_VECT_BASE_Y, _C_VECT_8, _C_ADDR_Y)
    g_us, g_x = us[first], x[first]
    high = g_us >> 12
    low = g_us & 0xFFF
    prev_high = np.concatenate([[0], high[:-1]])
    prev_low = np.concatenate([[0], low[:-1]])
    ax = np.zeros(len(first), bool)
    ax[0] = True
    ax[1:] |= g_x[1:] != g_x[:-1]
    words = _interleave([
        (high != prev_high, ((_C_TIME_HIGH << 12) | high).astype(np.uint16)),
        (low != prev_low, ((_C_TIME_LOW << 12) | low).astype(np.uint16)),
        (ax, ((_C_ADDR_X << 12) | g_x).astype(np.uint16)),
        (single, w_single),
        (~single, w_base),
        (~single, w_vec),
    ])
    return words.astype(e + "u2").tobytes()


def _payload_libcaer(batch: EventBatch, time_base: int, e: str) -> bytes:
    us = _times_us(batch.t, time_base, "libcaer", _LIBCAER_OVERFLOW_US)
    x, y = _check_coords(batch, 0x7FFF, 0x7FFF, "libcaer")
    rec = np.empty((len(batch), 2), e + "u4")
    rec[:, 0] = (x << 17) | (y << 2) | (batch.p.astype(np.int64) << 1) | 1
    rec[:, 1] = us
    return rec.tobytes()


def _payload_mono(batch: EventBatch, stamp_ns: int, e: str) -> bytes:
    dt = batch.t - np.int64(stamp_ns)
    if len(dt) and (int(dt.min()) < 0 or int(dt.max()) > 0xFFFFFFFF):
        raise EncodeError("mono: every event must lie within 2^32 ns (4.29 s) at or after the header stamp")
    x, y = _check_coords(batch, 0xFFFF, 0x7FFF, "mono")
    w = dt.astype(np.uint64) | (x.astype(np.uint64) << np.uint64(32)) | (y.astype(np.uint64) << np.uint64(48))
    w |= batch.p.astype(np.uint64) << np.uint64(63)
    return w.astype(e + "u8").tobytes()


def encode_event_packet(
    batch: EventBatch,
    encoding: str,
    *,
    seq: int = 0,
    stamp_ns: Optional[int] = None,
    time_base: Optional[int] = None,
    sensor_origin_ns: Optional[int] = None,
    big_endian: bool = False,
    height: Optional[int] = None,
    width: Optional[int] = None,
) -> bytes:
    """Serialize ``batch`` as an EventPacket (CDR envelope byte-identical to rosbags ``serialize_cdr``).

    ``stamp_ns`` (header stamp) defaults to the first event's time (the batch's ``stamp_ns`` when empty).
    ``time_base`` defaults to the header stamp (mono: sensor clock = ROS clock; libcaer/libcaer_cmp: the
    time all event times are relative to). evt3 writes the sensor clock ``(t - sensor_origin_ns) / 1000`` us,
    ``sensor_origin_ns`` defaulting to the header stamp; use one origin for all packets of a stream.
    ``big_endian`` selects both the CDR envelope and the payload byte order (``is_bigendian``).
    Raises :class:`EncodeError` when the batch does not fit the format (see each format's limits).
    """
    if encoding not in ENCODINGS:
        raise UnknownEncodingError(
            f"cannot encode EventPacket encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        )
    n = len(batch)
    stamp = int(stamp_ns if stamp_ns is not None else (batch.t[0] if n else batch.stamp_ns))
    base = int(time_base if time_base is not None else stamp)
    e = ">" if big_endian else "<"
    if encoding == "mono":
        payload = _payload_mono(batch, stamp, e)
    elif encoding == "libcaer":
        payload = _payload_libcaer(batch, base, e)
    elif encoding == "libcaer_cmp":
        payload = _payload_libcaer_cmp(batch, base, e)
    else:
        payload = _payload_evt3(batch, int(sensor_origin_ns if sensor_origin_ns is not None else stamp), e)
        if time_base is None:
            base = 0
    w = CdrWriter(little_endian=not big_endian)
    w.header(stamp, batch.frame_id)
    w.u32(int(batch.height if height is None else height), "height")
    w.u32(int(batch.width if width is None else width), "width")
    w.u64(int(seq), "seq")
    w.u64(base, "time_base")
    w.string(encoding, "encoding")
    w.u8(1 if big_endian else 0, "is_bigendian")
    w.u32(len(payload), "events length")
    w.buf.extend(payload)
    return bytes(w.buf)
