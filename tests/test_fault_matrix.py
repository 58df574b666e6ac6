"""The fault matrix (tests/fault_matrix.py), asserted: runbooks under read faults, fix runbooks under write faults,
end with findings or one clear line, and a transient fault leaves no trace.

The suite runs every runbook under the faults whose handling differs per runbook (its own reads outside the
snapshot: probes, logs, rollouts, provider calls) and the retried faults, which all go through one client path, on
three runbooks: 109 of the 184 cells, to keep the suite in minutes. ``python -m tests.fault_matrix`` (and
``--writes``) runs all of them.
"""
import subprocess

import nbformat
import pytest

from tests import fault_matrix

WORKERS = 2   # cells are subprocesses with a kernel each: more than the cores only makes the kernels late
EVERY_RUNBOOK = ("403", "503", "slow", "dropped")
RETRIED_ON = ("00-triage", "05-image-pull-backoff", "10-cluster-health")
WRITE_FAULTS = ("403", "409", "429 x1", "500", "slow", "dropped")


def assert_green(cells):
    failures = [f"{cell.runbook} x {cell.fault}: {problem}" for cell in cells for problem in cell.problems]
    assert failures == [], "\n" + "\n".join(failures) + "\n" + fault_matrix.table(cells)


@pytest.mark.parametrize("runbook", list(fault_matrix.RUNBOOKS))
def test_read_faults(runbook):
    more = ("404", "429", "429 x2", "500 x2", "dropped x2") if runbook in RETRIED_ON else ()
    assert_green(fault_matrix.run_matrix([runbook], (*EVERY_RUNBOOK, *more), workers=WORKERS))


@pytest.mark.parametrize("runbook", list(fault_matrix.FIXES))
def test_write_faults(runbook):
    assert_green(fault_matrix.run_matrix([runbook], WRITE_FAULTS, workers=WORKERS, writes=True))


def test_the_judge_sees_a_traceback_wall_and_a_fault_nobody_noticed(tmp_path):
    """The matrix would be worthless if its judge passed everything: show it failing the two ways it can."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
        "error", ename="ApiException", evalue="(500)", traceback=["Traceback", "  File ...", "ApiException: (500)"])])])
    nbformat.write(nb, tmp_path / "r.ipynb")
    (tmp_path / "r.json").write_text('{"findings": [], "changes": [], "outcome": "ok"}')
    done = subprocess.CompletedProcess([], 0, "", "")
    cell = fault_matrix.judge("05-image-pull-backoff", "500", False, done, tmp_path)
    assert cell.problems == ("traceback wall: ApiException: (500)", "the fault went unnoticed: ok")
