"""Read rosbag2 (sqlite3, mcap) and ROS 1 bags without ROS, through rosbags' AnyReader.

:class:`BagReader` lists topics and types and yields raw ``(topic, msgtype, t_ns, bytes)`` records in time
order; :meth:`BagReader.decoded` turns them into pipeline inputs: :class:`EventsMessage` (through
:func:`fer_perception.events.decoders.make_decoder`, straight from the CDR bytes), :class:`ImageMessage`
(``sensor_msgs/Image`` and ``CompressedImage`` through :mod:`fer_perception.images`, from rosbags-deserialized
fields) and :class:`LabelMessage` (``std_msgs/String``). A message that fails to decode is skipped and counted
in :attr:`BagReader.malformed` (per topic) - it never ends the run. A bag that is missing, truncated or corrupt,
a topic that is not in the bag, or a topic of a type we cannot use raise :class:`BagError` whose message lists
what the bag does contain.

ROS 1 bags store ROS 1 serialized messages; event messages are converted to CDR with rosbags'
``ros1_to_cdr`` before decoding, so one decoder serves both.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from fer_perception.errors import BagError, FerPerceptionError

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
STRING_TYPE = "std_msgs/msg/String"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)


@dataclass(frozen=True)
class RawMessage:
    """One serialized message as stored in the bag."""

    topic: str
    msgtype: str
    t_ns: int
    data: bytes


@dataclass
class EventsMessage:
    topic: str
    t_ns: int
    batch: object  # EventBatch


@dataclass
class ImageMessage:
    topic: str
    t_ns: int
    image: np.ndarray  # uint8 RGB (H, W, 3) or mono (H, W)
    stamp_ns: int
    frame_id: str


@dataclass
class LabelMessage:
    topic: str
    t_ns: int
    text: str


def normalize_type(msgtype: str) -> str:
    """``pkg/Type`` -> ``pkg/msg/Type``; ``pkg/msg/Type`` unchanged."""
    parts = msgtype.strip().split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    return msgtype.strip()


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class BagReader:
    """A rosbag opened for reading. Use as a context manager::

        with BagReader("recording") as bag:
            print(bag.topics)                      # {topic: msgtype}
            for msg in bag.decoded(events_topic="/events", image_topics={"/camera/image": "aps"}):
                ...
    """

    def __init__(self, path: Union[str, Path, Sequence[Union[str, Path]]], distro: str = "humble") -> None:
        paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
        if not paths:
            raise BagError("no bag path given")
        for p in paths:
            if not p.exists():
                raise BagError(f"bag {p} does not exist")
        self.paths = paths
        self.distro = distro
        self._reader = None
        self.malformed: Dict[str, int] = {}
        self.malformed_reasons: Dict[str, str] = {}

    # -- opening -------------------------------------------------------------------------------------------
    def __enter__(self) -> "BagReader":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        from rosbags.highlevel import AnyReader

        from fer_perception.msgdefs import get_typestore

        self._ours = get_typestore(self.distro)
        try:
            reader = AnyReader(self.paths, default_typestore=self._ours)
            reader.open()
        except FerPerceptionError:
            raise
        except Exception as exc:  # noqa: BLE001 - rosbags raises many types for broken files
            raise BagError(f"cannot open bag {self._name()}: {type(exc).__name__}: {exc}") from exc
        self._reader = reader
        self.is_ros1 = not reader.is2

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None

    def _name(self) -> str:
        return ", ".join(str(p) for p in self.paths)

    def _require_open(self):
        if self._reader is None:
            raise BagError("BagReader is not open")
        return self._reader

    # -- contents ------------------------------------------------------------------------------------------
    @property
    def topics(self) -> Dict[str, str]:
        """``{topic: msgtype}`` (types as ``pkg/msg/Type``)."""
        r = self._require_open()
        return {c.topic: normalize_type(c.msgtype) for c in r.connections}

    @property
    def counts(self) -> Dict[str, int]:
        r = self._require_open()
        out: Dict[str, int] = {}
        for c in r.connections:
            out[c.topic] = out.get(c.topic, 0) + int(c.msgcount)
        return out

    @property
    def start_ns(self) -> int:
        r = self._require_open()
        return int(r.start_time) if r.message_count else 0

    @property
    def end_ns(self) -> int:
        r = self._require_open()
        return int(r.end_time) if r.message_count else 0

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def message_count(self) -> int:
        return int(self._require_open().message_count)

    def describe(self) -> str:
        """One line per topic: name, type, message count - used in every BagError."""
        try:
            topics, counts = self.topics, self.counts
        except BagError:
            return "(bag not open)"
        if not topics:
            return "the bag has no topics"
        return "the bag contains: " + "; ".join(f"{t} [{topics[t]}, {counts.get(t, 0)} msgs]" for t in sorted(topics))

    def require_topic(self, topic: str, allowed_types: Optional[Sequence[str]] = None) -> str:
        """The type of ``topic``; :class:`BagError` listing the bag's topics when missing or of another type."""
        topics = self.topics
        if topic not in topics:
            raise BagError(f"topic {topic!r} is not in bag {self._name()}; {self.describe()}")
        if allowed_types is not None and topics[topic] not in allowed_types:
            raise BagError(
                f"topic {topic!r} has type {topics[topic]}, expected one of {list(allowed_types)}; {self.describe()}"
            )
        return topics[topic]

    def find_event_topic(self) -> str:
        """The event topic of the bag (``--events-topic auto``): the only one with a supported event type."""
        from fer_perception.events.decoders import SUPPORTED_MESSAGE_TYPES

        supported = {normalize_type(t) for t in SUPPORTED_MESSAGE_TYPES}
        found = sorted(t for t, ty in self.topics.items() if ty in supported)
        if not found:
            raise BagError(f"no event topic (types {sorted(supported)}) in bag {self._name()}; {self.describe()}")
        if len(found) > 1:
            counts = self.counts
            found.sort(key=lambda t: -counts.get(t, 0))
            log.warning("several event topics %s; using %s (most messages)", found, found[0])
        return found[0]

    def find_image_topics(self) -> List[str]:
        return sorted(t for t, ty in self.topics.items() if ty in IMAGE_TYPES)

    def find_label_topics(self) -> List[str]:
        return sorted(t for t, ty in self.topics.items() if ty == STRING_TYPE)

    # -- reading -------------------------------------------------------------------------------------------
    def messages(self, topics: Optional[Sequence[str]] = None) -> Iterator[RawMessage]:
        """Raw messages in time order, optionally only of ``topics`` (each must exist)."""
        r = self._require_open()
        conns = []
        if topics is not None:
            for t in topics:
                self.require_topic(t)
            wanted = set(topics)
            conns = [c for c in r.connections if c.topic in wanted]
            if not conns:
                return
        n = 0
        try:
            for conn, t_ns, data in r.messages(connections=conns):
                n += 1
                yield RawMessage(conn.topic, normalize_type(conn.msgtype), int(t_ns), bytes(data))
        except FerPerceptionError:
            raise
        except GeneratorExit:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated/corrupt storage files fail while iterating
            raise BagError(
                f"bag {self._name()} is corrupt or truncated after {n} messages: {type(exc).__name__}: {exc}; "
                f"{self.describe()}"
            ) from exc

    def deserialize(self, msg: RawMessage):
        """A rosbags message object for ``msg`` (bag's own definitions first, then ours)."""
        r = self._require_open()
        if self.is_ros1:
            store = r.typestore if msg.msgtype in r.typestore.types else self._ours
            return store.deserialize_ros1(msg.data, msg.msgtype)
        store = r.typestore if msg.msgtype in r.typestore.types else self._ours
        return store.deserialize_cdr(msg.data, msg.msgtype)

    def cdr_bytes(self, msg: RawMessage) -> bytes:
        """The message as CDR bytes (ROS 1 messages are converted)."""
        if not self.is_ros1:
            return msg.data
        r = self._require_open()
        # rosbags' ros1_to_cdr expects ROS 2 definitions (a Header without seq: it skips the ROS 1 seq itself)
        store = self._ours if msg.msgtype in self._ours.types else r.typestore
        return bytes(store.ros1_to_cdr(msg.data, msg.msgtype))

    def _count_malformed(self, topic: str, exc: Exception) -> None:
        self.malformed[topic] = self.malformed.get(topic, 0) + 1
        if topic not in self.malformed_reasons:
            self.malformed_reasons[topic] = f"{type(exc).__name__}: {exc}"
            log.warning("skipping malformed message on %s: %s", topic, exc)

    @property
    def malformed_total(self) -> int:
        return int(sum(self.malformed.values()))

    def decoded(
        self,
        events_topic: Optional[str] = None,
        image_topics: Optional[Sequence[str]] = None,
        label_topic: Optional[str] = None,
    ) -> Iterator[Union[EventsMessage, ImageMessage, LabelMessage]]:
        """Decoded pipeline inputs of the chosen topics, in time order; malformed messages skipped and counted."""
        from fer_perception.events.decoders import make_decoder

        topics: List[str] = []
        decoder = None
        if events_topic:
            ty = self.require_topic(events_topic)
            try:
                decoder = make_decoder(ty)
            except FerPerceptionError as exc:
                raise BagError(f"topic {events_topic!r}: {exc}; {self.describe()}") from exc
            topics.append(events_topic)
        for t in image_topics or ():
            self.require_topic(t, IMAGE_TYPES)
            topics.append(t)
        if label_topic:
            self.require_topic(label_topic, (STRING_TYPE,))
            topics.append(label_topic)
        if not topics:
            raise BagError(f"no topics chosen to read; {self.describe()}")
        for raw in self.messages(topics):
            try:
                if raw.topic == events_topic:
                    yield EventsMessage(raw.topic, raw.t_ns, decoder.decode(self.cdr_bytes(raw)))
                elif raw.topic == label_topic:
                    yield LabelMessage(raw.topic, raw.t_ns, str(self.deserialize(raw).data))
                else:
                    image, stamp_ns, frame_id = self.decode_image(raw)
                    yield ImageMessage(raw.topic, raw.t_ns, image, stamp_ns, frame_id)
            except (FerPerceptionError, ValueError, KeyError, IndexError, AssertionError, struct.error) as exc:
                self._count_malformed(raw.topic, exc)

    def decode_image(self, raw: RawMessage) -> Tuple[np.ndarray, int, str]:
        """(image, header stamp ns, frame_id) of an Image or CompressedImage message."""
        from fer_perception import images

        msg = self.deserialize(raw)
        if raw.msgtype == COMPRESSED_IMAGE_TYPE:
            img = images.decode_compressed(str(msg.format), bytes(np.asarray(msg.data, dtype=np.uint8)))
        else:
            img = images.image_from_ros(
                str(msg.encoding), int(msg.height), int(msg.width), int(msg.step),
                np.asarray(msg.data, dtype=np.uint8), bool(msg.is_bigendian),
            )
        return img, _stamp_ns(msg.header), str(msg.header.frame_id)
