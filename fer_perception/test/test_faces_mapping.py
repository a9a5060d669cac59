"""faces/mapping.py: identity, scale and homography maps of face boxes onto the event sensor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fer_perception.errors import ConfigError
from fer_perception.faces.mapping import SensorMapping
from fer_perception.results import Roi


def test_identity_keeps_and_clips():
    m = SensorMapping.identity((346, 260))
    assert m.is_identity
    np.testing.assert_allclose(m.map_box((10, 20, 30, 40)), [10, 20, 30, 40])
    np.testing.assert_allclose(m.map_box((-10, 240, 30, 40)), [0, 240, 20, 20])
    np.testing.assert_allclose(SensorMapping.identity().map_box((-10, 5, 3, 4)), [-10, 5, 3, 4])  # no size: no clip


def test_scale_maps_full_frame_to_full_sensor():
    m = SensorMapping.from_scale((640, 480), (320, 240))
    np.testing.assert_allclose(m.map_box((0, 0, 640, 480)), [0, 0, 320, 240])
    np.testing.assert_allclose(m.map_box((100, 50, 80, 60)), [50, 25, 40, 30])
    m2 = SensorMapping.from_scale((640, 480), (346, 260))
    np.testing.assert_allclose(m2.map_box((320, 240, 64, 48)), [173, 130, 34.6, 26])
    assert m2.map_roi(Roi(320, 240, 64, 48)) == Roi(173, 130, 35, 26)


def test_homography_translation_rotation_bounding_box():
    a = math.radians(90)
    # rotate by 90 degrees about the origin, then shift by (100, 0): (x, y) -> (100 - y, x)
    hmat = [[math.cos(a), -math.sin(a), 100], [math.sin(a), math.cos(a), 0], [0, 0, 1]]
    m = SensorMapping.from_homography(hmat, (200, 200), (200, 200))
    np.testing.assert_allclose(m.map_points([[10, 20]]), [[80, 10]], atol=1e-9)
    np.testing.assert_allclose(m.map_box((10, 20, 30, 40)), [40, 10, 40, 30], atol=1e-9)  # w and h swap


def test_perspective_and_out_of_sensor():
    hmat = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.001, 0, 1.0]])
    m = SensorMapping.from_homography(hmat, None, (400, 400))
    box = m.map_box((100, 100, 100, 100))
    # x' = x / (1 + 0.001 x): corners at x=100 -> 90.9, x=200 -> 166.7; y' = y / (1 + 0.001 x)
    np.testing.assert_allclose(box, [90.909090, 83.333333, 166.666667 - 90.909090,
                                     181.818182 - 83.333333], rtol=1e-5)
    out = SensorMapping.from_homography(np.eye(3) + [[0, 0, 1000], [0, 0, 0], [0, 0, 0]], None, (346, 260))
    b = out.map_box((0, 0, 50, 50))
    assert b[2] == 0 or b[3] == 0


def test_points_at_infinity_give_an_empty_box():
    hmat = np.array([[1.0, 0, 0], [0, 1.0, 0], [-0.01, 0, 1.0]])  # w = 1 - 0.01 x: the line x = 100 is at infinity
    m = SensorMapping.from_homography(hmat, None, (300, 300))
    np.testing.assert_array_equal(m.map_box((90, 0, 20, 20)), [0, 0, 0, 0])
    assert np.isnan(m.map_points([[150, 5]])).all()


def test_inverse_roundtrip():
    hmat = [[0.9, 0.05, 12], [-0.04, 1.1, -7], [1e-4, 2e-4, 1]]
    m = SensorMapping.from_homography(hmat, (640, 480), (346, 260))
    pts = np.array([[10.0, 20.0], [300, 200], [600, 450]])
    np.testing.assert_allclose(m.inverse().map_points(m.map_points(pts)), pts, atol=1e-6)
    assert m.inverse().src_size == (346, 260)


def test_from_list_config():
    m = SensorMapping.from_list([2, 0, 0, 0, 2, 0, 0, 0, 1], (100, 100), (200, 200))
    np.testing.assert_allclose(m.map_box((10, 10, 10, 10)), [20, 20, 20, 20])
    assert m.to_list() == [2, 0, 0, 0, 2, 0, 0, 0, 1]
    assert SensorMapping.from_list([]).is_identity
    scaled = SensorMapping.from_list([], (640, 480), (320, 240))
    np.testing.assert_allclose(scaled.map_box((0, 0, 640, 480)), [0, 0, 320, 240])
    # a scaled matrix is normalised
    np.testing.assert_allclose(SensorMapping.from_list([2, 0, 0, 0, 2, 0, 0, 0, 2]).matrix, np.eye(3))


@pytest.mark.parametrize(
    "values, match",
    [
        ([1, 0, 0, 0, 1, 0, 0, 0], "9 values"),
        ([1, 0, 0, 0, 1, 0, 0, 0, "x"], "numbers"),
        ([1, 0, 0, 0, 1, 0, 0, 0, float("nan")], "non-finite"),
        ([1, 2, 3, 2, 4, 6, 0, 0, 1], "singular"),
    ],
)
def test_bad_config(values, match):
    with pytest.raises(ConfigError, match=match):
        SensorMapping.from_list(values)


def test_bad_sizes():
    with pytest.raises(ConfigError, match="dst_size"):
        SensorMapping.from_scale((640, 480), (0, 10))
    with pytest.raises(ConfigError, match="src_size"):
        SensorMapping.from_homography(np.eye(3), src_size=(1, 2, 3))
