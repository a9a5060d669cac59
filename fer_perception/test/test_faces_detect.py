"""faces/detect.py: Haar detection on synthetic faces, YuNet through a tiny hand-made ONNX model, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.errors import ConfigError, ImageError
from fer_perception.faces.detect import (
    DETECTOR_NAMES,
    Detection,
    HaarFaceDetector,
    YuNetFaceDetector,
    make_detector,
)
from fer_perception.synth.faces import SyntheticFaceConfig, render_clip


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / (aw * ah + bw * bh - ix * iy)


@pytest.fixture(scope="module")
def scene():
    clip = render_clip("happy", seed=2, config=SyntheticFaceConfig.scene(n_frames=3))
    return clip.frames[1], clip.boxes[1]


@pytest.fixture(scope="module")
def haar():
    return HaarFaceDetector()


def test_haar_finds_the_synthetic_face(haar, scene):
    img, truth = scene
    dets = haar.detect(img)
    assert len(dets) == 1
    d = dets[0]
    assert isinstance(d, Detection) and d.box.dtype == np.float64 and d.box.shape == (4,)
    assert iou(d.box, truth) > 0.5
    assert 0.0 < d.score < 1.0 and d.landmarks is None
    roi = d.roi()
    assert abs(roi.x - d.box[0]) <= 0.5 and abs(roi.width - d.box[2]) <= 0.5


def test_haar_detection_rate_over_expressions():
    det = HaarFaceDetector()
    found = 0
    clips = [render_clip(e, seed=s, config=SyntheticFaceConfig.scene(n_frames=1))
             for s in (11, 13) for e in ("happy", "anger", "sadness", "disgust", "surprise")]
    for clip in clips:
        dets = det.detect(clip.frames[0])
        found += any(iou(d.box, clip.boxes[0]) > 0.5 for d in dets)
    assert found >= 8, f"found {found} of {len(clips)} faces"


def test_haar_grey_rgba_and_single_channel_inputs_agree(haar, scene):
    img, _ = scene
    ref = haar.detect(img)[0].box
    gray = (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]).round().astype(np.uint8)
    for variant in (gray, gray[..., None], np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], 2)):
        dets = haar.detect(variant)
        assert len(dets) == 1 and iou(dets[0].box, ref) > 0.9


def test_haar_downscaling_maps_boxes_back(scene):
    img, truth = scene
    fast = HaarFaceDetector(max_width=320).detect(img)
    full = HaarFaceDetector(max_width=0).detect(img)
    assert len(fast) == 1 and len(full) == 1
    assert iou(fast[0].box, full[0].box) > 0.7
    assert iou(fast[0].box, truth) > 0.5


def test_haar_nothing_in_blank_noise_and_tiny_images(haar):
    rng = np.random.default_rng(0)
    assert haar.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert haar.detect(rng.integers(0, 256, (240, 320), dtype=np.uint8)) == []
    assert haar.detect(np.zeros((10, 10, 3), np.uint8)) == []
    assert haar.detect(np.zeros((1, 1), np.uint8)) == []


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
        (np.zeros((64, 64, 2), np.uint8), "channels"),
        (np.zeros((2, 64, 64, 3), np.uint8), "shape"),
        ("image.png", "numpy array"),
    ],
)
def test_haar_bad_input_raises_image_error(haar, bad, match):
    with pytest.raises(ImageError, match=match):
        haar.detect(bad)


def test_haar_filters(scene):
    img, _ = scene
    assert HaarFaceDetector(min_score=0.999).detect(img) == []
    assert HaarFaceDetector(min_size=400).detect(img) == []
    two = np.concatenate([img, img], axis=1)
    both = HaarFaceDetector(max_width=640).detect(two)
    assert len(both) == 2
    assert len(HaarFaceDetector(max_width=640, max_faces=1).detect(two)) == 1
    assert both[0].score >= both[1].score


def test_haar_config_errors():
    with pytest.raises(ConfigError, match="not found"):
        HaarFaceDetector(cascade="no_such_cascade.xml")
    with pytest.raises(ConfigError, match="scale_factor"):
        HaarFaceDetector(scale_factor=1.0)
    with pytest.raises(ConfigError, match="min_size"):
        HaarFaceDetector(min_size=0)


def test_make_detector():
    assert set(DETECTOR_NAMES) == {"haar", "yunet"}
    d = make_detector("Haar", min_neighbors=2)
    assert isinstance(d, HaarFaceDetector) and d.min_neighbors == 2
    assert isinstance(make_detector("auto", model_path=""), HaarFaceDetector)
    with pytest.raises(ConfigError, match="unknown face detector 'mtcnn'"):
        make_detector("mtcnn")
    with pytest.raises(ConfigError, match="bad parameter"):
        make_detector("haar", threshold=3)


# --- YuNet with a hand-made ONNX model that has YuNet's outputs -----------------------------------------------

KPS = np.array([0.25, 0.25, 0.75, 0.25, 0.5, 0.5, 0.3, 0.8, 0.7, 0.8], np.float32)


def _fake_yunet(path: str) -> None:
    """A model with YuNet's 12 outputs whose 'face' score per cell is the cell's mean brightness.

    cls = obj = mean grey level / 255 pooled over each stride cell; bbox = (0.5, 0.5, 0, 0): one stride-sized
    box centred on the cell; kps = fixed fractions of the cell. A white 8x8 block aligned to the stride-8 grid
    is thus one face of score 1 with known landmarks (the stride-16/32 cells score at most 0.25).
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outs = [], [], []
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])
    nodes.append(helper.make_node("ReduceMean", ["input"], ["gray"], axes=[1], keepdims=1))
    inits += [
        numpy_helper.from_array(np.array(1 / 255.0, np.float32), "k255"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([0.5, 0.5, 0.0, 0.0], np.float32).reshape(1, 4, 1, 1), "bconst"),
        numpy_helper.from_array(KPS.reshape(1, 10, 1, 1), "kconst"),
    ]
    inits += [numpy_helper.from_array(np.array([1, -1, n], np.int64), f"shape{n}") for n in (1, 4, 10)]
    nodes.append(helper.make_node("Mul", ["gray", "k255"], ["g01"]))
    widths = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    for s in (8, 16, 32):
        nodes.append(helper.make_node("AveragePool", ["g01"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]))
        nodes.append(helper.make_node("Mul", [f"p{s}", "zero"], [f"z{s}"]))
        for kind, src in (("cls", f"p{s}"), ("obj", f"p{s}"), ("bbox", "bconst"), ("kps", "kconst")):
            t = src
            if kind in ("bbox", "kps"):
                t = f"{kind}a{s}"
                nodes.append(helper.make_node("Add", [f"z{s}", src], [t]))
            nodes.append(helper.make_node("Transpose", [t], [f"{kind}t{s}"], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [f"{kind}t{s}", f"shape{widths[kind]}"], [f"{kind}_{s}"]))
    for kind in ("cls", "obj", "bbox", "kps"):
        for s in (8, 16, 32):
            outs.append(helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [1, None, widths[kind]]))
    model = helper.make_model(helper.make_graph(nodes, "fake_yunet", [inp], outs, inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def fake_yunet_path(tmp_path_factory):
    import cv2

    if tuple(int(v) for v in cv2.__version__.split(".")[:2]) < (4, 8):
        pytest.skip("OpenCV < 4.8 decodes the older YuNet (2022mar) output layout")
    path = str(tmp_path_factory.mktemp("yunet") / "fake_yunet.onnx")
    _fake_yunet(path)
    return path


def test_yunet_decodes_boxes_landmarks_and_scores(fake_yunet_path):
    det = YuNetFaceDetector(fake_yunet_path, score_threshold=0.7)
    img = np.zeros((100, 120, 3), np.uint8)
    img[40:48, 64:72] = 255
    dets = det.detect(img)
    assert len(dets) == 1
    d = dets[0]
    np.testing.assert_allclose(d.box, [64, 40, 8, 8], atol=1e-4)
    assert d.score == pytest.approx(1.0)
    expected = np.array([64, 40]) + KPS.reshape(5, 2) * 8
    np.testing.assert_allclose(d.landmarks, expected, atol=1e-4)
    # input size follows the image; grey input works; nothing bright -> nothing found
    assert len(det.detect(np.pad(img[:, :, 0], ((0, 50), (0, 70))))) == 1
    assert det.detect(np.zeros((64, 64, 3), np.uint8)) == []


def test_yunet_downscaling_maps_back(fake_yunet_path):
    img = np.zeros((200, 240, 3), np.uint8)
    img[32:48, 64:80] = 255  # 16x16 block -> 8x8 at half scale, aligned to the stride-8 grid
    det = YuNetFaceDetector(fake_yunet_path, score_threshold=0.7, max_width=120)
    dets = det.detect(img)
    assert len(dets) == 1
    np.testing.assert_allclose(dets[0].box, [64, 32, 16, 16], atol=1e-3)
    np.testing.assert_allclose(dets[0].landmarks[2], [72, 40], atol=1e-3)  # nose tip at the block centre


def test_yunet_errors(tmp_path):
    with pytest.raises(ConfigError, match="face_detection_yunet_2023mar.onnx"):
        YuNetFaceDetector(str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    with pytest.raises(ConfigError, match="could not load the YuNet model"):
        YuNetFaceDetector(str(bad))
    with pytest.raises(ConfigError, match="score_threshold"):
        make_detector("yunet", model_path=str(bad), score_threshold=2.0)


def test_make_detector_auto_picks_yunet(fake_yunet_path):
    assert isinstance(make_detector("auto", model_path=fake_yunet_path), YuNetFaceDetector)


def test_cascade_found_in_system_dirs_without_cv2_data(tmp_path, monkeypatch, scene):
    """Ubuntu's python3-opencv has no cv2.data: the cascades are looked up in /usr/share/opencv4/... too."""
    import shutil

    import cv2

    import fer_perception.faces.detect as detect

    src = HaarFaceDetector().path
    shutil.copy(src, tmp_path / "haarcascade_frontalface_alt2.xml")
    monkeypatch.delattr(cv2, "data", raising=False)
    monkeypatch.setattr(detect, "_SYSTEM_CASCADE_DIRS", (str(tmp_path / "nowhere"), str(tmp_path)))
    det = HaarFaceDetector()
    assert det.path == str(tmp_path / "haarcascade_frontalface_alt2.xml")
    assert len(det.detect(scene[0])) == 1
    with pytest.raises(ConfigError, match="nowhere"):
        HaarFaceDetector(cascade="haarcascade_eye_missing.xml")
