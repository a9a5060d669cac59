"""Spiking-FER checkpoints: official Lightning layout, our format, bare state dicts, strictness, safety."""

from __future__ import annotations


import pytest
import torch

from fer_perception.errors import CheckpointError
from fer_perception.labels import FERDVS_CLASSES
from fer_perception.models.checkpoint import (
    FORMAT,
    CheckpointMeta,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
    strip_prefix,
)
from fer_perception.models.spiking_fer import CNNBaseline, SpikingFER

SMALL = dict(width=0.125, input_size=32)


def _randomize(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    return model.eval()


def _lightning_file(path, model, mode="snn", timesteps=6, n_classes=6):
    """What the official FerModule + Lightning Trainer writes (plain containers, tensors, numbers)."""
    ckpt = {
        "epoch": 499,
        "global_step": 12345,
        "pytorch-lightning_version": "1.5.10",
        "state_dict": {"model." + k: v for k, v in model.state_dict().items()},
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.9), "dirpath": "/x"}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 5e-3, "momentum": 0.9, "params": [0]}]}],
        "lr_schedulers": [{"T_max": 500, "last_epoch": 500}],
        "hyper_parameters": {
            "learning_rate": 5e-3, "timesteps": timesteps, "n_classes": n_classes, "epochs": 500, "mode": mode,
        },
    }
    torch.save(ckpt, path)
    return ckpt


def test_official_snn_lightning_checkpoint_loads_strictly(tmp_path):
    src = _randomize(SpikingFER())
    path = tmp_path / "epoch=499.ckpt"
    _lightning_file(path, src)
    model, meta = load_checkpoint(path)
    assert isinstance(model, SpikingFER) and not model.training
    assert meta.source == "official" and meta.kind == "snn" and meta.timesteps == 6
    assert meta.classes == FERDVS_CLASSES and meta.hyper_parameters["learning_rate"] == 5e-3
    assert not meta.synthetic
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_official_cnn_checkpoint_and_kind_check(tmp_path):
    src = _randomize(CNNBaseline(**SMALL))
    path = tmp_path / "cnn.ckpt"
    _lightning_file(path, src, mode="cnn")
    model, meta = load_checkpoint(path, kind="cnn")
    assert isinstance(model, CNNBaseline) and meta.width == 0.125 and meta.timesteps == 6
    x = torch.rand(6, 2, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))
    with pytest.raises(CheckpointError, match="'cnn' model, 'snn' was asked"):
        load_checkpoint(path, kind="snn")


def test_mode_contradicting_weights_is_rejected(tmp_path):
    path = tmp_path / "bad.ckpt"
    _lightning_file(path, CNNBaseline(**SMALL), mode="snn")
    with pytest.raises(CheckpointError, match="mode 'snn' says snn but the weights are a cnn"):
        load_checkpoint(path)


def test_our_format_round_trip_keeps_meta_and_outputs(tmp_path):
    src = _randomize(SpikingFER(n_classes=7, timesteps=3, **SMALL))
    classes = FERDVS_CLASSES + ("neutral",)
    meta = {
        "classes": classes,
        "representation": {"events_per_frame": 2500, "timesteps": 3, "size": 32, "binarize": True},
        "provenance": {"dataset": "synthetic", "fold": 0, "split": "train", "commit": "abc", "date": "2026-11-22",
                       "synthetic": True},
    }
    path = tmp_path / "sub" / "demo.pt"
    written = save_checkpoint(path, src, meta)
    assert written.n_classes == 7 and written.kind == "snn"
    raw = torch.load(str(path), weights_only=True)
    assert raw["format"] == FORMAT and set(raw) == {"format", "version", "state_dict", "meta"}
    model, loaded = load_checkpoint(path)
    assert loaded.classes == classes and loaded.synthetic and loaded.provenance["commit"] == "abc"
    assert loaded.representation["size"] == 32 and loaded.timesteps == 3 and loaded.source == "fer_perception"
    x = (torch.rand(3, 2, 2, 32, 32) < 0.2).float()
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def test_save_rejects_meta_that_contradicts_the_model(tmp_path):
    m = SpikingFER(**SMALL)
    with pytest.raises(CheckpointError, match="timesteps: meta 4 vs model 6"):
        save_checkpoint(tmp_path / "x.pt", m, {"timesteps": 4})
    with pytest.raises(CheckpointError, match="lists 2 classes"):
        save_checkpoint(tmp_path / "x.pt", m, {"classes": ["a", "b"]})
    with pytest.raises(CheckpointError, match="synthetic"):
        save_checkpoint(tmp_path / "x.pt", m, {"provenance": {"synthetic": "yes"}})


def test_bare_state_dict_infers_kind_and_width(tmp_path):
    src = _randomize(CNNBaseline(n_classes=5, timesteps=4, **SMALL))
    path = tmp_path / "bare.pt"
    torch.save(src.state_dict(), path)
    model, meta = load_checkpoint(path)
    assert meta.source == "state_dict" and meta.kind == "cnn" and meta.timesteps == 4 and meta.n_classes == 5
    assert len(meta.classes) == 5


def test_missing_unexpected_and_shape_mismatch_are_named(tmp_path):
    sd = {"model." + k: v for k, v in SpikingFER().state_dict().items()}
    del sd["model.encoder.layer3.0.bn1.weight"]
    sd["model.encoder.extra.weight"] = torch.zeros(3)
    sd["model.encoder.fc.0.bias"] = torch.zeros(7)
    path = tmp_path / "broken.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": {"timesteps": 6, "n_classes": 6, "mode": "snn"}}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "missing keys: encoder.layer3.0.bn1.weight (1)" in msg
    assert "unexpected keys: encoder.extra.weight (1)" in msg
    assert "encoder.fc.0.bias: checkpoint (7,) vs model (512,)" in msg


def test_many_missing_keys_are_counted():
    m = SpikingFER(**SMALL)
    sd = dict(list(m.state_dict().items())[:10])
    with pytest.raises(CheckpointError, match=r"missing keys: .*\.\.\. \(113 in all\)"):
        load_state_dict_strict(m, sd, source="test")


def test_corrupt_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(CheckpointError, match="junk.ckpt is corrupt"):
        load_checkpoint(junk)
    trunc = tmp_path / "trunc.pt"
    save_checkpoint(trunc, SpikingFER(**SMALL))
    trunc.write_bytes(trunc.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(trunc)
    other = tmp_path / "other.pt"
    torch.save({"weights": [1, 2]}, other)
    with pytest.raises(CheckpointError, match="not a Spiking-FER checkpoint"):
        load_checkpoint(other)
    lst = tmp_path / "list.pt"
    torch.save([1, 2, 3], lst)
    with pytest.raises(CheckpointError, match="must be a dict, got list"):
        load_checkpoint(lst)


class _Evil:
    def __reduce__(self):  # would run code if unpickled without weights_only
        return (exec, ("raise SystemExit('unpickled')",))


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Evil()}}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)


def test_meta_from_dict_rejects_unknown_fields_and_strip_prefix():
    with pytest.raises(CheckpointError, match="unknown fields"):
        CheckpointMeta.from_dict({"bogus": 1})
    assert strip_prefix({"module.a": 1, "b": 2}, "module.") == {"a": 1, "b": 2}
