"""Decode and encode ``EventArray`` CDR bytes (dv_ros2_msgs, dvs_msgs, prophesee_event_msgs) with numpy views.

The three ROS 2 EventArray types share one layout (docs/facts.md#event-messages)::

    std_msgs/Header header      # int32 sec, uint32 nanosec, string frame_id
    uint32 height
    uint32 width
    Event[] events              # uint16 x, uint16 y, builtin_interfaces/Time ts, bool polarity

Serialized as plain CDR (XCDR1, what every ROS 2 rmw and rosbags write): a 4-byte encapsulation header
(representation id ``00 01`` little endian, ``00 00`` big endian; two option bytes that we ignore) and a body
whose alignment is counted from the first body byte. After the header string and ``height``, ``width`` and the
uint32 event count, event 0 starts at a 4-aligned offset ``S``: x at S, y at S+2, sec at S+4, nanosec at S+8,
polarity at S+12 (13 bytes). Event k >= 1 starts at ``S - 2 + 16 k`` (x aligned to 2, then 2 pad bytes after y
so that sec is 4-aligned), hence sec/nanosec/polarity of *every* event sit at a fixed stride of 16 from S+4,
S+8, S+12 and x/y of events 1.. at stride 16 from S+14/S+16. The body ends at ``S + 16 N - 3``; anything after
that (rmw trailing padding) is ignored. Checked byte for byte against ``rosbags`` ``serialize_cdr`` in both
endiannesses (fer_perception/test/test_events_decode_cdr.py), so the decoder reads each field as one strided
numpy view: no per-event Python objects.

Policy on bad input (every case raises a :class:`~fer_perception.errors.DecodeError` subclass that names it):

* buffer shorter than the 4-byte encapsulation header, than a field, or than the events its count announces:
  :class:`TruncatedMessageError` (counts are checked against the buffer before any view is made);
* representation ids other than CDR_BE/CDR_LE (parameter lists, XCDR2): :class:`UnknownEncodingError`;
* a string without its NUL terminator or not UTF-8: :class:`MalformedMessageError`;
* x >= width or y >= height while the message announces a non-zero sensor size:
  :class:`EventOutOfBoundsError` (a size of 0 means "unknown" and is not checked);
* timestamps going backwards *inside one message*: :class:`TimestampOrderError`. dv-ros2 (and the rpg and
  Prophesee drivers) fill an EventArray from the sensor's time-ordered stream, so a step back means corrupt
  data. Equal timestamps are fine. Order *between* messages is not checked here (bags from several sources,
  restarts); ``strict_order=False`` turns the check off.

An EventArray with zero events is valid and decodes to an empty batch with the header's metadata.
"""

from __future__ import annotations

import struct
from typing import Tuple

import numpy as np

from fer_perception.errors import (
    DecodeError,
    FerPerceptionError,
    TimestampOrderError,
    TruncatedMessageError,
    UnknownEncodingError,
)
from fer_perception.events.batch import EventBatch

__all__ = [
    "CdrCursor",
    "CdrWriter",
    "EncodeError",
    "MalformedMessageError",
    "decode_event_array",
    "encode_event_array",
    "check_time_order",
]

#: Representation ids of the CDR encapsulation header (OMG DDS-XTypes table 60).
CDR_BE = 0x0000
CDR_LE = 0x0001
_REPRESENTATION_NAMES = {
    0x0000: "CDR_BE", 0x0001: "CDR_LE", 0x0002: "PL_CDR_BE", 0x0003: "PL_CDR_LE",
    0x0006: "CDR2_BE", 0x0007: "CDR2_LE", 0x0008: "D_CDR2_BE", 0x0009: "D_CDR2_LE",
    0x000A: "PL_CDR2_BE", 0x000B: "PL_CDR2_LE", 0x0010: "XML", 0x0012: "JSON",
}
ENCAPSULATION_SIZE = 4
_NS = 1_000_000_000


class MalformedMessageError(DecodeError):
    """A message's bytes are complete but inconsistent (bad string, unknown word code, negative timestamp)."""


