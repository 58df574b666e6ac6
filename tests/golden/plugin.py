"""pytest hooks that run the golden notebooks under nbval, each against a fresh emulator of its case.

nbval starts a notebook's kernel while its first cell is set up, so that is when the notebook's emulator
starts, and the kernel inherits an environment pointing at it; the emulator stops after the last cell.
``tests/golden/conftest.py`` uses these hooks; a test that runs nbval on a copy of a golden elsewhere
loads them with ``-p tests.golden.plugin``.
"""
from __future__ import annotations

import pytest

from tests.golden.cases import SANITIZE, Served, comparable

_served: dict[str, Served] = {}


def pytest_configure(config):
    if config.option.nbval_sanitize_with is None:
        config.option.nbval_sanitize_with = str(SANITIZE)


def _notebook_cell(item) -> bool:
    return item.path.suffix == ".ipynb"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    if not _notebook_cell(item) or item.parent.nodeid in _served:
        yield
        return
    served = _served[item.parent.nodeid] = Served(item.path.stem)
    with served.kernel_environment():
        yield


def pytest_runtest_call(item):
    """nbval sanitizes text only; the run record (JSON) is compared as sorted JSON text, sanitized the same way."""
    if _notebook_cell(item):
        text_only = item.sanitize
        item.sanitize = lambda value: text_only(comparable(value))


def pytest_runtest_teardown(item, nextitem):
    if _notebook_cell(item) and (nextitem is None or nextitem.parent is not item.parent):
        served = _served.pop(item.parent.nodeid, None)
        if served is not None:
            served.stop()
