"""One error hierarchy for everything fer_perception rejects, so callers can catch exactly what they expect.

Every exception names the problem (which field, which message type, which key) in its message. The ROS node
and replay catch :class:`FerPerceptionError` per message: they log it, count it and go on.
"""

from __future__ import annotations


class FerPerceptionError(Exception):
    """Base class of every error fer_perception raises on purpose."""


class DecodeError(FerPerceptionError, ValueError):
    """A serialized message cannot be decoded (malformed, truncated, inconsistent)."""


class TruncatedMessageError(DecodeError):
    """The buffer ends before the data its own header announces."""


class UnknownEncodingError(DecodeError):
    """An encoding (event packet encoding, image encoding, CDR representation id) is not supported."""


class EventOutOfBoundsError(DecodeError):
    """Event coordinates lie outside the sensor size the message announces."""


class TimestampOrderError(DecodeError):
    """Timestamps go backwards where the format requires them to be monotonic."""


class UnknownMessageTypeError(FerPerceptionError, ValueError):
    """A ROS message type name that fer_perception does not handle."""


class ImageError(FerPerceptionError, ValueError):
    """An image cannot be used: empty, wrong dtype, wrong channel count, unsupported encoding."""


class CheckpointError(FerPerceptionError):
    """A checkpoint file is missing, corrupt, or does not match the model (names the keys or shapes)."""


class DatasetError(FerPerceptionError):
    """A dataset folder or file does not have the expected layout or content."""


class BagError(FerPerceptionError):
    """A rosbag is missing, corrupt, or lacks the topics asked for (lists what it does contain)."""


class ConfigError(FerPerceptionError, ValueError):
    """A configuration or parameter value is invalid (names the parameter)."""


class DependencyError(FerPerceptionError, ImportError):
    """An optional dependency is missing; the message says how to install it."""