class EncodeError(FerPerceptionError, ValueError):
    """A batch cannot be represented in the requested wire format (value out of the field's range)."""


def read_encapsulation(data) -> bool:
    """Check the 4-byte CDR encapsulation header; return True for little endian."""
    if len(data) < ENCAPSULATION_SIZE:
        raise TruncatedMessageError(
            f"CDR message of {len(data)} bytes is shorter than the 4-byte encapsulation header"
        )
    rep = (data[0] << 8) | data[1]
    if rep == CDR_LE:
        return True
    if rep == CDR_BE:
        return False
    name = _REPRESENTATION_NAMES.get(rep, "unknown")
    raise UnknownEncodingError(
        f"unsupported CDR representation id 0x{rep:04x} ({name}); only plain CDR_LE (0x0001) and "
        f"CDR_BE (0x0000), as ROS 2 writes them, are supported"
    )


class CdrCursor:
    """A bounds-checked reader of CDR primitives over one serialized message.

    Alignment is counted from the first body byte (after the encapsulation header), as CDR requires. Every
    read checks the remaining length first and raises :class:`TruncatedMessageError` naming the field.
    """

    __slots__ = ("data", "pos", "little", "prefix", "_u16", "_u32", "_i32", "_u64", "_what")

    def __init__(self, data, what: str = "message") -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        self.little = read_encapsulation(self.data)
        self.pos = ENCAPSULATION_SIZE
        self._what = what
        e = "<" if self.little else ">"
        self.prefix = e
        self._u16 = struct.Struct(e + "H")
        self._u32 = struct.Struct(e + "I")
        self._i32 = struct.Struct(e + "i")
        self._u64 = struct.Struct(e + "Q")

    def __len__(self) -> int:
        return len(self.data)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def align(self, n: int) -> None:
        self.pos += (-(self.pos - ENCAPSULATION_SIZE)) % n

    def need(self, nbytes: int, field: str) -> None:
        if self.pos + nbytes > len(self.data):
            raise TruncatedMessageError(
                f"{self._what} ends at byte {len(self.data)} but field {field!r} needs {nbytes} byte(s) "
                f"at offset {self.pos}"
            )

    def _read(self, st: struct.Struct, field: str) -> int:
        self.align(st.size)
        self.need(st.size, field)
        (v,) = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return v

    def u32(self, field: str) -> int:
        return self._read(self._u32, field)

    def i32(self, field: str) -> int:
        return self._read(self._i32, field)

    def u64(self, field: str) -> int:
        return self._read(self._u64, field)

    def u8(self, field: str) -> int:
        self.need(1, field)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def string(self, field: str) -> str:
        n = self.u32(field + " length")
        self.need(n, field)
        raw = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        if n == 0:  # tolerated: some writers send an empty string without terminator
            return ""
        if raw[-1] != 0:
            raise MalformedMessageError(f"{self._what} field {field!r} lacks its NUL terminator")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessageError(f"{self._what} field {field!r} is not valid UTF-8: {exc}") from None

    def header(self) -> Tuple[int, str]:
        """Read ``std_msgs/Header``; return ``(stamp_ns, frame_id)``."""
        sec = self.i32("header.stamp.sec")
        nanosec = self.u32("header.stamp.nanosec")
        frame_id = self.string("header.frame_id")
        return sec * _NS + nanosec, frame_id

    def sequence_length(self, field: str, element_size: int) -> int:
        """Read a sequence length and check that ``length * element_size`` bytes can follow."""
        n = self.u32(field + " length")
        if n * element_size > self.remaining:
            raise TruncatedMessageError(
                f"{self._what} announces {n} element(s) in {field!r} ({n * element_size} bytes) but only "
                f"{self.remaining} byte(s) follow"
            )
        return n


