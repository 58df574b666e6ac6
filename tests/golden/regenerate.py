"""Regenerate the golden notebooks: each runbook executed against a fresh emulator of its scenario.

    .venv/bin/python -m tests.golden.regenerate            # every runbook
    .venv/bin/python -m tests.golden.regenerate 05 12      # some: number, id or slug

Run it from the repository root after a change to what a runbook shows (a runbook, ``nasiko_nb/ui.py``,
a detector, a scenario), read ``git diff tests/golden`` as the review of that change, then commit.
The scenario and parameters of each golden are in ``tests/golden/cases.py``.

The outputs are kept as nbval will see them when it re-executes the notebook: as first displayed, with
display updates and clear_output not applied (nbval ignores both), and masked with ``sanitize.cfg``
(what differs from run to run: times, random names, ports...), so a regeneration's diff is only what the
runbook now shows.
"""
from __future__ import annotations

import sys
import time

import nbformat
from nbclient import NotebookClient
from nbval.plugin import get_sanitize_patterns
from papermill.translators import translate_parameters

from nasiko_nb.records import resolve
from tests.golden.cases import CASES, CHECK_TAG, GOLDEN_DIR, SANITIZE, Served, golden_path, masked

CELL_TIMEOUT_S = 300


class _AsNbvalSees(NotebookClient):
    """Keeps each output as it was first sent: nbval, which compares against it, does not apply updates."""

    def _update_display_id(self, display_id, msg):
        pass

    def clear_output(self, outs, msg, cell_index):
        pass


def golden_notebook(runbook: str, served: Served):
    """The runbook with its case's parameters injected, every code cell tagged for comparison, executed."""
    case = CASES[runbook]
    nb = nbformat.read(resolve(runbook).path, as_version=4)
    if case.parameters:   # as papermill injects them, with a fixed cell id so regenerations stay diff-free
        injected = nbformat.v4.new_code_cell(translate_parameters("python3", "python", case.parameters, "Parameters"),
                                             id="injected-parameters", metadata={"tags": ["injected-parameters"]})
        after = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        nb.cells.insert(after + 1, injected)
    nb.metadata["nasiko_golden"] = {"scenario": case.scenario, "parameters": case.parameters}
    for cell in nb.cells:
        if cell.cell_type == "code":
            tags = cell.metadata.setdefault("tags", [])
            if CHECK_TAG not in tags:
                tags.append(CHECK_TAG)
    client = _AsNbvalSees(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, store_widget_state=False,
                          record_timing=False, resources={"metadata": {"path": str(GOLDEN_DIR)}})
    return _masked(client.execute(env=served.environment))


def _masked(nb):
    """Every output text with what differs from run to run masked (images are not compared; kept as drawn)."""
    patterns = get_sanitize_patterns(SANITIZE.read_text())
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = masked(output["text"], patterns)
            for mime, value in output.get("data", {}).items():
                if not mime.startswith("image/"):
                    output["data"][mime] = masked(value, patterns)
    return nb


def regenerate(runbook: str) -> None:
    served = Served(runbook)
    try:
        nb = golden_notebook(runbook, served)
    finally:
        served.stop()
    nbformat.write(nb, golden_path(runbook))


def main(argv: list[str]) -> int:
    runbooks = [resolve(name).id for name in argv] or sorted(CASES)
    for runbook in runbooks:
        started = time.monotonic()
        regenerate(runbook)
        print(f"{golden_path(runbook).relative_to(GOLDEN_DIR.parent.parent)}  ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
