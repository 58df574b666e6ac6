"""The fault matrix (tests/fault_matrix.py), asserted: every runbook under every read fault, every fix runbook
under every write fault, ends with findings or one clear line, and a transient fault leaves no trace."""
import subprocess

import nbformat
import pytest

from tests import fault_matrix

WORKERS = 3   # cells are subprocesses waiting on kernels and emulators: more than the cores pays


def assert_green(cells):
    failures = [f"{cell.runbook} x {cell.fault}: {problem}" for cell in cells for problem in cell.problems]
    assert failures == [], "\n" + "\n".join(failures) + "\n" + fault_matrix.table(cells)


@pytest.mark.parametrize("runbook", list(fault_matrix.RUNBOOKS))
def test_read_faults(runbook):
    assert_green(fault_matrix.run_matrix([runbook], workers=WORKERS))


@pytest.mark.parametrize("runbook", list(fault_matrix.FIXES))
def test_write_faults(runbook):
    assert_green(fault_matrix.run_matrix([runbook], workers=WORKERS, writes=True))


def test_the_judge_sees_a_traceback_wall_and_a_fault_nobody_noticed(tmp_path):
    """The matrix would be worthless if its judge passed everything: show it failing the two ways it can."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
        "error", ename="ApiException", evalue="(500)", traceback=["Traceback", "  File ...", "ApiException: (500)"])])])
    nbformat.write(nb, tmp_path / "r.ipynb")
    (tmp_path / "r.json").write_text('{"findings": [], "changes": [], "outcome": "ok"}')
    done = subprocess.CompletedProcess([], 0, "", "")
    cell = fault_matrix.judge("05-image-pull-backoff", "500", False, done, tmp_path)
    assert cell.problems == ("traceback wall: ApiException: (500)", "the fault went unnoticed: ok")
