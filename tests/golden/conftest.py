"""The golden notebooks run under nbval with the hooks of ``tests/golden/plugin.py``."""
from tests.golden.plugin import pytest_configure, pytest_runtest_call, pytest_runtest_setup, pytest_runtest_teardown

__all__ = ["pytest_configure", "pytest_runtest_call", "pytest_runtest_setup", "pytest_runtest_teardown"]
