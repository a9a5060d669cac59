"""Test-wide settings: the ONNX export cache lives in the session's temporary folder, not in the user's home."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _onnx_cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FER_PERCEPTION_CACHE", str(tmp_path_factory.mktemp("onnx_cache")))
        yield
