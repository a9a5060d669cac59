"""images.py: every sensor_msgs/Image encoding against known pixel values, padding, endianness, errors."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from fer_perception.errors import (
    DecodeError,
    ImageError,
    TruncatedMessageError,
    UnknownEncodingError,
)
from fer_perception.images import (
    SUPPORTED_ENCODINGS,
    TruncatedImageError,
    UnsupportedImageEncodingError,
    check_image,
    decode_compressed,
    encode_compressed,
    image_from_msg,
    image_from_ros,
    image_to_ros_fields,
    to_gray,
    to_rgb,
)

# a 2x3 RGB image with distinct values in every channel
RGB = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [200, 100, 50], [7, 8, 9]]], dtype=np.uint8
)


def _pad_rows(rows: np.ndarray, pad: int) -> bytes:
    """Row bytes with ``pad`` garbage bytes after every row."""
    h = rows.shape[0]
    flat = rows.reshape(h, -1)
    junk = np.full((h, pad), 0xEE, np.uint8)
    return np.concatenate([flat, junk], axis=1).tobytes()


@pytest.mark.parametrize(
    "encoding, pixels",
    [
        ("rgb8", RGB),
        ("bgr8", RGB[:, :, ::-1]),
        ("rgba8", np.concatenate([RGB, np.full((2, 3, 1), 128, np.uint8)], axis=2)),
        ("bgra8", np.concatenate([RGB[:, :, ::-1], np.full((2, 3, 1), 7, np.uint8)], axis=2)),
        ("8UC3", RGB[:, :, ::-1]),
    ],
)
@pytest.mark.parametrize("pad", [0, 5])
def test_colour_8bit_encodings(encoding, pixels, pad):
    h, w, c = pixels.shape
    data = _pad_rows(np.ascontiguousarray(pixels), pad)
    out = image_from_ros(encoding, h, w, w * c + pad, data)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, RGB)
    assert out.flags.writeable and out.flags.c_contiguous


def test_mono8_expands_or_keeps():
    mono = np.array([[0, 50, 255], [1, 2, 3]], np.uint8)
    data = _pad_rows(mono, 1)
    rgb = image_from_ros("mono8", 2, 3, 4, data)
    np.testing.assert_array_equal(rgb, np.repeat(mono[:, :, None], 3, axis=2))
    kept = image_from_ros("mono8", 2, 3, 4, data, keep_mono=True)
    np.testing.assert_array_equal(kept, mono)
    assert kept.flags.writeable


@pytest.mark.parametrize("big", [False, True])
def test_mono16_scaled_and_endianness(big):
    vals = np.array([[0, 255, 256, 4095], [32768, 65535, 512, 1000]], np.uint16)
    data = vals.astype(">u2" if big else "<u2").tobytes()
    out = image_from_ros("mono16", 2, 4, 8, data, is_bigendian=big, keep_mono=True)
    np.testing.assert_array_equal(out, (vals >> 8).astype(np.uint8))
    # a 12-bit sensor: value >> 4, saturating
    out12 = image_from_ros("mono16", 2, 4, 8, data, is_bigendian=big, keep_mono=True, mono16_bits=12)
    np.testing.assert_array_equal(out12, np.minimum(vals >> 4, 255).astype(np.uint8))


def test_mono16_wrong_endianness_gives_swapped_bytes():
    vals = np.array([[0x1234]], np.uint16)
    out = image_from_ros("mono16", 1, 1, 2, vals.astype("<u2").tobytes(), is_bigendian=True, keep_mono=True)
    assert out[0, 0] == 0x34  # read as 0x3412 -> high byte 0x34


def test_rgb16_and_bgra16():
    vals16 = RGB.astype(np.uint16) * 257  # 255 -> 65535
    out = image_from_ros("rgb16", 2, 3, 18, vals16.astype("<u2").tobytes())
    np.testing.assert_array_equal(out, RGB)
    bgra = np.concatenate([vals16[:, :, ::-1], np.zeros((2, 3, 1), np.uint16)], axis=2)
    out = image_from_ros("bgra16", 2, 3, 24, bgra.astype(">u2").tobytes(), is_bigendian=True)
    np.testing.assert_array_equal(out, RGB)


# BT.601 limited range (Y 16..235): (Y, U, V) -> RGB
YUV_KNOWN = [
    ((16, 128, 128), (0, 0, 0)),
    ((235, 128, 128), (255, 255, 255)),
    ((126, 128, 128), (128, 128, 128)),
    ((81, 90, 240), (255, 0, 0)),
    ((145, 54, 34), (0, 255, 0)),
    ((41, 240, 110), (0, 0, 255)),
]


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuyv", "yuv422_yuy2"])
def test_yuv422_known_colours(encoding):
    # one row of 2*len(YUV_KNOWN) pixels: each known colour fills a pixel pair
    row = []
    for (y, u, v), _ in YUV_KNOWN:
        row += [u, y, v, y] if encoding in ("yuv422", "uyvy") else [y, u, y, v]
    line = np.array(row, np.uint8)
    w = 2 * len(YUV_KNOWN)
    data = _pad_rows(np.stack([line, line]), 4)
    out = image_from_ros(encoding, 2, w, 2 * w + 4, data)
    assert out.shape == (2, w, 3)
    expected = np.repeat(np.array([rgb for _, rgb in YUV_KNOWN], np.int16), 2, axis=0)
    np.testing.assert_allclose(out[0].astype(np.int16), expected, atol=3)
    np.testing.assert_array_equal(out[0], out[1])


def test_yuyv_and_uyvy_differ_in_byte_order():
    data = bytes([90, 81, 240, 81])  # UYVY red pair
    red = image_from_ros("uyvy", 1, 2, 4, data)
    other = image_from_ros("yuyv", 1, 2, 4, data)
    assert red[0, 0, 0] > 250 and red[0, 0, 1] < 5
    assert not np.array_equal(red, other)


def test_odd_width_yuv_rejected():
    with pytest.raises(ImageError, match="odd width"):
        image_from_ros("yuyv", 1, 3, 6, bytes(6))


@pytest.mark.parametrize("container", [bytes, bytearray, lambda b: array.array("B", b),
                                       lambda b: np.frombuffer(b, np.uint8), list])
def test_data_containers(container):
    raw = RGB.tobytes()
    out = image_from_ros("rgb8", 2, 3, 9, container(raw))
    np.testing.assert_array_equal(out, RGB)


def test_last_row_without_padding_tolerated():
    data = _pad_rows(RGB, 3)[:-3]
    np.testing.assert_array_equal(image_from_ros("rgb8", 2, 3, 12, data), RGB)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaics_demosaic_to_the_scene_colour(pattern):
    h, w = 8, 10
    colour = np.array([200, 100, 30], np.uint8)
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.zeros((h, w), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = colour[channel[pattern[2 * dy + dx]]]
    out = image_from_ros(f"bayer_{pattern}8", h, w, w + 2, _pad_rows(mosaic, 2))
    assert out.shape == (h, w, 3)
    np.testing.assert_array_equal(out[2:-2, 2:-2], np.broadcast_to(colour, (h - 4, w - 4, 3)))
    same = image_from_ros(f"bayer_{pattern}8", h, w, w, mosaic.tobytes(), keep_mono=True)  # not a mono encoding
    np.testing.assert_array_equal(same, out)


def test_unknown_encoding_named():
    with pytest.raises(UnsupportedImageEncodingError, match="bayer_rggb16") as info:
        image_from_ros("bayer_rggb16", 2, 2, 4, bytes(8))
    assert isinstance(info.value, UnknownEncodingError) and isinstance(info.value, ImageError)


def test_truncated_data():
    with pytest.raises(TruncatedImageError, match="needs 18 bytes of data, got 17") as info:
        image_from_ros("rgb8", 2, 3, 9, RGB.tobytes()[:-1])
    assert isinstance(info.value, TruncatedMessageError) and isinstance(info.value, DecodeError)
    with pytest.raises(TruncatedImageError, match="step 8 is shorter than one row"):
        image_from_ros("rgb8", 2, 3, 8, RGB.tobytes())


@pytest.mark.parametrize("h, w", [(0, 3), (3, 0), (-1, 2)])
def test_empty_sizes(h, w):
    with pytest.raises(ImageError, match="empty image"):
        image_from_ros("rgb8", h, w, 9, bytes(18))


def test_supported_list_decodes():
    for enc in SUPPORTED_ENCODINGS:
        image_from_ros(enc, 2, 2, 16, bytes(32))


# --- compressed ---------------------------------------------------------------------------------------------

def _photo(h=48, w=64):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 4 % 256, yy * 5 % 256, (xx + yy) * 2 % 256], axis=2).astype(np.uint8)


def test_png_roundtrip_exact_rgb_order():
    img = _photo()
    fmt, data = encode_compressed(img, "png")
    assert "png" in fmt
    out = decode_compressed("png", data)
    np.testing.assert_array_equal(out, img)
    # written with OpenCV directly (BGR in, as a camera driver would): we must return RGB
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    np.testing.assert_array_equal(decode_compressed("bgr8; png compressed bgr8", buf.tobytes()), img)


def test_jpeg_decodes_close_and_formats_accepted():
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :, 0] = 220  # red
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    for fmt in ("jpeg", "JPEG", "jpg", "rgb8; jpeg compressed bgr8", ""):
        out = decode_compressed(fmt, buf.tobytes())
        assert out.shape == (32, 32, 3)
        assert abs(int(out[16, 16, 0]) - 220) <= 4 and out[16, 16, 1] < 8 and out[16, 16, 2] < 8


def test_compressed_gray_and_16bit_png():
    gray = _photo()[:, :, 0]
    ok, buf = cv2.imencode(".png", gray)
    out = decode_compressed("mono8; png compressed mono8", buf.tobytes())
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(decode_compressed("png", buf.tobytes(), keep_mono=True), gray)
    g16 = gray.astype(np.uint16) * 256 + 77
    ok, buf = cv2.imencode(".png", g16)
    np.testing.assert_array_equal(decode_compressed("png", buf.tobytes(), keep_mono=True), gray)


def test_compressed_errors():
    ok, png = cv2.imencode(".png", _photo())
    with pytest.raises(UnsupportedImageEncodingError, match="compressedDepth"):
        decode_compressed("16UC1; compressedDepth png", png.tobytes())
    with pytest.raises(UnsupportedImageEncodingError, match="webp"):
        decode_compressed("webp", png.tobytes())
    with pytest.raises(ImageError, match="says jpeg but the data is png"):
        decode_compressed("jpeg", png.tobytes())
    with pytest.raises(ImageError, match="empty"):
        decode_compressed("png", b"")
    with pytest.raises(ImageError, match="signature"):
        decode_compressed("png", b"hello world")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_compressed("png", png.tobytes()[:40])


# --- back to ROS and validation -----------------------------------------------------------------------------

def test_image_to_ros_fields_roundtrip():
    f = image_to_ros_fields(RGB)
    assert f["encoding"] == "rgb8" and (f["height"], f["width"], f["step"]) == (2, 3, 9)
    assert isinstance(f["data"], bytes) and len(f["data"]) == 18
    back = image_from_ros(f["encoding"], f["height"], f["width"], f["step"], f["data"])
    np.testing.assert_array_equal(back, RGB)
    m = image_to_ros_fields(RGB[:, :, 0])
    assert m["encoding"] == "mono8" and m["step"] == 3
    # a non-contiguous view is serialised correctly
    f2 = image_to_ros_fields(RGB[:, ::-1])
    np.testing.assert_array_equal(image_from_ros("rgb8", 2, 3, 9, f2["data"]), RGB[:, ::-1])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 4, 3), np.float32), "must be uint8"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((4,), np.uint8), "must be"),
        ([[1, 2]], "numpy array"),
    ],
)
def test_check_image_rejects(bad, match):
    with pytest.raises(ImageError, match=match):
        check_image(bad)


def test_check_image_accepts_and_converts():
    rgba = np.concatenate([RGB, np.zeros((2, 3, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(check_image(rgba), RGB)
    assert check_image(RGB[:, :, :1]).shape == (2, 3)
    assert to_rgb(RGB[:, :, 0]).shape == (2, 3, 3)
    g = to_gray(RGB)
    assert g.shape == (2, 3) and g[0, 1] > g[0, 2]  # green is brighter than blue in luma


def test_image_from_msg_dispatches():
    from types import SimpleNamespace

    raw = SimpleNamespace(encoding="bgr8", height=2, width=3, step=9, is_bigendian=0, data=RGB[:, :, ::-1].tobytes())
    np.testing.assert_array_equal(image_from_msg(raw), RGB)
    ok, buf = cv2.imencode(".png", RGB[:, :, ::-1])
    comp = SimpleNamespace(format="png", data=np.frombuffer(buf.tobytes(), np.uint8))
    np.testing.assert_array_equal(image_from_msg(comp), RGB)
    with pytest.raises(ImageError, match="neither"):
        image_from_msg(SimpleNamespace(encoding="rgb8"))
