"""The ecr detector on YAML fixtures: each file is a cluster state at `taken_at` plus the exact codes expected."""
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from nasiko_nb.checks import DETECTORS, run_checks
from nasiko_nb.checks.ecr import is_ecr_host, platform_registry
from nasiko_nb.providers.base import Repository
from nasiko_nb.snapshot import Snapshot

from .helpers import FIXTURES, load_fixture, secret_values

FIXTURE_FILES = sorted((FIXTURES / "ecr").glob("*.yaml"))
CASES = [pytest.param(path, index, case, id=f"{path.stem}[{index}]")
         for path in FIXTURE_FILES for index, case in enumerate(load_fixture(path)["cases"])]
HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def _snapshot(fixture: dict) -> Snapshot:
    return Snapshot.from_objects(fixture["objects"], taken_at=datetime.fromisoformat(fixture["taken_at"]))


def test_every_cause_has_a_fixture():
    expected = {code for path in FIXTURE_FILES for case in load_fixture(path)["cases"] for code in case["expect"]}
    assert expected == {"registry/ecr-refresher-missing", "registry/ecr-refresher-failing",
                        "registry/ecr-secret-stale", "registry/repository-missing"}


@pytest.mark.parametrize("path,index,case", CASES)
def test_fixture_codes(path: Path, index: int, case: dict):
    fixture = load_fixture(path)
    findings = run_checks(_snapshot(fixture), case["params"], families=["ecr"])
    assert Counter(f.code for f in findings) == Counter(case["expect"]), [f.to_dict() for f in findings]
    if "resources" in case:
        assert sorted(f.resource for f in findings) == sorted(case["resources"])
    for text in case.get("message_contains", []):
        assert any(text in f.message for f in findings), (text, [f.message for f in findings])
    for finding in findings:
        assert finding.evidence and finding.message and finding.next
    leaked = [value for value in secret_values(fixture["objects"])
              for finding in findings for text in (finding.evidence, finding.message, repr(finding))
              if value in text]
    assert not leaked


def test_stale_secret_evidence_names_host_user_and_fingerprint():
    fixture = load_fixture(FIXTURES / "ecr" / "agent-secret-stale.yaml")
    [finding] = run_checks(_snapshot(fixture), {}, families=["ecr"])
    assert f"{HOST} user AWS password sha256:" in finding.evidence
    assert "recreates only regcred" in finding.evidence
    assert finding.next == "15-aws-ecr"


def test_repository_answers_may_be_provider_objects():
    fixture = load_fixture(FIXTURES / "ecr" / "repository-missing.yaml")
    answer = [Repository(name="nasiko-images", tag_count=0), Repository(name="weather-agent", tag_count=1)]
    [finding] = run_checks(_snapshot(fixture), {"ecr_repositories": answer}, families=["ecr"])
    assert finding.resource == f"Repository {HOST}/stock-agent"
    assert "Deployment nasiko-agents/agent-stock-agent-1766141200" in finding.evidence
    assert finding.message == f"Repository stock-agent does not exist in registry {HOST}."


def test_the_refresher_grows_stale_without_a_failed_job():
    """A CronJob whose last success is 13 h old is failing even when no failed Job is left to see."""
    fixture = load_fixture(FIXTURES / "ecr" / "refresher-healthy.yaml")
    snapshot = Snapshot.from_objects(fixture["objects"], taken_at=datetime.fromisoformat("2026-04-21T01:00:40+00:00"))
    codes = Counter(f.code for f in run_checks(snapshot, {}, families=["ecr"]))
    assert codes["registry/ecr-refresher-failing"] == 1
    failing = next(f for f in run_checks(snapshot, {}, families=["ecr"]) if f.code == "registry/ecr-refresher-failing")
    assert "last successful run was 13h 00m ago" in failing.message


def test_registry_detection():
    assert is_ecr_host(HOST) and is_ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")
    assert not is_ecr_host("registry.digitalocean.com") and not is_ecr_host("dkr.ecr.us-east-1.amazonaws.com")
    empty = Snapshot.from_objects([])
    assert platform_registry(empty, {}) is None
    assert platform_registry(empty, {"registry_host": f"https://{HOST}/"}) == HOST


def test_ecr_family_runs_with_all_detectors():
    fixture = load_fixture(FIXTURES / "ecr" / "refresher-missing.yaml")
    findings = run_checks(_snapshot(fixture), {})
    assert "ecr" in DETECTORS and "registry/ecr-refresher-missing" in {f.code for f in findings}


def test_timestamps_parsed_by_yaml_count_as_utc():
    """`yaml.safe_load` turns unquoted timestamps into datetimes; ages must come out the same."""
    fixture = load_fixture(FIXTURES / "ecr" / "agent-secret-stale.yaml")
    for obj in fixture["objects"]:
        if obj["kind"] == "Secret":
            obj["metadata"]["creationTimestamp"] = datetime.fromisoformat(
                obj["metadata"]["creationTimestamp"].replace("Z", "")).replace(tzinfo=None)
    [finding] = run_checks(_snapshot(fixture), {}, families=["ecr"])
    assert finding.code == "registry/ecr-secret-stale" and "13h 00m" in finding.message
