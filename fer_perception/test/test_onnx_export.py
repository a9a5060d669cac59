"""ONNX export of the frame models: onnxruntime matches torch within 1e-4, dynamic batch, metadata,
the onnx backend of the runtime wrappers and the `fer-perception export` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_perception.errors import CheckpointError
from fer_perception.models.age_gender import AgeGenderConfig, AgeGenderNet
from fer_perception.models.dan import DAN
from fer_perception.models.frame_checkpoint import save_frame_checkpoint
from fer_perception.models.light_fer import LightFER, LightFerConfig
from fer_perception.runtime.frame_models import AgeGenderModel, ExpressionModel, load_torch_model
from fer_perception.runtime.onnx_backend import OnnxModel, export_onnx

TOL = 1e-4


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path_factory, monkeypatch):
    """Keep exported ONNX files of these tests out of the user's cache."""
    monkeypatch.setenv("FER_PERCEPTION_CACHE", str(tmp_path_factory.getbasetemp() / "onnx_cache"))


def _randomise_bn(m):
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            mod.running_mean.copy_(torch.rand(mod.running_mean.shape, generator=g) * 0.2 - 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)


def _light(tmp_path):
    torch.manual_seed(0)
    cfg = LightFerConfig(n_classes=7, input_size=48)
    m = LightFER(cfg).eval()
    _randomise_bn(m)
    p = tmp_path / "light.pt"
    save_frame_checkpoint(p, m, kind="light", config=cfg.to_dict(), classes=list("abcdefg"),
                          preprocess=cfg.preprocess())
    return p


def _agegender(tmp_path):
    torch.manual_seed(0)
    cfg = AgeGenderConfig(backbone="light", input_size=64)
    m = AgeGenderNet(cfg).eval()
    _randomise_bn(m)
    p = tmp_path / "ag.pt"
    save_frame_checkpoint(p, m, kind="agegender", config=cfg.to_dict(), classes=("male", "female"),
                          preprocess=cfg.preprocess())
    return p


def _realistic_dan(num_class):
    """A random DAN whose logits have a trained model's magnitude (tens, not thousands)."""
    torch.manual_seed(0)
    m = DAN(num_class=num_class).eval()
    _randomise_bn(m)
    with torch.no_grad():
        m.fc.weight.mul_(0.001)
    return m


@pytest.mark.parametrize("kind,maker", [("light", _light), ("agegender", _agegender)])
def test_onnxruntime_matches_torch_with_dynamic_batch(tmp_path, kind, maker):
    loaded = load_torch_model(kind, str(maker(tmp_path)))
    p = loaded.preprocess
    out = tmp_path / f"{kind}.onnx"
    export_onnx(loaded.module, (1, p.channels, p.size, p.size), out, output_names=loaded.output_names,
                metadata=loaded.onnx_metadata())
    sess = OnnxModel(out, device="cpu")
    assert sess.output_names == list(loaded.output_names)
    assert sess.metadata["fer_perception_kind"] == kind
    assert sess.metadata["preprocess"] == p.to_dict()
    assert sess.metadata["classes"] == list(loaded.classes)
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.standard_normal((batch, p.channels, p.size, p.size)).astype(np.float32)
        with torch.no_grad():
            ref = loaded.module(torch.from_numpy(x))
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = sess.run(x)
        assert len(got) == len(ref)
        for r, g in zip(ref, got):
            assert g.shape == tuple(r.shape)
            assert np.abs(r.numpy()).max() < 50  # realistic output magnitudes
            assert np.abs(r.numpy() - g).max() < TOL


