"""EventBatch: construction, dtype canonicalisation, concatenation, selection, bounds checks."""

import numpy as np
import pytest

from fer_perception.errors import EventOutOfBoundsError, FerPerceptionError
from fer_perception.events import EventBatch


def test_from_arrays_canonical_dtypes():
    b = EventBatch.from_arrays([1, 2], [3, 4], [10, 20], [0, 5], width=8, height=6, stamp_ns=7, frame_id="cam")
    assert b.x.dtype == np.uint16 and b.y.dtype == np.uint16
    assert b.t.dtype == np.int64 and b.p.dtype == np.uint8
    assert b.p.tolist() == [0, 1]
    assert len(b) == 2 and b.duration_ns == 10
    assert (b.width, b.height, b.stamp_ns, b.frame_id) == (8, 6, 7, "cam")


def test_length_mismatch_rejected():
    with pytest.raises(ValueError, match="differ in length"):
        EventBatch(np.zeros(2, np.uint16), np.zeros(3, np.uint16), np.zeros(2, np.int64), np.zeros(2, np.uint8))


def test_concatenate_and_select():
    a = EventBatch.from_arrays([1], [1], [5], [1], 10, 10, 5, "a")
    b = EventBatch.from_arrays([2, 3], [2, 3], [6, 7], [0, 1], 10, 10, 7, "a")
    c = EventBatch.concatenate([a, b])
    assert c.x.tolist() == [1, 2, 3] and c.t.tolist() == [5, 6, 7] and c.stamp_ns == 7
    assert c.select(c.p == 1).x.tolist() == [1, 3]
    assert len(EventBatch.concatenate([])) == 0


def test_check_bounds_names_the_event():
    b = EventBatch.from_arrays([1, 12], [1, 2], [0, 1], [1, 1], width=10, height=10)
    with pytest.raises(EventOutOfBoundsError, match=r"x=12") as info:
        b.check_bounds()
    assert isinstance(info.value, FerPerceptionError)
    EventBatch.from_arrays([1], [1], [0], [1]).check_bounds()  # unknown sensor size: nothing to check