class CdrWriter:
    """Builds a CDR message (with encapsulation header) the way rosbags and the ROS 2 rmw layers do."""

    def __init__(self, little_endian: bool = True) -> None:
        self.little = little_endian
        self.e = "<" if little_endian else ">"
        self.buf = bytearray(b"\x00\x01\x00\x00" if little_endian else b"\x00\x00\x00\x00")

    def align(self, n: int) -> None:
        self.buf.extend(b"\x00" * ((-(len(self.buf) - ENCAPSULATION_SIZE)) % n))

    def _put(self, fmt: str, value: int, field: str) -> None:
        size = struct.calcsize(fmt)
        self.align(size)
        try:
            self.buf.extend(struct.pack(self.e + fmt, value))
        except struct.error as exc:
            raise EncodeError(f"field {field!r} value {value!r} does not fit the wire type: {exc}") from None

    def u32(self, value: int, field: str = "uint32") -> None:
        self._put("I", value, field)

    def i32(self, value: int, field: str = "int32") -> None:
        self._put("i", value, field)

    def u64(self, value: int, field: str = "uint64") -> None:
        self._put("Q", value, field)

    def u8(self, value: int, field: str = "uint8") -> None:
        self._put("B", value, field)

    def string(self, value: str, field: str = "string") -> None:
        raw = value.encode("utf-8") + b"\x00"
        self.u32(len(raw), field)
        self.buf.extend(raw)

    def header(self, stamp_ns: int, frame_id: str) -> None:
        sec, nanosec = divmod(int(stamp_ns), _NS)
        self.i32(sec, "header.stamp.sec")
        self.u32(nanosec, "header.stamp.nanosec")
        self.string(frame_id, "header.frame_id")


def check_time_order(t: np.ndarray, what: str) -> None:
    """Raise :class:`TimestampOrderError` if ``t`` (int64 ns) ever decreases."""
    if len(t) > 1:
        back = t[1:] < t[:-1]
        if back.any():
            i = int(np.argmax(back)) + 1
            raise TimestampOrderError(
                f"{what}: timestamps go backwards at event {i} ({int(t[i - 1])} ns -> {int(t[i])} ns, "
                f"{int(back.sum())} step(s) back in total)"
            )


def check_bounds(x: np.ndarray, y: np.ndarray, width: int, height: int, what: str) -> None:
    """Raise :class:`EventOutOfBoundsError` if a coordinate lies outside a non-zero sensor size."""
    if len(x) == 0 or width <= 0 or height <= 0:
        return
    if int(x.max()) >= width or int(y.max()) >= height:
        from fer_perception.errors import EventOutOfBoundsError

        bad = (x >= width) | (y >= height)
        i = int(np.argmax(bad))
        raise EventOutOfBoundsError(
            f"{what}: {int(bad.sum())} event(s) outside the {width}x{height} sensor, first at index {i}: "
            f"x={int(x[i])}, y={int(y[i])}"
        )


def _strided(data, dtype: str, offset: int, count: int, stride: int = 16) -> np.ndarray:
    return np.ndarray(shape=(count,), dtype=dtype, buffer=data, offset=offset, strides=(stride,))


_EVENT_RECORDS: dict = {}


def _event_record(endian: str) -> np.dtype:
    """The 15 bytes of an event k >= 1 from 2 bytes before its x field: x, y, (pad), sec, nanosec, polarity."""
    dt = _EVENT_RECORDS.get(endian)
    if dt is None:
        dt = _EVENT_RECORDS[endian] = np.dtype({
            "names": ["x", "y", "sec", "nsec", "p"],
            "formats": [endian + "u2", endian + "u2", endian + "i4", endian + "u4", "u1"],
            "offsets": [0, 2, 6, 10, 14],
            "itemsize": 15,
        })
    return dt