def test_official_dan_at_224_exports_and_matches(tmp_path):
    m = _realistic_dan(8)
    ckpt = tmp_path / "affecnet8_epoch5_acc0.6209.pth"
    torch.save({"iter": 5, "model_state_dict": m.state_dict(), "optimizer_state_dict": {}}, ckpt)
    from fer_perception.commands.export import export_frame_model

    out = tmp_path / "dan8.onnx"
    loaded = export_frame_model("dan", str(ckpt), str(out))
    sess = OnnxModel(out, device="cpu")
    assert sess.metadata["fer_perception_kind"] == "dan" and sess.metadata["preprocess"]["size"] == 224
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        with torch.no_grad():
            ref = loaded.module(torch.from_numpy(x)).numpy()
        got = sess.run(x)[0]
        assert got.shape == (batch, 8) and np.abs(ref).max() < 50
        assert np.abs(ref - got).max() < TOL
    em = ExpressionModel("dan", str(out), backend="onnx", device="cpu")
    assert em.labels == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
    face = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    t = ExpressionModel("dan", str(ckpt), backend="torch", device="cpu").predict([face])
    np.testing.assert_allclose(em.predict([face]), t, atol=TOL)


def test_onnx_backend_wrappers_match_torch_backend(tmp_path):
    faces = [np.random.default_rng(i).integers(0, 256, (80, 70, 3), dtype=np.uint8) for i in range(4)]
    light = _light(tmp_path)
    t = ExpressionModel("light", str(light), backend="torch", device="cpu")
    o = ExpressionModel("light", str(light), backend="onnx", device="cpu")  # exported on the fly
    assert o.labels == t.labels
    np.testing.assert_allclose(o.predict(faces), t.predict(faces), atol=TOL)
    ag = _agegender(tmp_path)
    onnx_path = tmp_path / "ag.onnx"
    loaded = load_torch_model("agegender", str(ag))
    export_onnx(loaded.module, (1, 3, 64, 64), onnx_path, output_names=loaded.output_names,
                metadata=loaded.onnx_metadata())
    ta = AgeGenderModel(str(ag), backend="torch", device="cpu").predict(faces)
    oa = AgeGenderModel(str(onnx_path), backend="onnx", device="cpu").predict(faces)
    for a, b in zip(ta, oa):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    with pytest.raises(CheckpointError, match="'agegender' model, expected 'light'"):
        ExpressionModel("light", str(onnx_path), backend="onnx", device="cpu")


def test_export_command_writes_verified_onnx(tmp_path, capsys):
    from fer_perception.cli import main

    out = tmp_path / "cli.onnx"
    rc = main(["export", "light", "--checkpoint", str(_light(tmp_path)), "-o", str(out)])
    assert rc == 0 and out.is_file()
    text = capsys.readouterr().out
    assert "max abs difference" in text
    assert main(["export", "dan", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err


def test_missing_onnx_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        OnnxModel(tmp_path / "none.onnx")


@pytest.mark.parametrize("kind", ["snn", "cnn"])
def test_spiking_fer_exports_and_matches_spikingjelly(tmp_path, kind):
    """Spiking-FER goes through an exportable IF formulation; the CNN baseline exports directly."""
    from spikingjelly.activation_based import functional

    from fer_perception.commands.export import export_snn
    from fer_perception.models.checkpoint import save_checkpoint
    from fer_perception.models.spiking_fer import build_model

    torch.manual_seed(0)
    model = build_model(kind, 6, 4, 0.25, 2, 32).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-like BN so that the neurons fire
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
    ckpt = tmp_path / f"{kind}.pt"
    save_checkpoint(ckpt, model, {"classes": ["happy", "fear", "surprise", "anger", "disgust", "sadness"]})
    out = tmp_path / f"{kind}.onnx"
    export_snn(str(ckpt), str(out))
    sess = OnnxModel(out, device="cpu")
    assert sess.metadata["fer_perception_kind"] == kind and sess.metadata["classes"][0] == "happy"
    x = (torch.rand(3, 4, 2, 32, 32, generator=g) < 0.15).float()
    functional.reset_net(model)
    with torch.no_grad():
        ref = model(x.transpose(0, 1)).numpy()
    got = sess.run(x.numpy())[0]
    assert got.shape == (3, 6) and np.abs(ref).max() > 0.01
    assert np.abs(ref - got).max() < TOL
