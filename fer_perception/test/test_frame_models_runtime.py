"""Runtime wrappers of the frame models: preprocessing, cropping, batching, checkpoints, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from fer_perception.errors import CheckpointError, ConfigError, ImageError
from fer_perception.models.age_gender import AgeGenderConfig, AgeGenderNet, gaussian_nll
from fer_perception.models.frame_checkpoint import read_frame_checkpoint, save_frame_checkpoint
from fer_perception.models.light_fer import LightFER, LightFerConfig
from fer_perception.runtime.frame_models import (
    AgeGenderModel, ExpressionModel, Preprocess, crop_boxes, load_torch_model,
)

CLASSES = ("a", "b", "c", "d", "e")


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path_factory, monkeypatch):
    """Keep exported ONNX files of these tests out of the user's cache."""
    monkeypatch.setenv("FER_PERCEPTION_CACHE", str(tmp_path_factory.getbasetemp() / "onnx_cache"))


def _light_ckpt(tmp_path, half=False, size=48, color="gray"):
    torch.manual_seed(0)
    cfg = LightFerConfig(n_classes=len(CLASSES), in_channels=1 if color == "gray" else 3, input_size=size)
    m = LightFER(cfg).eval()
    # non-trivial BN statistics so eval differs from train
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "light.pt"
    save_frame_checkpoint(path, m, kind="light", config=cfg.to_dict(), classes=CLASSES,
                          preprocess=cfg.preprocess(), meta={"note": "test"}, half=half)
    return path, m


def _ag_ckpt(tmp_path):
    torch.manual_seed(0)
    cfg = AgeGenderConfig(backbone="light", input_size=48, age_center=40.0, age_scale=15.0)
    m = AgeGenderNet(cfg).eval()
    path = tmp_path / "ag.pt"
    save_frame_checkpoint(path, m, kind="agegender", config=cfg.to_dict(), classes=("male", "female"),
                          preprocess=cfg.preprocess())
    return path, m


def _faces(n, seed=0, size=(70, 60)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size + (3,), dtype=np.uint8) for _ in range(n)]


def test_preprocess_normalises_exactly_and_converts_colour():
    p = Preprocess(size=8, color="rgb", mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])
    img = np.full((8, 8, 3), 255, np.uint8)
    x = p([img])
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, 3.0, 1.0], atol=1e-6)
    g = Preprocess(size=4, color="gray", mean=[0.0], std=[1.0])
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 1] = 255  # pure green -> BT.601 luma 0.587
    out = g([rgb])
    assert out.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(out, 150 / 255, atol=2 / 255)
    mono = np.full((10, 10), 51, np.uint8)
    assert Preprocess(size=4, color="rgb", mean=[0] * 3, std=[1] * 3)([mono]).shape == (1, 3, 4, 4)


def test_preprocess_resizes_bilinearly_when_enlarging():
    p = Preprocess(size=4, color="gray", mean=[0.0], std=[1.0])
    img = np.array([[0, 255], [0, 255]], np.uint8)
    row = p([img])[0, 0, 0] * 255
    assert row[0] == pytest.approx(0, abs=1) and row[-1] == pytest.approx(255, abs=1)
    assert 0 < row[1] < row[2] < 255  # interpolated, monotonic


