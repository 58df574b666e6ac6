"""The golden notebooks cover every runbook as it is committed, and nbval compares them strictly."""
import os
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

from nasiko_nb import records
from tests.golden.cases import CASES, CHECK_TAG, GOLDEN_DIR, SANITIZE, golden_path, masked
from tests.paths import REPO
from tests.secrets_check import leaked_in

RUNBOOKS = records.runbooks()


def test_every_runbook_has_a_golden_and_nothing_else_is_one():
    assert sorted(CASES) == [info.id for info in RUNBOOKS]
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.ipynb")) == sorted(CASES)


def test_runbooks_are_committed_without_outputs():
    for info in RUNBOOKS:
        cells = nbformat.read(info.path, as_version=4).cells
        assert [c for c in cells if c.cell_type == "code" and (c.outputs or c.execution_count)] == [], info.id


@pytest.mark.parametrize("info", RUNBOOKS, ids=lambda info: info.id)
def test_golden_is_the_runbook_as_committed_every_cell_compared(info):
    """A runbook edited without regenerating its golden fails here: nbval would run the old cells."""
    golden = nbformat.read(golden_path(info.id), as_version=4)
    cells = [c for c in golden.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    runbook = nbformat.read(info.path, as_version=4)
    assert [(c.cell_type, c.source) for c in cells] == [(c.cell_type, c.source) for c in runbook.cells], \
        f"run: python -m tests.golden.regenerate {info.id}"
    for cell in golden.cells:
        if cell.cell_type == "code":
            # nbval compares a cell only when it is tagged and was executed in the reference
            assert CHECK_TAG in cell.metadata.get("tags", []) and cell.execution_count is not None, cell.source
    case = CASES[info.id]
    assert golden.metadata["nasiko_golden"] == {"scenario": case.scenario, "parameters": case.parameters}
    injected = [c for c in golden.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == (1 if case.parameters else 0)
    assert leaked_in(golden_path(info.id).read_text()) == []


@pytest.mark.parametrize("info", RUNBOOKS, ids=lambda info: info.id)
def test_golden_is_stored_masked(info):
    """Masking a stored golden changes nothing: it was masked when made, and no rule touches a placeholder."""
    patterns = get_sanitize_patterns(SANITIZE.read_text())
    for cell in nbformat.read(golden_path(info.id), as_version=4).cells:
        for output in cell.get("outputs", []):
            texts = [output["text"]] if "text" in output else []
            texts += [value for mime, value in output.get("data", {}).items() if not mime.startswith("image/")]
            assert all(masked(text, patterns) == text for text in texts), cell.source


def altered(golden: nbformat.NotebookNode, old: str, new: str) -> nbformat.NotebookNode:
    """The golden with ``old`` replaced by ``new`` in the first text/plain output that shows it."""
    for cell in golden.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain", "")
            if old in text:
                output["data"]["text/plain"] = text.replace(old, new)
                return golden
    raise AssertionError(f"no output of the golden shows {old!r}")


def test_nbval_fails_a_golden_whose_output_changed(tmp_path):
    """Strict comparison, sanitized only where runs differ: the same finding under another code is a failure."""
    runbook = "06-secret-management"
    kept, changed = tmp_path / "kept", tmp_path / "changed"
    kept.mkdir()
    changed.mkdir()
    shutil.copy(golden_path(runbook), kept)
    golden = nbformat.read(golden_path(runbook), as_version=4)
    nbformat.write(altered(golden, "registry/credentials-inconsistent", "registry/credentials-consistent"),
                   changed / f"{runbook}.ipynb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.golden.plugin", "-p", "no:cacheprovider", "--nbval-lax", "-q",
         "-o", "addopts=", str(kept), str(changed)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout
    code_cells = sum(c.cell_type == "code" for c in golden.cells)
    assert result.returncode == 1 and f"1 failed, {2 * code_cells - 1} passed" in out, out   # the kept copy passes
    [failed] = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert "changed/06-secret-management.ipynb::Cell" in failed, out
    assert "Cell outputs differ" in out and "registry/credentials-consistent" in out
