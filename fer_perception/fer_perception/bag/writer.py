"""Write rosbag2 files (sqlite3 or mcap) with rosbags, from raw CDR bytes or rosbags message objects."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import numpy as np

from fer_perception.errors import BagError
from fer_perception.msgdefs import get_typestore

STORAGES = ("sqlite3", "mcap")


def build_message(typestore, msgtype: str, fields: Mapping[str, Any]):
    """A rosbags message of ``msgtype`` from a field dict as :mod:`fer_perception.messages` builds it.

    Nested dicts become nested messages, numeric sequences numpy arrays of the field's type; a field the dict
    lacks, or a key the message lacks, is an error (the mapping must stay complete both ways).
    """
    from rosbags.typesys.base import Nodetype

    _consts, defs = typestore.fielddefs[msgtype]
    names = [name for name, _ in defs]
    unknown = set(fields) - set(names)
    missing = set(names) - set(fields)
    if unknown or missing:
        raise BagError(f"{msgtype}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")
    values = {}
    for name, (node, detail) in defs:
        v = fields[name]
        if node == Nodetype.NAME:
            v = build_message(typestore, detail, v)
        elif node in (Nodetype.SEQUENCE, Nodetype.ARRAY) and detail[0][0] == Nodetype.BASE:
            base = detail[0][1][0]
            if base != "string":
                raw = isinstance(v, (bytes, bytearray, memoryview))
                v = np.frombuffer(v, np.uint8) if raw else np.asarray(v, dtype=np.dtype(_NUMPY.get(base, base)))
            else:
                v = list(v)
        values[name] = v
    return typestore.types[msgtype](**values)


_NUMPY = {"byte": "uint8", "char": "uint8", "bool": "bool_", "float32": "float32", "float64": "float64"}


class BagWriter:
    """A rosbag2 writer that knows our, the event and the REP-155 message types.

    Use as a context manager::

        with BagWriter("out_bag", storage="mcap") as bag:
            bag.write_raw("/events", "dv_ros2_msgs/msg/EventArray", t_ns, cdr_bytes)
            bag.write("/fer/emotion/events", "fer_perception_msgs/msg/Emotion", t_ns, msg)

    Connections are created on first use of a topic. ``ros2 bag play`` on Humble reads sqlite3 bags; Jazzy
    reads both (mcap is its default). Offered QoS is recorded as reliable/volatile for every topic.
    """

    def __init__(
        self, path: Union[str, Path], storage: str = "sqlite3", distro: str = "humble", overwrite: bool = False
    ) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; expected one of {STORAGES}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise BagError(f"output bag {self.path} exists; remove it or pass overwrite")
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        self.storage = storage
        self.typestore = get_typestore(distro)
        self._writer = None
        self._connections: Dict[str, object] = {}
        self.counts: Dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path.parent.mkdir(parents=True, exist_ok=True)
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        try:
            self._writer = Writer(self.path, version=8, storage_plugin=plugin)
        except TypeError:  # older rosbags without storage_plugin / version keywords
            self._writer = Writer(self.path)
        self._writer.open()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _connection(self, topic: str, msgtype: str):
        conn = self._connections.get(topic)
        if conn is None:
            if msgtype not in self.typestore.types:
                raise BagError(f"message type {msgtype!r} is unknown to the typestore")
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} already has type {conn.msgtype}, not {msgtype}")
        return conn

    def write_raw(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> None:
        """Write one message that is already CDR-serialized (with its 4-byte encapsulation header)."""
        if self._writer is None:
            raise BagError("BagWriter is not open")
        self._writer.write(self._connection(topic, msgtype), int(timestamp_ns), bytes(data))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write(self, topic: str, msgtype: str, timestamp_ns: int, msg) -> None:
        """Serialize a rosbags message object with the typestore and write it."""
        self.write_raw(topic, msgtype, timestamp_ns, self.serialize(msg, msgtype))

    def serialize(self, msg, msgtype: str) -> bytes:
        return bytes(self.typestore.serialize_cdr(msg, msgtype))

    def msg(self, msgtype: str):
        """The rosbags class of ``msgtype`` (to build messages to write)."""
        return self.typestore.types[msgtype]

    def message(self, msgtype: str, fields: Mapping[str, Any]):
        """A message of ``msgtype`` built from a field dict (:func:`build_message`)."""
        return build_message(self.typestore, msgtype, fields)

    @staticmethod
    def header(typestore, stamp_ns: int, frame_id: str = ""):
        Time = typestore.types["builtin_interfaces/msg/Time"]
        Header = typestore.types["std_msgs/msg/Header"]
        return Header(stamp=Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
                      frame_id=frame_id)
