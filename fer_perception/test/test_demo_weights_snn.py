"""The packaged synthetic demo Spiking-FER weights: card, provenance, and accuracy on clips from a fresh seed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("spikingjelly")

import fer_perception.data.ferdvs as ferdvs_module  # noqa: E402
from fer_perception.labels import FERDVS_CLASSES  # noqa: E402

WEIGHTS = Path(ferdvs_module.__file__).resolve().parent.parent / "weights" / "spiking_fer_synthetic_demo.pt"
CARD = WEIGHTS.with_suffix(".json")
#: Never used by the demo training (dataset seed 0, held-out seed 9001 in the card).
FRESH_SEED = 271828


def test_files_and_card():
    assert WEIGHTS.is_file() and CARD.is_file()
    assert WEIGHTS.stat().st_size < 8_000_000
    card = json.loads(CARD.read_text())
    assert card["synthetic"] is True and "synthetic" in card["name"]
    assert "not for real faces" in card["warning"]
    assert card["classes"] == list(FERDVS_CLASSES)
    assert card["sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert card["representation"]["events_per_frame"] == 2500 and card["representation"]["timesteps"] == 6
    assert card["heldout"]["accuracy"] >= 0.9
    assert card["heldout"]["seed"] != card["training"]["seed"] and FRESH_SEED not in (
        card["heldout"]["seed"], card["training"]["seed"])
    assert card["training"]["command"].startswith("fer-perception synth train-demo")


def test_checkpoint_meta_says_synthetic():
    from fer_perception.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(WEIGHTS, kind="snn")
    assert meta.synthetic is True
    assert meta.classes == FERDVS_CLASSES
    assert meta.timesteps == 6 and meta.input_size in (64, 128)
    assert meta.representation["size"] == meta.input_size
    assert not model.training


def test_accuracy_on_clips_from_an_unseen_seed():
    from fer_perception.data.synthetic_events import clips_to_inputs, generate_clips, predict_frames
    from fer_perception.models.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    from fer_perception.data.ferdvs import FerDVSConfig

    model, meta = load_checkpoint(WEIGHTS, kind="snn")
    clips = generate_clips(30, FRESH_SEED)
    x, y = clips_to_inputs(clips, FerDVSConfig(size=meta.input_size))
    assert x.shape == (30, 6, 2, meta.input_size, meta.input_size) and np.bincount(y, minlength=6).tolist() == [5] * 6
    probs = predict_frames(model, x)
    assert probs.shape == (30, 6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    acc = float((probs.argmax(axis=1) == y).mean())
    assert acc >= 0.9, f"accuracy {acc:.3f} on 30 fresh clips"
