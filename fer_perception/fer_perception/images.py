"""Images without cv_bridge: ``sensor_msgs/Image`` and ``CompressedImage`` fields to numpy RGB, and back.

The core works on ``uint8`` RGB ``(H, W, 3)`` arrays (or mono ``(H, W)``). This module is the only place that
knows ROS image encodings:

- raw: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``rgb16``, ``bgr16``, ``rgba16``, ``bgra16``, ``mono8``,
  ``mono16`` (16-bit data scaled to 8 bit), ``8UC1``/``8UC3``/``8UC4`` (read as mono8/bgr8/bgra8 like
  cv_bridge), ``yuv422``/``uyvy`` (U Y0 V Y1) and ``yuyv``/``yuv422_yuy2`` (Y0 U Y1 V), BT.601 limited range,
  and the 8-bit Bayer mosaics ``bayer_rggb8``, ``bayer_bggr8``, ``bayer_gbrg8``, ``bayer_grbg8`` (demosaiced).
  Row padding (``step``) and the byte order of 16-bit data (``is_bigendian``) are respected.
- compressed: JPEG and PNG (``format`` as image_transport writes it: ``"jpeg"``, ``"png"``,
  ``"rgb8; jpeg compressed bgr8"``); ``compressedDepth`` is refused.

Every refusal raises :class:`ImageError`; unknown encodings raise :class:`UnsupportedImageEncodingError`
(also an :class:`~fer_perception.errors.UnknownEncodingError`), short buffers :class:`TruncatedImageError`
(also a :class:`~fer_perception.errors.TruncatedMessageError`).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import cv2
import numpy as np

from fer_perception.errors import ImageError, TruncatedMessageError, UnknownEncodingError

__all__ = [
    "SUPPORTED_ENCODINGS",
    "UnsupportedImageEncodingError",
    "TruncatedImageError",
    "image_from_ros",
    "image_from_msg",
    "decode_compressed",
    "encode_compressed",
    "image_to_ros_fields",
    "check_image",
    "to_rgb",
    "to_gray",
]


class UnsupportedImageEncodingError(UnknownEncodingError, ImageError):
    """A ``sensor_msgs/Image`` encoding or ``CompressedImage`` format this module does not decode."""


class TruncatedImageError(TruncatedMessageError, ImageError):
    """The image data is shorter than ``step * height`` (or ``step`` is shorter than one row)."""


# encoding -> (channels in the buffer, bytes per channel, channel order of colour data)
_RAW: Dict[str, Tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"),
    "bgr8": (3, 1, "bgr"),
    "rgba8": (4, 1, "rgb"),
    "bgra8": (4, 1, "bgr"),
    "rgb16": (3, 2, "rgb"),
    "bgr16": (3, 2, "bgr"),
    "rgba16": (4, 2, "rgb"),
    "bgra16": (4, 2, "bgr"),
    "mono8": (1, 1, "mono"),
    "mono16": (1, 2, "mono"),
    "8uc1": (1, 1, "mono"),
    "8uc3": (3, 1, "bgr"),
    "8uc4": (4, 1, "bgr"),
    "16uc1": (1, 2, "mono"),
}
# packed 4:2:2 encodings -> OpenCV conversion code (input (H, W, 2) uint8)
_YUV422: Dict[str, int] = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}
# 8-bit Bayer mosaics (ROS names the top-left 2x2 cell; OpenCV names the second row's cell, as cv_bridge maps)
_BAYER: Dict[str, int] = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}
SUPPORTED_ENCODINGS: Tuple[str, ...] = (
    "rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16", "mono8", "mono16",
    "8UC1", "8UC3", "8UC4", "16UC1", "yuv422", "uyvy", "yuyv", "yuv422_yuy2",
    "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
)

_MAX_SIDE = 1 << 15


def _as_bytes_view(data: Any, what: str) -> np.ndarray:
    """A flat ``uint8`` view of bytes, bytearray, memoryview, array.array or a numpy array (no copy if possible)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            data = np.ascontiguousarray(data).view(np.uint8)
        return data.reshape(-1)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError as exc:
        raise ImageError(f"{what} must be bytes-like or a uint8 array, got {type(data).__name__}") from exc


def _check_size(height: int, width: int) -> Tuple[int, int]:
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError) as exc:
        raise ImageError(f"image height/width must be integers, got {height!r} x {width!r}") from exc
    if h <= 0 or w <= 0:
        raise ImageError(f"empty image: height={h}, width={w}")
    if h > _MAX_SIDE or w > _MAX_SIDE:
        raise ImageError(f"image of {w}x{h} pixels is larger than the {_MAX_SIDE} pixels per side accepted")
    return h, w


