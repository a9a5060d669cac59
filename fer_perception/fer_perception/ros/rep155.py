"""ROS4HRI (REP-155) output: the mapping (ROS-free, tested) and the publishers (rclpy, hri_msgs).

Topics (docs/facts.md#ros4hri-rep-155): ``/humans/faces/tracked`` (hri_msgs/IdsList) and per face
``/humans/faces/<id>/roi`` (sensor_msgs/RegionOfInterest), ``.../cropped`` (sensor_msgs/Image),
``.../expression`` (hri_msgs/Expression, labels mapped with :func:`fer_perception.labels.to_rep155`) and
``.../softbiometrics`` (hri_msgs/SoftBiometrics: gender UNDEFINED 0 / FEMALE 1 / MALE 2, age uint8). All
RELIABLE (ROS4HRI consumers subscribe reliably). Per-face publishers are created when a face appears and
destroyed when it goes.

:class:`Rep155Mapper` turns the live runner's outputs into :class:`Rep155Update` objects (dicts of message
fields, see :mod:`fer_perception.messages`); :class:`Rep155Publisher` publishes them with rclpy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

import numpy as np

from fer_perception.labels import canonical, to_rep155
from fer_perception.results import DemographicsResult, EmotionResult, Roi
from fer_perception.messages import demographics_fields, emotion_fields, header_fields, image_fields, roi_fields

FACES_NS = "/humans/faces"
GENDER_UNDEFINED, GENDER_FEMALE, GENDER_MALE, GENDER_OTHER = 0, 1, 2, 3

#: Approximate position of each canonical expression on Russell's circumplex (valence, arousal in [-1, 1]).
#: hri_msgs/Expression carries valence and arousal; we report the probability-weighted mean of these points.
CIRCUMPLEX: Dict[str, tuple] = {
    "happy": (0.8, 0.5), "surprise": (0.2, 0.8), "fear": (-0.6, 0.7), "angry": (-0.7, 0.7),
    "disgust": (-0.7, 0.3), "sad": (-0.7, -0.4), "neutral": (0.0, 0.0), "contempt": (-0.5, 0.2),
}

_TOKEN = re.compile(r"[^A-Za-z0-9_]")


def face_topic_id(face_id: str) -> str:
    """A face id usable as one ROS name token (letters, digits, ``_``; not starting with a digit)."""
    s = _TOKEN.sub("_", str(face_id)) or "face"
    return ("f" + s) if s[0].isdigit() else s


def face_topic(face_id: str, leaf: str) -> str:
    return f"{FACES_NS}/{face_topic_id(face_id)}/{leaf}"


def valence_arousal(labels: Sequence[str], probabilities: Sequence[float]) -> tuple:
    """Probability-weighted mean circumplex point of the labels (unknown labels count as neutral)."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    pts = np.array([CIRCUMPLEX.get(canonical(lb), (0.0, 0.0)) for lb in labels], dtype=np.float64).reshape(-1, 2)
    s = p.sum()
    if s <= 0 or len(p) != len(pts):
        return 0.0, 0.0
    v, a = (p[:, None] * pts).sum(axis=0) / s
    return float(v), float(a)


def expression_fields(r: EmotionResult) -> Dict[str, Any]:
    """hri_msgs/Expression for one result (label and confidence as fer_perception_msgs/Emotion has them)."""
    f = emotion_fields(r)
    v, a = valence_arousal(f["labels"], f["probabilities"])
    return {"header": f["header"], "expression": to_rep155(f["label"]), "valence": v, "arousal": a,
            "confidence": f["confidence"]}


def age_confidence(age_std: float) -> float:
    """Confidence in [0, 1] from the age estimate's standard deviation in years: exp(-std / 10)
    (1 for a certain estimate, 0.37 at 10 years of spread)."""
    s = float(age_std)
    return float(math.exp(-max(0.0, s) / 10.0)) if math.isfinite(s) else 0.0


def softbiometrics_fields(d: DemographicsResult) -> Dict[str, Any]:
    """hri_msgs/SoftBiometrics for one result (age rounded and clipped to uint8)."""
    f = demographics_fields(d)
    gender = {"female": GENDER_FEMALE, "male": GENDER_MALE}.get(f["gender"], GENDER_UNDEFINED)
    return {"header": f["header"], "age": int(min(255, max(0, round(f["age"])))),
            "age_confidence": age_confidence(f["age_std"]), "gender": gender,
            "gender_confidence": f["gender_confidence"]}


def crop(image: np.ndarray, roi: Roi) -> Optional[np.ndarray]:
    """The ROI's pixels (a copy), or None when the ROI lies outside the image."""
    h, w = image.shape[:2]
    r = roi.clipped(w, h)
    if r.width <= 0 or r.height <= 0:
        return None
    return np.ascontiguousarray(image[r.y:r.y + r.height, r.x:r.x + r.width])


@dataclass
class FaceUpdate:
    """Message fields for one face (None = nothing to publish on that topic this time)."""

    roi: Optional[Dict[str, Any]] = None
    cropped: Optional[Dict[str, Any]] = None
    expression: Optional[Dict[str, Any]] = None
    softbiometrics: Optional[Dict[str, Any]] = None


