"""Table-driven detector tests: each YAML fixture is a cluster state plus the exact codes expected."""
from collections import Counter
from pathlib import Path

import pytest

from nasiko_nb.checks import run_checks
from nasiko_nb.checks.image_pull import find_image_pull_failures
from nasiko_nb.snapshot import Snapshot

from .helpers import FIXTURES, load_fixture, secret_values

FIXTURE_FILES = sorted((FIXTURES / "image_pull").glob("*.yaml"))
CASES = [pytest.param(path, index, case, id=f"{path.stem}[{index}]")
         for path in FIXTURE_FILES for index, case in enumerate(load_fixture(path)["cases"])]


def test_fixture_set_is_substantial():
    assert len(FIXTURE_FILES) >= 20


@pytest.mark.parametrize("path,index,case", CASES)
def test_fixture_codes(path: Path, index: int, case: dict):
    fixture = load_fixture(path)
    snapshot = Snapshot.from_objects(fixture["objects"])
    findings = run_checks(snapshot, case["params"], families=["image-pull"])
    assert Counter(f.code for f in findings) == Counter(case["expect"]), [f.to_dict() for f in findings]
    if "resources" in case:
        assert sorted(f.resource for f in findings) == sorted(case["resources"])
    for finding in findings:
        assert finding.resource.startswith("Pod ")
        assert finding.evidence and finding.message and finding.next
    leaked = [value for value in secret_values(fixture["objects"])
              for finding in findings for text in (finding.evidence, finding.message) if value in text]
    assert not leaked


@pytest.mark.parametrize("path", [p for p in FIXTURE_FILES if "rows" in load_fixture(p)], ids=lambda p: p.stem)
def test_fixture_rows(path: Path):
    fixture = load_fixture(path)
    params = fixture["cases"][0]["params"]
    rows = find_image_pull_failures(Snapshot.from_objects(fixture["objects"]),
                                    params.get("namespace", "nasiko-agents"), params.get("agent"))
    assert len(rows) == len(fixture["rows"])
    for row, expected in zip(rows, fixture["rows"]):
        actual = row.to_dict()
        for name, value in expected.items():
            actual_value = list(actual[name]) if isinstance(actual[name], tuple) else actual[name]
            assert actual_value == value, (name, actual)
