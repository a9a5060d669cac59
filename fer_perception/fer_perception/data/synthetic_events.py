"""Synthetic event clips in memory: rendered faces through the DVS emulator, as FerDVS-style event arrays.

For evaluating event models on faces no training run has seen (the demo weights' held-out check, tests)
without writing a dataset to disk. Each clip gets its own identity, derived from ``(seed, index)``; the
training datasets written by :func:`fer_perception.synth.ferdvs_writer.write_synthetic_ferdvs` derive theirs
from ``(seed, subject, 1)``, so a held-out seed gives identities, head motion, lighting and sensor mismatch
that training never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from fer_perception.data.ferdvs import FerDVSConfig, batch_to_events, events_to_input
from fer_perception.errors import ConfigError
from fer_perception.labels import FERDVS_CLASSES


@dataclass
class SyntheticEventClip:
    events: np.ndarray  # structured, EVENT_DTYPE, t in microseconds
    label: int  # index into the classes used (FERDVS_CLASSES order)
    expression: str
    clip_seed: int
    identity_seed: int


def generate_clips(
    n: int, seed: int, classes: Sequence[str] = FERDVS_CLASSES, emulator: str = "paper",
    face_overrides: Optional[dict] = None,
) -> List[SyntheticEventClip]:
    """``n`` clips cycling through ``classes`` (balanced), each with a fresh identity derived from ``seed``."""
    from fer_perception.synth.emulator import EmulatorConfig
    from fer_perception.synth.faces import SyntheticFaceConfig, make_identity, render_clip
    from fer_perception.synth.ferdvs_writer import clip_to_events, derive_seed

    if n < 1:
        raise ConfigError(f"number of clips must be >= 1, got {n}")
    unknown = [c for c in classes if c not in FERDVS_CLASSES]
    if unknown or not classes:
        raise ConfigError(f"classes must be a non-empty subset of {FERDVS_CLASSES}, got {list(classes)}")
    fcfg = SyntheticFaceConfig.ferdvs(**(face_overrides or {}))
    ecfg = EmulatorConfig.preset(emulator)
    clips = []
    for i in range(n):
        name = classes[i % len(classes)]
        ident_seed = derive_seed(seed, i, 11)
        clip_seed = derive_seed(seed, i, 12)
        clip = render_clip(name, clip_seed, fcfg, identity=make_identity(ident_seed))
        batch = clip_to_events(clip, ecfg, seed=derive_seed(seed, i, 13))
        clips.append(SyntheticEventClip(batch_to_events(batch), list(classes).index(name), name, clip_seed, ident_seed))
    return clips


def clips_to_inputs(clips: Sequence[SyntheticEventClip],
                    config: Optional[FerDVSConfig] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(frames (N, T, 2, S, S) float32, labels (N,) int64)`` with the Spiking-FER representation."""
    cfg = config or FerDVSConfig()
    if clips:
        x = np.stack([events_to_input(c.events, cfg) for c in clips])
    else:
        x = np.zeros((0,) + (cfg.timesteps, 2, cfg.size, cfg.size), np.float32)
    y = np.array([c.label for c in clips], np.int64)
    return x, y


def predict_frames(model, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Class probabilities ``(N, C)`` of an SNN/CNN from :mod:`fer_perception.models.spiking_fer`."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[s:s + batch_size])).transpose(0, 1).contiguous()
            out.append(torch.softmax(model(x), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
