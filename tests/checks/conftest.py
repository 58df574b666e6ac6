"""Fixtures shared by the checks tests."""

from tests.paths import SHARED

import pytest


@pytest.fixture
def samples_path():
    path = SHARED / "samples/messages.yaml"
    if not path.exists():
        pytest.skip("shared samples not present on this machine")
    return path
