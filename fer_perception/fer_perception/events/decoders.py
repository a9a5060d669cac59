"""One entry point for decoding event messages: ``make_decoder(msg_type).decode(cdr_bytes) -> EventBatch``.

The ROS node (raw subscriptions), replay and the CLI hold one decoder per event topic. EventArray decoding is
stateless; EventPacket decoders keep per-stream state (evt3 clock, vector bases, ROS-time anchor), which is
why a decoder object belongs to exactly one stream.
"""

from __future__ import annotations

from typing import Protocol

from fer_perception.errors import UnknownMessageTypeError
from fer_perception.events.batch import EventBatch
from fer_perception.events.cdr import decode_event_array
from fer_perception.events.event_packet import ENCODINGS, EventPacketDecoder
from fer_perception.msgdefs import EVENT_ARRAY_TYPES, EVENT_PACKET_TYPE

__all__ = [
    "SUPPORTED_MESSAGE_TYPES",
    "SUPPORTED_PACKET_ENCODINGS",
    "StreamDecoder",
    "EventArrayDecoder",
    "EventPacketDecoder",
    "make_decoder",
    "normalize_type_name",
]

#: Every event message type the decoders read, in ``pkg/msg/Type`` form.
SUPPORTED_MESSAGE_TYPES = EVENT_ARRAY_TYPES + (EVENT_PACKET_TYPE,)
#: The ``encoding`` values of event_camera_msgs/EventPacket that are decoded.
SUPPORTED_PACKET_ENCODINGS = ENCODINGS


class StreamDecoder(Protocol):
    """What ``make_decoder`` returns: one object per event stream."""

    msg_type: str

    def decode(self, data) -> EventBatch:  # pragma: no cover - protocol
        ...


class EventArrayDecoder:
    """Decoder for the EventArray types (stateless; see :func:`fer_perception.events.cdr.decode_event_array`)."""

    def __init__(self, msg_type: str = EVENT_ARRAY_TYPES[0], *, strict_order: bool = True,
                 check_sensor_bounds: bool = True) -> None:
        self.msg_type = msg_type
        self.strict_order = strict_order
        self.check_sensor_bounds = check_sensor_bounds

    def decode(self, data) -> EventBatch:
        return decode_event_array(
            data, strict_order=self.strict_order, check_sensor_bounds=self.check_sensor_bounds
        )

    def reset(self) -> None:
        """Nothing to forget: EventArray messages are self-contained."""


def normalize_type_name(msg_type: str) -> str:
    """``pkg/Type`` or ``pkg/msg/Type`` -> ``pkg/msg/Type``; raises :class:`UnknownMessageTypeError`."""
    if not isinstance(msg_type, str):
        raise UnknownMessageTypeError(f"message type must be a string, not {type(msg_type).__name__}")
    parts = msg_type.strip().strip("/").split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    name = "/".join(parts)
    if len(parts) != 3 or parts[1] != "msg" or name not in SUPPORTED_MESSAGE_TYPES:
        raise UnknownMessageTypeError(
            f"unsupported event message type {msg_type!r}; supported: {', '.join(SUPPORTED_MESSAGE_TYPES)}"
        )
    return name


def make_decoder(msg_type: str, **options) -> StreamDecoder:
    """A fresh decoder for one stream of ``msg_type`` (``pkg/msg/Type`` or ``pkg/Type``).

    ``options`` go to the decoder: ``strict_order`` for both kinds, ``check_sensor_bounds`` for EventArray,
    ``time_reference`` and ``out_of_bounds`` for EventPacket.
    """
    name = normalize_type_name(msg_type)
    if name == EVENT_PACKET_TYPE:
        dec = EventPacketDecoder(**options)
        dec.msg_type = name
        return dec
    return EventArrayDecoder(name, **options)
