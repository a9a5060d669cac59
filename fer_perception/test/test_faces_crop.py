"""faces/crop.py: exact crops, border padding, resizing, eye alignment, the event path's nose-centred square."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from fer_perception.errors import ConfigError, ImageError
from fer_perception.faces.crop import (
    FERDVS_SIDE_SCALE,
    NOSE_Y,
    crop_face,
    crop_faces,
    expand_box,
    eye_angle,
    ferdvs_landmark_box,
    nose_centred_square,
)


@pytest.fixture(scope="module")
def img():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_exact_crop_at_native_size(img):
    out = crop_face(img, (10, 20, 30, 40), margin=0, size=(30, 40), square=False)
    np.testing.assert_array_equal(out, img[20:60, 10:40])
    assert out.flags.writeable and not np.shares_memory(out, img)


def test_expand_box():
    np.testing.assert_allclose(expand_box((10, 20, 30, 40), margin=0.0, square=True), [5, 20, 40, 40])
    np.testing.assert_allclose(expand_box((0, 0, 100, 50), margin=0.1, square=False), [-10, -5, 120, 60])
    with pytest.raises(ConfigError, match="margin"):
        expand_box((0, 0, 10, 10), margin=-0.6)


@pytest.mark.parametrize("border", ["constant", "replicate", "reflect"])
def test_border_padding_at_image_edges(img, border):
    out = crop_face(img, (-10, -5, 30, 20), margin=0, size=(30, 20), square=False, border=border, border_value=7)
    np.testing.assert_array_equal(out[5:, 10:], img[0:15, 0:20])
    if border == "constant":
        assert np.all(out[:5] == 7) and np.all(out[:, :10] == 7)
    elif border == "replicate":
        np.testing.assert_array_equal(out[5:, 0], img[0:15, 0])
        np.testing.assert_array_equal(out[0, 10:], img[0, 0:20])
    else:  # reflect-101: pixel -k mirrors pixel k
        np.testing.assert_array_equal(out[5:, 9], img[0:15, 1])
        np.testing.assert_array_equal(out[4, 10:], img[1, 0:20])
    # bottom-right corner too
    out = crop_face(img, (150, 110, 20, 20), margin=0, size=(20, 20), square=False, border=border, border_value=7)
    np.testing.assert_array_equal(out[:10, :10], img[110:120, 150:160])


def test_box_completely_outside(img):
    out = crop_face(img, (500, 500, 20, 20), margin=0, size=(8, 8))
    assert out.shape == (8, 8, 3) and not out.any()
    rep = crop_face(img, (500, 500, 20, 20), margin=0, size=(8, 8), border="replicate")
    assert np.all(rep == img[-1, -1])


def test_resize_area_and_linear_and_square():
    flat = np.zeros((200, 300, 3), np.uint8)
    flat[50:150, 100:200] = (200, 100, 50)
    out = crop_face(flat, (100, 50, 100, 100), margin=0, size=(32, 32))  # shrink
    assert out.shape == (32, 32, 3) and np.all(out == (200, 100, 50))
    out = crop_face(flat, (120, 70, 20, 20), margin=0, size=224)  # enlarge
    assert out.shape == (224, 224, 3) and np.all(out == (200, 100, 50))
    # a tall box is squared around its centre: the crop spans the full height and as much width
    out = crop_face(flat, (140, 50, 20, 100), margin=0, size=(100, 100))
    assert np.all(out == (200, 100, 50))
    wide = crop_face(flat, (140, 50, 20, 100), margin=0, size=(20, 100), square=False)
    assert wide.shape == (100, 20, 3)


def _tilted_eyes_image(angle_deg: float, centre=(160, 120), half=40):
    """Two dark dots (eyes) on a grey image, the line through them tilted by ``angle_deg`` (y down)."""
    img = np.full((240, 320, 3), 180, np.uint8)
    a = math.radians(angle_deg)
    d = np.array([math.cos(a), math.sin(a)]) * half
    eyes = np.array([np.array(centre) - d, np.array(centre) + d])
    for e in eyes:
        cv2.circle(img, (int(round(e[0])), int(round(e[1]))), 6, (0, 0, 0), -1, cv2.LINE_AA)
    # a mouth below the eye midpoint, perpendicular to the eye line
    n = np.array([-math.sin(a), math.cos(a)]) * 60
    m = np.array(centre) + n
    cv2.circle(img, (int(round(m[0])), int(round(m[1]))), 10, (0, 0, 0), -1, cv2.LINE_AA)
    lm = np.array([eyes[1], eyes[0], centre, m + d / 2, m - d / 2])  # right eye first (on the image right here)
    return img, lm


def _blob_centres(gray: np.ndarray):
    n, _, stats, cents = cv2.connectedComponentsWithStats((gray < 90).astype(np.uint8))
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA])
    return cents[1:][order]


@pytest.mark.parametrize("angle", [20.0, -35.0])
@pytest.mark.parametrize("out_size", [160, 40])  # 40: the >2x shrink path
def test_eye_alignment_levels_the_eyes(angle, out_size):
    img, lm = _tilted_eyes_image(angle)
    assert eye_angle(lm) == pytest.approx(angle, abs=0.01)
    box = (100, 60, 120, 150)
    plain = crop_face(img, box, margin=0.1, size=out_size)
    aligned = crop_face(img, box, margin=0.1, size=out_size, align=True, landmarks=lm, border="replicate")
    assert aligned.shape == (out_size, out_size, 3)
    g = aligned[:, :, 0]
    blobs = _blob_centres(g)
    mouth, eyes = blobs[0], blobs[1:3]  # the mouth is the biggest blob
    assert abs(eyes[0][1] - eyes[1][1]) < 0.03 * out_size, "eyes must be level after alignment"
    assert mouth[1] > eyes[:, 1].max(), "mouth below the eyes"
    assert abs(mouth[0] - eyes[:, 0].mean()) < 0.03 * out_size, "mouth under the eye midpoint"
    pe = _blob_centres(plain[:, :, 0])[1:3]
    assert abs(pe[0][1] - pe[1][1]) > 0.1 * out_size  # without alignment they are not


def test_align_without_tilt_or_landmarks_is_the_plain_crop(img):
    lm = np.array([[50, 60], [90, 60], [70, 75], [55, 90], [85, 90]], float)
    a = crop_face(img, (40, 40, 60, 60), size=64, align=True, landmarks=lm)
    b = crop_face(img, (40, 40, 60, 60), size=64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(crop_face(img, (40, 40, 60, 60), size=64, align=True), b)


def test_rotated_crop_pads_at_the_border():
    img = np.full((100, 100, 3), 255, np.uint8)
    lm = np.array([[10, 10], [30, 20], [20, 20], [15, 30], [25, 30]], float)
    out = crop_face(img, (-20, -20, 60, 60), margin=0, size=64, align=True, landmarks=lm)
    assert out.shape == (64, 64, 3)
    assert (out == 0).all(axis=2).mean() > 0.3 and (out == 255).all(axis=2).mean() > 0.2


def test_crop_faces_batches_and_mono(img):
    boxes = [(10, 10, 40, 40), (100, 50, 50, 60), (-5, 100, 30, 30)]
    out = crop_faces(img, boxes, size=(48, 32))
    assert out.shape == (3, 32, 48, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], crop_face(img, boxes[1], size=(48, 32)))
    assert crop_faces(img, [], size=16).shape == (0, 16, 16, 3)
    mono = crop_faces(img[:, :, 0], boxes, size=16)
    assert mono.shape == (3, 16, 16)
    with pytest.raises(ConfigError, match="landmark sets"):
        crop_faces(img, boxes, landmarks=[None])


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"box": (0, 0, 0, 10)}, ConfigError, "w, h > 0"),
        ({"box": (0, 0, np.nan, 10)}, ConfigError, "finite"),
        ({"box": (0, 0, 10)}, ConfigError, "face box"),
        ({"border": "wrap"}, ConfigError, "unknown border"),
        ({"size": (0, 10)}, ConfigError, "crop size"),
        ({"image": np.zeros((10, 10), np.float64)}, ImageError, "uint8"),
    ],
)
def test_crop_errors(img, kwargs, err, match):
    args = {"image": img, "box": (10, 10, 20, 20)}
    args.update(kwargs)
    with pytest.raises(err, match=match):
        crop_face(**args)


def test_nose_centred_square():
    box = (100, 50, 80, 100)
    sq = nose_centred_square(box)
    side = FERDVS_SIDE_SCALE * 100
    np.testing.assert_allclose(sq, [140 - side / 2, 50 + NOSE_Y * 100 - side / 2, side, side])
    lm = np.array([[120, 90], [160, 90], [137, 118], [125, 135], [155, 135]], float)
    sq = nose_centred_square(box, landmarks=lm, scale=1.0)
    np.testing.assert_allclose(sq[:2] + sq[2:] / 2, [137, 118])
    assert sq[2] == sq[3] == 100
    with pytest.raises(ConfigError, match="nose tip"):
        nose_centred_square(box, landmarks=np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="scale"):
        nose_centred_square(box, scale=0)


def test_nose_centred_square_on_synthetic_faces():
    """Centred on the true nose within a few percent of the face size, for detected synthetic faces."""
    from fer_perception.faces.detect import HaarFaceDetector
    from fer_perception.synth.faces import SyntheticFaceConfig, render_clip

    det = HaarFaceDetector()
    errs = []
    for seed in (1, 2, 3):
        clip = render_clip("anger", seed=seed, config=SyntheticFaceConfig.scene(n_frames=1))
        d = det.detect(clip.frames[0])
        assert d
        sq = nose_centred_square(d[0].box)
        errs.append(np.abs(sq[:2] + sq[2:] / 2 - clip.nose[0]) / d[0].box[3])
    assert np.max(errs) < 0.06


def test_ferdvs_landmark_box():
    b = ferdvs_landmark_box(eye_distance=60, nose_length=45, nose_tip=(100, 120))
    np.testing.assert_allclose(b, [100 - 40, 120 - 30, 80, 60])
    with pytest.raises(ConfigError):
        ferdvs_landmark_box(0, 10, (0, 0))
