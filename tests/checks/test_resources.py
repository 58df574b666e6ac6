"""resources/* detector on YAML fixtures: evicted pods, failed and TTL-less Jobs, node pressure, orphaned ConfigMaps."""
from pathlib import Path

import pytest
import yaml

from nasiko_nb.checks import run_checks
from nasiko_nb.snapshot import Snapshot

from .test_build import check_case, fixture_cases

CASES = fixture_cases("resources")


def test_every_resources_code_has_a_fixture():
    expected = {code for param in CASES for code in param.values[2]["expect"]}
    assert expected == {"resources/evicted-pods", "resources/failed-jobs", "resources/finished-jobs-without-ttl",
                        "resources/node-pressure", "resources/orphaned-configmaps", "resources/capacity-low"}


@pytest.mark.parametrize("path,index,case", CASES)
def test_fixture_codes(path: Path, index: int, case: dict):
    check_case(path, case)


def test_shared_evicted_sample(samples_path):
    [sample] = yaml.safe_load(samples_path.read_text())["evicted_pod_status"]
    pod = {"kind": "Pod", "metadata": {"name": "agent-x", "namespace": "nasiko-agents"},
           "status": {"phase": "Failed", "reason": "Evicted", "message": sample["message"]}}
    [finding] = run_checks(Snapshot.from_objects([pod]), {}, families=["resources"])
    assert finding.code == sample["code"] and sample["message"] in finding.evidence


def test_job_without_failed_condition_is_not_failed():
    job = {"kind": "Job", "metadata": {"name": "job-a-agent-1766140001", "namespace": "nasiko-agents"},
           "spec": {"ttlSecondsAfterFinished": 3600},
           "status": {"failed": 1, "active": 1, "conditions": [{"type": "Failed", "status": "False"}]}}
    assert run_checks(Snapshot.from_objects([job]), {}, families=["resources"]) == []


def test_long_lists_are_shortened():
    jobs = [{"kind": "Job", "metadata": {"name": f"job-a{i}-agent-1766140{i:03d}", "namespace": "nasiko-agents"},
             "spec": {"ttlSecondsAfterFinished": 60},
             "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
            for i in range(25)]
    [finding] = run_checks(Snapshot.from_objects(jobs), {}, families=["resources"])
    assert finding.message == "25 failed Jobs in nasiko-agents." and finding.evidence.endswith("and 15 more")