@dataclass
class Rep155Update:
    """What to publish after one output: the tracked ids (None = unchanged), faces added / removed, and
    per-face fields."""

    tracked: Optional[Dict[str, Any]] = None
    added: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    faces: Dict[str, FaceUpdate] = field(default_factory=dict)


class Rep155Mapper:
    """Keeps the set of tracked faces of one image source and maps live outputs to REP-155 fields.

    Args:
        source: image source whose tracks are the REP-155 faces (``rgb`` or ``aps``).
        crops: build ``cropped`` images (skip them when nobody needs them).
    """

    def __init__(self, source: str = "rgb", crops: bool = True) -> None:
        self.source = source
        self.crops = crops
        self.tracked: List[str] = []

    def update_frame(self, source: str, stamp_ns: int, frame_id: str, tracks: Iterable[Any],
                     emotions: Iterable[EmotionResult] = (), demographics: Iterable[DemographicsResult] = (),
                     image: Optional[np.ndarray] = None) -> Optional[Rep155Update]:
        """One processed image -> the update (None when the image is from another source)."""
        if source != self.source:
            return None
        ids: List[str] = []
        faces: Dict[str, FaceUpdate] = {}
        for tr in tracks:
            fid = str(getattr(tr, "face_id", "") or "")
            if not fid:
                continue  # tentative: no id yet
            tid = face_topic_id(fid)
            ids.append(tid)  # a track missed for a few images is still tracked (no publisher churn)
            if int(getattr(tr, "missed", 0)) > 0:
                continue  # but only seen faces get a roi / crop
            roi = Roi.from_xywh(np.asarray(tr.box, dtype=np.float64)[:4])
            if image is not None:
                roi = roi.clipped(image.shape[1], image.shape[0])
            fu = FaceUpdate(roi=roi_fields(roi))
            if self.crops and image is not None:
                c = crop(image, roi)
                if c is not None:
                    fu.cropped = image_fields(c, stamp_ns, frame_id)
            faces[tid] = fu
        for e in emotions:
            tid = face_topic_id(e.face_id)
            if tid in faces:
                faces[tid].expression = expression_fields(e)
        for d in demographics:
            tid = face_topic_id(d.face_id)
            if tid in faces:
                faces[tid].softbiometrics = softbiometrics_fields(d)
        prev: Set[str] = set(self.tracked)
        upd = Rep155Update(
            tracked={"header": header_fields(stamp_ns, frame_id), "ids": list(ids)},
            added=[i for i in ids if i not in prev], removed=sorted(prev - set(ids)), faces=faces,
        )
        self.tracked = ids
        return upd

    def update_events(self, emotions: Iterable[EmotionResult]) -> Optional[Rep155Update]:
        """Event-window results of tracked faces -> expression updates (None when none is tracked)."""
        known = set(self.tracked)
        faces = {}
        for e in emotions:
            tid = face_topic_id(e.face_id)
            if tid in known:
                faces[tid] = FaceUpdate(expression=expression_fields(e))
        return Rep155Update(faces=faces) if faces else None


class Rep155Publisher:
    """rclpy publishers for the REP-155 topics of one node (created/destroyed as faces come and go)."""

    LEAVES = ("roi", "cropped", "expression", "softbiometrics")

    def __init__(self, node: Any, source: str = "rgb") -> None:
        from hri_msgs.msg import Expression, IdsList, SoftBiometrics  # noqa: F401 - fails early when missing
        from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
        from sensor_msgs.msg import Image, RegionOfInterest

        self.node = node
        self.types = {"roi": RegionOfInterest, "cropped": Image, "expression": Expression,
                      "softbiometrics": SoftBiometrics}
        self.qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.IdsList = IdsList
        self.tracked_pub = node.create_publisher(IdsList, f"{FACES_NS}/tracked", self.qos)
        self.faces: Dict[str, Dict[str, Any]] = {}
        self.mapper = Rep155Mapper(source=source)

    def publish(self, upd: Optional[Rep155Update]) -> None:
        from fer_perception.ros.convert import fill_message

        if upd is None:
            return
        for fid in upd.removed:
            for pub in self.faces.pop(fid, {}).values():
                self.node.destroy_publisher(pub)
        for fid in upd.added:
            if fid not in self.faces:
                self.faces[fid] = {leaf: self.node.create_publisher(self.types[leaf], face_topic(fid, leaf),
                                                                    self.qos) for leaf in self.LEAVES}
        for fid, fu in upd.faces.items():
            pubs = self.faces.get(fid)
            if pubs is None:
                continue
            for leaf in self.LEAVES:
                values = getattr(fu, leaf)
                if values is not None and (leaf != "cropped" or pubs[leaf].get_subscription_count() > 0):
                    pubs[leaf].publish(fill_message(self.types[leaf](), values))
        if upd.tracked is not None:
            self.tracked_pub.publish(fill_message(self.IdsList(), upd.tracked))

    def destroy(self) -> None:
        for pubs in self.faces.values():
            for pub in pubs.values():
                self.node.destroy_publisher(pub)
        self.faces.clear()
        self.node.destroy_publisher(self.tracked_pub)
