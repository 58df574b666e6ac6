"""Fixtures shared by the checks tests."""
import pytest

from tests.paths import SAMPLES


@pytest.fixture
def samples_path():
    return SAMPLES