def decode_event_array(data, *, strict_order: bool = True, check_sensor_bounds: bool = True) -> EventBatch:
    """Decode the CDR bytes of a dv_ros2_msgs / dvs_msgs / prophesee_event_msgs ``EventArray``.

    ``data`` is ``bytes``, ``bytearray`` or a ``memoryview`` holding the whole serialized message (with its
    encapsulation header), exactly what rclpy hands a ``raw=True`` subscription and rosbags stores.
    Returns an :class:`EventBatch` with ``t = sec * 1e9 + nanosec`` (int64 ns), ``p`` 1 for ON, the header
    stamp as ``stamp_ns`` and ``frame_id``, ``width``/``height`` from the message.
    """
    cur = CdrCursor(data, "EventArray")
    stamp_ns, frame_id = cur.header()
    height = cur.u32("height")
    width = cur.u32("width")
    n = cur.u32("events length")
    if n == 0:
        return EventBatch.empty(width, height, stamp_ns, frame_id)
    cur.align(4)
    s = cur.pos
    need = 16 * n - 3
    if s + need > len(cur):
        raise TruncatedMessageError(
            f"EventArray announces {n} events ({need} bytes from offset {s}) but the message has only "
            f"{len(cur) - s} byte(s) there"
        )
    buf = cur.data
    e = cur.prefix
    # One strided record view over all events, starting 2 bytes before event 0 so that sec / nanosec /
    # polarity sit at the same record offsets for every event; x / y of event 0 are the exception (read below).
    rec = np.ndarray(shape=(n,), dtype=_event_record(e), buffer=buf, offset=s - 2, strides=(16,))
    t = rec["sec"].astype(np.int64)
    t *= _NS
    t += rec["nsec"]
    p = (rec["p"] != 0).view(np.uint8)
    x = rec["x"].astype(np.uint16)
    y = rec["y"].astype(np.uint16)
    x[0], y[0] = struct.unpack_from(e + "HH", buf, s)
    if check_sensor_bounds:
        check_bounds(x, y, width, height, "EventArray")
    if strict_order:
        check_time_order(t, "EventArray")
    return EventBatch(x, y, t, p, int(width), int(height), int(stamp_ns), frame_id)


def encode_event_array(
    batch: EventBatch, *, big_endian: bool = False, height: int | None = None, width: int | None = None
) -> bytes:
    """Serialize ``batch`` as an EventArray in CDR, byte-identical to rosbags' ``serialize_cdr``.

    The header stamp and frame_id come from the batch (``stamp_ns``, ``frame_id``); ``height``/``width``
    default to the batch's sensor size. Raises :class:`EncodeError` for timestamps whose seconds do not fit
    int32 or coordinates that do not fit uint16.
    """
    w = CdrWriter(little_endian=not big_endian)
    w.header(batch.stamp_ns, batch.frame_id)
    w.u32(int(batch.height if height is None else height), "height")
    w.u32(int(batch.width if width is None else width), "width")
    n = len(batch)
    w.u32(n, "events length")
    if n == 0:
        return bytes(w.buf)
    w.align(4)
    s = len(w.buf)
    out = bytearray(s + 16 * n - 3)
    out[:s] = w.buf
    t = np.asarray(batch.t, dtype=np.int64)
    sec, nsec = np.divmod(t, _NS)
    if sec.min() < -(2**31) or sec.max() >= 2**31:
        raise EncodeError("EventArray: event timestamps beyond the int32 seconds of builtin_interfaces/Time")
    for name, arr in (("x", batch.x), ("y", batch.y)):
        a = np.asarray(arr)
        if a.dtype != np.uint16 and len(a) and (a.min() < 0 or a.max() > 0xFFFF):
            raise EncodeError(f"EventArray: event {name} coordinates do not fit uint16")
    e = ">" if big_endian else "<"
    _strided(out, e + "i4", s + 4, n)[:] = sec
    _strided(out, e + "u4", s + 8, n)[:] = nsec
    _strided(out, "u1", s + 12, n)[:] = np.asarray(batch.p) != 0
    x = np.asarray(batch.x).astype(np.uint16, copy=False)
    y = np.asarray(batch.y).astype(np.uint16, copy=False)
    struct.pack_into(e + "HH", out, s, int(x[0]), int(y[0]))
    if n > 1:
        _strided(out, e + "u2", s + 14, n - 1)[:] = x[1:]
        _strided(out, e + "u2", s + 16, n - 1)[:] = y[1:]
    return bytes(out)
