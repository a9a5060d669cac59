"""Class names of every model, in each model's official output order, and their mapping to REP-155.

The orders are facts from the official repositories (docs/facts.md); a checkpoint's logits are only
meaningful with its own order, so every result carries its label list.
"""

from __future__ import annotations

from typing import Dict, Tuple

#: Spiking-FER / FerDVS (CK+, ADFES, CASIA, MMI converted to events); folds.csv labels are 1-based in this order.
FERDVS_CLASSES: Tuple[str, ...] = ("happy", "fear", "surprise", "anger", "disgust", "sadness")
#: DAN on RAF-DB.
RAFDB_CLASSES: Tuple[str, ...] = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
#: DAN on AffectNet-8 and AffectNet-7.
AFFECTNET8_CLASSES: Tuple[str, ...] = (
    "neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt",
)
AFFECTNET7_CLASSES: Tuple[str, ...] = AFFECTNET8_CLASSES[:7]
#: FER2013 CSV (emotion column 0..6).
FER2013_CLASSES: Tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: The synthetic faces: the six FerDVS expressions plus neutral (frame models trained on them predict all 7).
SYNTHETIC_CLASSES: Tuple[str, ...] = FERDVS_CLASSES + ("neutral",)

#: Canonical name of each label used anywhere, so results from different models can be compared.
CANONICAL: Dict[str, str] = {
    "happy": "happy", "happiness": "happy",
    "sad": "sad", "sadness": "sad",
    "anger": "angry", "angry": "angry",
    "fear": "fear", "scared": "fear",
    "surprise": "surprise", "surprised": "surprise",
    "disgust": "disgust", "disgusted": "disgust",
    "neutral": "neutral",
    "contempt": "contempt",
}

#: hri_msgs/Expression constant (REP-155) for each canonical label.
REP155_EXPRESSION: Dict[str, str] = {
    "happy": "happy", "sad": "sad", "angry": "angry", "fear": "scared", "surprise": "surprised",
    "disgust": "disgusted", "neutral": "neutral", "contempt": "skeptical",
}


def canonical(label: str) -> str:
    """The canonical name of ``label`` (``"happiness"`` -> ``"happy"``); unknown labels pass through lower-cased."""
    key = label.strip().lower()
    return CANONICAL.get(key, key)


def to_rep155(label: str) -> str:
    """The REP-155 ``hri_msgs/Expression`` constant value for a label of any of our models."""
    return REP155_EXPRESSION.get(canonical(label), canonical(label))
