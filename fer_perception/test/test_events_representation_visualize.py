"""event_frame_image: colours per polarity balance, background, ROI outlines, clipping."""

from __future__ import annotations

import numpy as np
import pytest

from fer_perception.errors import ConfigError
from fer_perception.events.batch import EventBatch
from fer_perception.events.visualize import BACKGROUND, BOTH_COLOR, OFF_COLOR, ON_COLOR, event_frame_image
from fer_perception.results import Roi


def test_colours_follow_polarity_balance():
    # (1,1): ON; (2,1): OFF; (3,1): one of each; (0,2): ON twice and OFF once; (50,50) outside: ignored.
    b = EventBatch.from_arrays([1, 2, 3, 3, 0, 0, 0, 50], [1, 1, 1, 1, 2, 2, 2, 50], np.arange(8),
                               [1, 0, 1, 0, 1, 1, 0, 1])
    img = event_frame_image(b, 5, 4)
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    assert tuple(img[1, 1]) == ON_COLOR and tuple(img[1, 2]) == OFF_COLOR
    assert tuple(img[1, 3]) == BOTH_COLOR and tuple(img[2, 0]) == ON_COLOR
    assert tuple(img[0, 0]) == BACKGROUND
    assert int((img != np.array(BACKGROUND, np.uint8)).any(axis=2).sum()) == 4


def test_roi_outline_and_custom_colours():
    img = event_frame_image(EventBatch.empty(), 10, 8, roi=[Roi(2, 1, 4, 3), Roi(8, 6, 5, 5)],
                            roi_color=(1, 2, 3), background=(0, 0, 0))
    mask = (img == np.array([1, 2, 3], np.uint8)).all(axis=2)
    expected = np.zeros((8, 10), bool)
    expected[1, 2:6] = expected[3, 2:6] = True
    expected[1:4, 2] = expected[1:4, 5] = True
    expected[6, 8:10] = True
    expected[6:8, 8] = True  # the second box is clipped at the image border
    np.testing.assert_array_equal(mask, expected)
    with pytest.raises(ConfigError, match="on_color"):
        event_frame_image(EventBatch.from_arrays([0], [0], [0], [1]), 2, 2, on_color=(300, 0, 0))
    with pytest.raises(ConfigError, match="width and height"):
        event_frame_image(EventBatch.empty(), 0, 2)