def _rows(buf: np.ndarray, encoding: str, height: int, width: int, step: int, row_bytes: int) -> np.ndarray:
    """The ``(H, row_bytes)`` pixel bytes of a padded buffer, after checking ``step`` and the data length."""
    step = int(step)
    if step < row_bytes:
        raise TruncatedImageError(
            f"{encoding} image {width}x{height}: step {step} is shorter than one row ({row_bytes} bytes)"
        )
    need = step * (height - 1) + row_bytes
    if buf.size < need:
        raise TruncatedImageError(
            f"{encoding} image {width}x{height} (step {step}) needs {step * height} bytes of data, got {buf.size}"
        )
    if step == row_bytes:
        return buf[: height * row_bytes].reshape(height, row_bytes)
    if buf.size >= step * height:
        return buf[: step * height].reshape(height, step)[:, :row_bytes]
    # last row unpadded: tolerate it (some drivers omit the final padding)
    return np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))


def image_from_ros(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: Any,
    is_bigendian: bool = False,
    *,
    keep_mono: bool = False,
    mono16_bits: int = 16,
) -> np.ndarray:
    """Decode the fields of a ``sensor_msgs/Image`` into a writable ``uint8`` RGB ``(H, W, 3)`` array.

    Args:
        encoding: the message's encoding string (case-insensitive for the ``8UC*`` forms).
        height, width, step: as in the message; ``step`` may include row padding.
        data: the pixel bytes (bytes, bytearray, memoryview, array.array or a numpy array).
        is_bigendian: byte order of 16-bit encodings.
        keep_mono: return mono encodings as ``(H, W)`` instead of expanding them to three channels.
        mono16_bits: significant bits of 16-bit data (16: ``value >> 8``; 12 for a 12-bit sensor: ``value >> 4``,
            saturating).

    Raises:
        UnsupportedImageEncodingError: unknown encoding (named in the message).
        TruncatedImageError: ``data`` shorter than the image, or ``step`` shorter than a row.
        ImageError: empty or absurd sizes.
    """
    enc = str(encoding).strip()
    key = enc.lower()
    h, w = _check_size(height, width)
    buf = _as_bytes_view(data, "image data")
    if key in _YUV422:
        if w % 2:
            raise ImageError(f"{enc} image has odd width {w}: 4:2:2 data packs pixel pairs")
        rows = _rows(buf, enc, h, w, step, w * 2)
        return cv2.cvtColor(np.ascontiguousarray(rows).reshape(h, w, 2), _YUV422[key])
    if key in _BAYER:
        if w < 2 or h < 2:
            raise ImageError(f"{enc} image of {w}x{h} is smaller than one 2x2 Bayer cell")
        rows = _rows(buf, enc, h, w, step, w)
        return cv2.cvtColor(np.ascontiguousarray(rows), _BAYER[key])
    if key not in _RAW:
        raise UnsupportedImageEncodingError(
            f"unsupported image encoding {enc!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    channels, depth, order = _RAW[key]
    rows = _rows(buf, enc, h, w, step, w * channels * depth)
    if depth == 2:
        bits = int(mono16_bits)
        if not 8 <= bits <= 16:
            raise ImageError(f"mono16_bits must be within 8..16, got {bits}")
        words = np.ascontiguousarray(rows).view(">u2" if is_bigendian else "<u2").reshape(h, w, channels)
        shifted = words >> np.uint16(bits - 8)
        pix = np.minimum(shifted, 255).astype(np.uint8) if bits < 16 else shifted.astype(np.uint8)
    else:
        pix = rows.reshape(h, w, channels)
    if channels == 1:
        mono = np.array(pix[:, :, 0], dtype=np.uint8, copy=True)
        return mono if keep_mono else cv2.cvtColor(mono, cv2.COLOR_GRAY2RGB)
    if channels == 3 and order == "rgb":
        return np.array(pix, dtype=np.uint8, order="C", copy=True)
    # OpenCV swaps/drops channels about 10x faster than a strided numpy copy
    code = {
        (3, "bgr"): cv2.COLOR_BGR2RGB, (4, "bgr"): cv2.COLOR_BGRA2RGB, (4, "rgb"): cv2.COLOR_RGBA2RGB,
    }[(channels, order)]
    return cv2.cvtColor(np.ascontiguousarray(pix), code)


def image_from_msg(msg: Any, *, keep_mono: bool = False, mono16_bits: int = 16) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` message object (rclpy or rosbags).

    Anything with a ``format`` field is treated as a CompressedImage; otherwise the Image fields are read.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(msg.format, msg.data, keep_mono=keep_mono)
    try:
        return image_from_ros(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                              bool(getattr(msg, "is_bigendian", False)), keep_mono=keep_mono,
                              mono16_bits=mono16_bits)
    except AttributeError as exc:
        raise ImageError(f"{type(msg).__name__} is neither a sensor_msgs/Image nor a CompressedImage: {exc}") from exc


def _compressed_kind(fmt: str) -> str:
    """``"jpeg"``, ``"png"`` or ``""`` (unspecified: sniff the bytes) from a CompressedImage ``format``."""
    text = str(fmt).strip().lower()
    if "compresseddepth" in text:
        raise UnsupportedImageEncodingError(
            f"unsupported CompressedImage format {fmt!r}: compressedDepth (depth images) is not decoded"
        )
    tokens = text.replace(";", " ").split()
    if not tokens:
        return ""
    for tok in tokens:
        if tok in ("jpeg", "jpg"):
            return "jpeg"
        if tok == "png":
            return "png"
    raise UnsupportedImageEncodingError(f"unsupported CompressedImage format {fmt!r}; supported: jpeg, png")


def _sniff(buf: np.ndarray) -> str:
    head = bytes(buf[:8])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return ""


def decode_compressed(format: str, data: Any, *, keep_mono: bool = False) -> np.ndarray:  # noqa: A002
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) into ``uint8`` RGB ``(H, W, 3)``.

    ``format`` is the message field (``"jpeg"``, ``"png"``, ``"bgr8; jpeg compressed bgr8"``, or empty: the
    bytes decide). Grey images come back as RGB unless ``keep_mono``; 16-bit PNGs are scaled to 8 bit; alpha
    is dropped.

    Raises:
        UnsupportedImageEncodingError: a format other than jpeg/png (e.g. compressedDepth).
        ImageError: empty data, data that is not the announced format, or data OpenCV cannot decode.
    """
    kind = _compressed_kind(format)
    buf = _as_bytes_view(data, "compressed image data")
    if buf.size == 0:
        raise ImageError(f"empty CompressedImage data (format {format!r})")
    found = _sniff(buf)
    if kind and found and found != kind:
        raise ImageError(f"CompressedImage format says {kind} but the data is {found}")
    if not found:
        raise ImageError(
            f"CompressedImage data ({buf.size} bytes, format {format!r}) starts with neither a JPEG nor a PNG signature"
        )
    img = cv2.imdecode(np.ascontiguousarray(buf), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f"could not decode {found} data ({buf.size} bytes): corrupt or truncated")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"decoded {found} image has unsupported dtype {img.dtype}")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        mono = img.reshape(img.shape[0], img.shape[1])
        return mono if keep_mono else cv2.cvtColor(mono, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_compressed(image: np.ndarray, format: str = "jpeg", quality: int = 90) -> Tuple[str, bytes]:  # noqa: A002
    """Encode RGB or mono ``uint8`` as JPEG or PNG; returns ``(format field, bytes)`` for a CompressedImage."""
    img = check_image(image)
    kind = _compressed_kind(format) or "jpeg"
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, out = cv2.imencode("." + ("jpg" if kind == "jpeg" else "png"), bgr, params)
    if not ok:
        raise ImageError(f"OpenCV could not encode a {img.shape} image as {kind}")
    enc = "mono8" if img.ndim == 2 else "rgb8"
    return f"{enc}; {kind} compressed {'mono8' if img.ndim == 2 else 'bgr8'}", out.tobytes()


def image_to_ros_fields(image: np.ndarray) -> Dict[str, Any]:
    """The ``sensor_msgs/Image`` fields of an RGB (``rgb8``) or mono (``mono8``) ``uint8`` image.

    Returns ``dict(encoding, height, width, step, is_bigendian=0, data=bytes)``.
    """
    img = check_image(image)
    h, w = img.shape[:2]
    channels = 1 if img.ndim == 2 else 3
    return {
        "encoding": "mono8" if channels == 1 else "rgb8",
        "height": h,
        "width": w,
        "step": w * channels,
        "is_bigendian": 0,
        "data": np.ascontiguousarray(img).tobytes(),
    }


def check_image(image: Any, name: str = "image") -> np.ndarray:
    """Validate a core image: ``uint8`` ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA.

    Returns ``(H, W)`` for mono input and ``(H, W, 3)`` otherwise (alpha dropped, a view when possible).

    Raises:
        ImageError: not a numpy array, empty, wrong dtype (float images must be converted by the caller, the
            scale being ambiguous), or wrong shape / channel count.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(
            f"{name} must be uint8, got {image.dtype} (convert float images with np.clip(img * 255, 0, 255)"
            ".astype(np.uint8))"
        )
    if image.ndim not in (2, 3):
        raise ImageError(f"{name} must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"{name} is empty: shape {image.shape}")
    if image.ndim == 3:
        c = image.shape[2]
        if c == 1:
            return image[:, :, 0]
        if c == 4:
            return image[:, :, :3]
        if c != 3:
            raise ImageError(f"{name} must have 1, 3 or 4 channels, got {c} (shape {image.shape})")
    return image


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A contiguous ``uint8`` RGB ``(H, W, 3)`` version of any image :func:`check_image` accepts."""
    img = check_image(image)
    if img.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(img)


def to_gray(image: np.ndarray) -> np.ndarray:
    """A contiguous ``uint8`` mono ``(H, W)`` version of any image :func:`check_image` accepts (BT.601 luma)."""
    img = check_image(image)
    if img.ndim == 2:
        return np.ascontiguousarray(img)
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
