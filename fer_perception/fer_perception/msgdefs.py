"""ROS message definitions for use without ROS: a rosbags typestore that knows every type we read or write.

Our own messages are read from the ``.msg`` files of the ``fer_perception_msgs`` package (never a copy): from
the ament index when ROS is sourced, else from the source tree beside this package, else from the copy that a
wheel installs under ``share/fer_perception_msgs/msg``. Third-party event and REP-155 types are defined here
from their published layouts (docs/facts.md).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

from fer_perception.errors import DependencyError

OUR_MESSAGES = ("Emotion", "Demographics")

_DVS_EVENT = "uint16 x\nuint16 y\nbuiltin_interfaces/Time ts\nbool polarity\n"
_DVS_ARRAY = "std_msgs/Header header\nuint32 height\nuint32 width\n{pkg}/Event[] events\n"

#: The event-array message types whose layout is identical (iniVation dv-ros2 and the rpg / Prophesee ports).
EVENT_ARRAY_TYPES = (
    "dv_ros2_msgs/msg/EventArray",
    "dvs_msgs/msg/EventArray",
    "prophesee_event_msgs/msg/EventArray",
)
EVENT_PACKET_TYPE = "event_camera_msgs/msg/EventPacket"

THIRD_PARTY_DEFINITIONS: Dict[str, str] = {
    "event_camera_msgs/msg/EventPacket": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nuint64 seq\nuint64 time_base\n"
        "string encoding\nbool is_bigendian\nuint8[] events\n"
    ),
    "hri_msgs/msg/IdsList": "std_msgs/Header header\nstring[] ids\n",
    "hri_msgs/msg/Expression": (
        "string NEUTRAL=neutral\nstring ANGRY=angry\nstring SAD=sad\nstring HAPPY=happy\n"
        "string SURPRISED=surprised\nstring DISGUSTED=disgusted\nstring SCARED=scared\n"
        "string PLEADING=pleading\nstring VULNERABLE=vulnerable\nstring DESPAIRED=despaired\n"
        "string GUILTY=guilty\nstring DISAPPOINTED=disappointed\nstring EMBARRASSED=embarrassed\n"
        "string HORRIFIED=horrified\nstring SKEPTICAL=skeptical\nstring ANNOYED=annoyed\n"
        "string FURIOUS=furious\nstring SUSPICIOUS=suspicious\nstring REJECTED=rejected\n"
        "string BORED=bored\nstring TIRED=tired\nstring ASLEEP=asleep\nstring CONFUSED=confused\n"
        "string AMAZED=amazed\nstring EXCITED=excited\n"
        "std_msgs/Header header\nstring expression\nfloat32 valence\nfloat32 arousal\nfloat32 confidence\n"
    ),
    "hri_msgs/msg/SoftBiometrics": (
        "uint8 UNDEFINED=0\nuint8 FEMALE=1\nuint8 MALE=2\nuint8 OTHER=3\n"
        "std_msgs/Header header\nuint8 age\nfloat32 age_confidence\nuint8 gender\nfloat32 gender_confidence\n"
    ),
}
for _pkg in ("dv_ros2_msgs", "dvs_msgs", "prophesee_event_msgs"):
    THIRD_PARTY_DEFINITIONS[f"{_pkg}/msg/Event"] = _DVS_EVENT
    THIRD_PARTY_DEFINITIONS[f"{_pkg}/msg/EventArray"] = _DVS_ARRAY.format(pkg=_pkg)


def _candidate_msg_dirs() -> List[Path]:
    dirs: List[Path] = []
    env = os.environ.get("FER_PERCEPTION_MSGS_DIR")
    if env:
        dirs.append(Path(env))
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "fer_perception_msgs" / "msg")
    here = Path(__file__).resolve()
    # Source tree: <repo>/fer_perception/fer_perception/msgdefs.py -> <repo>/fer_perception_msgs/msg
    dirs.append(here.parents[2] / "fer_perception_msgs" / "msg")
    dirs.append(Path(sys.prefix) / "share" / "fer_perception_msgs" / "msg")
    return dirs


def find_msg_dir() -> Path:
    """The folder holding ``Emotion.msg`` and ``Demographics.msg``."""
    tried = _candidate_msg_dirs()
    for d in tried:
        if all((d / f"{name}.msg").is_file() for name in OUR_MESSAGES):
            return d
    raise DependencyError(
        "cannot find the fer_perception_msgs message definitions; looked in: "
        + ", ".join(str(d) for d in tried)
        + ". Set FER_PERCEPTION_MSGS_DIR to the fer_perception_msgs/msg folder."
    )


def our_definitions(msg_dir: Optional[Path] = None) -> Dict[str, str]:
    """``{"fer_perception_msgs/msg/Emotion": text, ...}`` read from the .msg files."""
    d = msg_dir or find_msg_dir()
    return {f"fer_perception_msgs/msg/{n}": (d / f"{n}.msg").read_text() for n in OUR_MESSAGES}


@functools.lru_cache(maxsize=4)
def get_typestore(distro: str = "humble"):
    """A rosbags typestore for ``distro`` (humble or jazzy) with our, event and REP-155 types registered."""
    try:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore as _get
    except ImportError as exc:  # pragma: no cover - rosbags is a hard dependency
        raise DependencyError("rosbags is required: pip install rosbags") from exc
    stores = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
    if distro not in stores:
        raise ValueError(f"unknown ROS distro {distro!r}; expected one of {sorted(stores)}")
    store = _get(stores[distro])
    types = {}
    for name, text in {**THIRD_PARTY_DEFINITIONS, **our_definitions()}.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