def test_preprocess_rejects_bad_configs_and_images():
    with pytest.raises(ConfigError, match="color"):
        Preprocess.from_dict({"size": 16, "color": "bgr"})
    with pytest.raises(ConfigError, match="mean/std"):
        Preprocess.from_dict({"size": 16, "color": "rgb", "mean": [0.5], "std": [0.5]})
    with pytest.raises(ConfigError, match="resize"):
        Preprocess.from_dict({"size": 16, "resize": "nearest"})
    with pytest.raises(ConfigError, match="size"):
        Preprocess.from_dict({"size": 4})
    p = Preprocess(size=4)
    with pytest.raises(ImageError, match="uint8"):
        p([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ImageError, match="shape"):
        p([np.zeros((4, 4, 4), np.uint8)])
    with pytest.raises(ImageError, match="empty"):
        p([np.zeros((0, 4, 3), np.uint8)])


def test_crop_boxes_clips_to_the_image_and_names_bad_boxes():
    img = np.arange(20 * 30 * 3, dtype=np.uint32).reshape(20, 30, 3).astype(np.uint8)
    crops = crop_boxes(img, [(5, 4, 10, 6), (-5, -5, 10, 10), (25, 15, 20, 20)])
    assert crops[0].shape == (6, 10, 3) and np.array_equal(crops[0], img[4:10, 5:15])
    assert crops[1].shape == (5, 5, 3)
    assert crops[2].shape == (5, 5, 3)
    with pytest.raises(ImageError, match="box 1"):
        crop_boxes(img, [(1, 1, 3, 3), (40, 40, 5, 5)])
    with pytest.raises(ImageError, match="NaN"):
        crop_boxes(img, [(np.nan, 1, 3, 3)])
    assert crop_boxes(img, []) == []
    from fer_perception.results import Roi

    assert np.array_equal(crop_boxes(img, [Roi(5, 4, 10, 6)])[0], crops[0])


def test_expression_model_probabilities_batched_and_consistent(tmp_path):
    path, m = _light_ckpt(tmp_path)
    em = ExpressionModel("light", str(path), device="cpu", batch_size=2)
    assert em.labels == CLASSES
    faces = _faces(5)
    p = em.predict(faces)
    assert p.shape == (5, 5) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    one_by_one = np.concatenate([em.predict([f]) for f in faces])
    np.testing.assert_allclose(p, one_by_one, atol=1e-5)
    # same numbers as the torch model on the same preprocessing
    with torch.no_grad():
        ref = torch.softmax(m(torch.from_numpy(em.preprocess(faces))), 1).numpy()
    np.testing.assert_allclose(p, ref, atol=1e-5)
    assert em.predict([]).shape == (0, 5)
    assert em.predict(faces[0]).shape == (1, 5)


def test_expression_model_image_and_boxes_equals_crops(tmp_path):
    path, _ = _light_ckpt(tmp_path, size=64, color="rgb")
    em = ExpressionModel("light", str(path), device="cpu")
    img = _faces(1, size=(120, 160))[0]
    boxes = np.array([[10, 20, 50, 60], [90.0, 30, 40, 40]])
    a = em.predict(img, boxes)
    b = em.predict([img[20:80, 10:60], img[30:70, 90:130]])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_half_precision_checkpoints_are_close(tmp_path):
    path, m = _light_ckpt(tmp_path, half=True)
    blob = read_frame_checkpoint(path, "light")
    assert blob["state_dict"]["classifier.weight"].dtype == torch.float16
    em = ExpressionModel("light", str(path), device="cpu")
    faces = _faces(3)
    with torch.no_grad():
        ref = torch.softmax(m(torch.from_numpy(em.preprocess(faces))), 1).numpy()
    np.testing.assert_allclose(em.predict(faces), ref, atol=5e-3)


def test_age_gender_model_outputs(tmp_path):
    path, m = _ag_ckpt(tmp_path)
    ag = AgeGenderModel(str(path), device="cpu")
    out = ag.predict(_faces(4))
    age, age_std, p_female = out
    assert age.shape == age_std.shape == p_female.shape == (4,)
    assert np.all(age_std > 0) and np.all((p_female >= 0) & (p_female <= 1))
    x = torch.from_numpy(ag.preprocess(_faces(4)))
    with torch.no_grad():
        g, mu, lv = m.forward_normalised(x)
    np.testing.assert_allclose(age, 40 + 15 * mu.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(age_std, 15 * np.exp(0.5 * lv.numpy()), rtol=1e-4)
    np.testing.assert_allclose(p_female, torch.softmax(g, 1)[:, 1].numpy(), atol=1e-6)
    empty = ag.predict([])
    assert empty.age.shape == (0,)


def test_gaussian_nll_is_minimised_by_the_true_variance():
    target = torch.zeros(1000)
    mu = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 2.0
    values = {lv: float(gaussian_nll(mu, torch.full((1000,), lv), target)) for lv in (-1.0, np.log(4.0), 3.0)}
    assert values[np.log(4.0)] < values[-1.0] and values[np.log(4.0)] < values[3.0]


def test_checkpoint_errors(tmp_path):
    path, _ = _light_ckpt(tmp_path)
    with pytest.raises(CheckpointError, match="'light' model, expected 'agegender'"):
        AgeGenderModel(str(path), device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        ExpressionModel("light", str(tmp_path / "none.pt"), device="cpu")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a fer_perception frame checkpoint"):
        ExpressionModel("light", str(tmp_path / "other.pt"), device="cpu")
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["classifier.weight"] = torch.zeros(3, 128)
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="classifier.weight"):
        ExpressionModel("light", str(tmp_path / "bad.pt"), device="cpu")
    with pytest.raises(ConfigError, match="kind"):
        ExpressionModel("agegender", str(path))
    with pytest.raises(ConfigError, match="backend"):
        ExpressionModel("light", str(path), backend="tensorrt")
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        load_torch_model("dan", None)
    with pytest.raises(ConfigError, match="ONNX file"):
        ExpressionModel("light", str(tmp_path / "m.onnx"), backend="torch")


def test_model_configs_validate():
    with pytest.raises(ConfigError, match="input_size"):
        LightFerConfig(input_size=50).validate()
    with pytest.raises(ConfigError, match="backbone"):
        AgeGenderConfig(backbone="vgg").validate()
    m = AgeGenderNet(AgeGenderConfig(backbone="resnet18", input_size=64)).eval()
    assert "backbone.net.layer4.1.conv2.weight" in m.state_dict()
    with torch.no_grad():
        g, age, lv = m(torch.zeros(2, 3, 64, 64))
    assert g.shape == (2, 2) and age.shape == (2,) and lv.shape == (2,)


def test_dan_preprocessing_is_the_official_pil_pipeline():
    """torchvision Resize((224, 224)) on a PIL image = PIL bilinear; then ToTensor and ImageNet Normalize."""
    from PIL import Image

    from fer_perception.models.dan import DAN_PREPROCESS

    pre = Preprocess.from_dict(DAN_PREPROCESS)
    rng = np.random.default_rng(0)
    for shape in ((100, 100, 3), (300, 260, 3), (150, 400, 3)):
        crop = rng.integers(0, 256, shape, dtype=np.uint8)
        ref = np.asarray(Image.fromarray(crop).resize((224, 224), Image.BILINEAR)).astype(np.float32) / 255.0
        ref = (ref - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        np.testing.assert_allclose(pre([crop])[0], ref.transpose(2, 0, 1), atol=1e-5)


def test_auto_backend_uses_cached_onnx_on_cpu_and_matches_torch(tmp_path):
    import os

    from fer_perception.runtime.frame_models import onnx_cache_dir

    path, m = _light_ckpt(tmp_path)
    auto = ExpressionModel("light", str(path), device="cpu")
    assert auto.backend == "onnx" and auto.onnx_path.startswith(onnx_cache_dir())
    mtime = os.path.getmtime(auto.onnx_path)
    again = ExpressionModel("light", str(path), device="cpu")
    assert again.onnx_path == auto.onnx_path and os.path.getmtime(again.onnx_path) == mtime
    torch_model = ExpressionModel("light", str(path), backend="torch", device="cpu")
    faces = _faces(4)
    np.testing.assert_allclose(auto.predict(faces), torch_model.predict(faces), atol=1e-5)
    assert auto.labels == torch_model.labels == CLASSES
    assert auto.name == "light:light.pt"


def test_onnx_cache_key_includes_the_export_version(tmp_path, monkeypatch):
    """A change of what gets exported (e.g. DAN's fused attention) must not reuse stale cached files."""
    from fer_perception.runtime import frame_models as fm

    path, _ = _light_ckpt(tmp_path)
    first, _ = fm.cached_onnx("light", str(path))
    monkeypatch.setattr(fm, "ONNX_EXPORT_VERSION", fm.ONNX_EXPORT_VERSION + 1)
    second, _ = fm.cached_onnx("light", str(path))
    assert first != second
    # the stale export of the same weights is removed (DAN's are ~100 MB); other weights' exports stay, and
    # files of the earlier naming scheme go
    assert os.path.isfile(second) and not os.path.exists(first)
    cache = os.path.dirname(second)
    other = os.path.join(cache, "light-0123456789ab-0123456789ab.onnx")
    legacy = os.path.join(cache, "light-0123456789abcdef0123.onnx")
    for p in (other, legacy):
        open(p, "wb").close()
    monkeypatch.setattr(fm, "ONNX_EXPORT_VERSION", fm.ONNX_EXPORT_VERSION + 2)
    third, _ = fm.cached_onnx("light", str(path))
    assert os.path.isfile(third) and not os.path.exists(second)
    assert os.path.exists(other) and not os.path.exists(legacy)


def test_dan_onnx_export_uses_the_fused_heads(tmp_path):
    import onnx

    from fer_perception.models.dan import DAN

    torch.manual_seed(0)
    ckpt = tmp_path / "rafdb_small.pth"
    torch.save({"iter": 0, "model_state_dict": DAN(7, num_head=2).eval().state_dict(), "optimizer_state_dict": {}},
               ckpt)
    from fer_perception.runtime import frame_models as fm

    loaded = fm.load_torch_model("dan", str(ckpt))
    assert hasattr(loaded.module.dan.cat_head0.sa, "conv_1x3")  # the torch backend keeps the official model
    onnx_path, _ = fm.cached_onnx("dan", str(ckpt))
    nodes = onnx.load(onnx_path).graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]
    # ResNet-18 trunk (20 convs; the 9 stride-1 3x3 convs of layer2-4 as Winograd: input transform, grouped
    # products, transposed-conv output transform) + one 1x1 conv and one grouped 3x3 conv for all heads
    # (unfused heads: 4 convs per head)
    assert len(convs) == 20 + 9 + 2
    assert len([n for n in nodes if n.op_type == "ConvTranspose"]) == 9
    groups = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in convs]
    assert groups.count(36) == 3 and groups.count(16) == 6 and groups[-1] == 2
    assert not [n for n in nodes if n.op_type == "BatchNormalization"]  # all folded


def test_preprocess_lookup_table_is_bit_identical_to_per_pixel_normalisation():
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)]
    p = Preprocess(size=40, color="rgb", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    x = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1.0 / 255.0)
    ref = (x - np.float32(p.mean).reshape(1, 3, 1, 1)) / np.float32(p.std).reshape(1, 3, 1, 1)
    got = p(crops)
    assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, ref)
    p.mean = [0.0, 0.0, 0.0]  # the table follows changes of mean/std
    assert np.array_equal(p(crops), x / np.float32(p.std).reshape(1, 3, 1, 1))
