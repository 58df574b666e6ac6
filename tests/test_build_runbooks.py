"""The build runbooks (03 pending, 04 failed) against the BuildKit and build scenarios, end to end."""
import re

import nbformat
import pytest

from tests.runbook_runs import latest_record, run_runbook

EXPECTED_03 = {
    "healthy": set(),
    "buildkit-down": {"buildkit/daemon-down"},
    "buildkit-service-missing": {"buildkit/service-missing"},
    "buildkit-wrong-address": {"buildkit/wrong-address"},
    "job-pending-insufficient-cpu": {"buildkit/job-pending", "scheduling/insufficient-cpu"},
    "job-pending-insufficient-memory": {"buildkit/job-pending", "scheduling/insufficient-memory"},
    "job-pending-untolerated-taint": {"buildkit/job-pending", "scheduling/untolerated-taint"},
    "build-init-download-404": {"build/init-download-failed"},
    "image-pull-init-container": {"buildkit/job-pending", "image-pull/tag-not-found"},
}
EXPECTED_04 = {
    "healthy": set(),
    "build-missing-dockerfile": {"build/missing-dockerfile"},
    "build-copy-source-missing": {"build/copy-source-missing"},
    "build-context-too-large": {"build/context-too-large"},
    "build-network-timeout": {"build/network-timeout"},
    "build-init-download-404": {"build/init-download-failed"},
    "buildkit-down": {"buildkit/daemon-down"},
    "buildkit-service-missing": {"buildkit/service-missing"},
    "buildkit-wrong-address": {"buildkit/wrong-address"},
    "registry-401-read-only-token": {"build/push-unauthorized"},
}


@pytest.mark.parametrize("platform", sorted(EXPECTED_03), indirect=True)
def test_pending_runbook_finds_why(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("03", kubeconfig, tmp_path) == 0
    result = latest_record(tmp_path, "03-buildkit-job-pending")
    assert {f["code"] for f in result["findings"]} == EXPECTED_03[server.scenario]
    assert result["changes"] == []


@pytest.mark.parametrize("platform", sorted(EXPECTED_04), indirect=True)
def test_failed_build_runbook_classifies_the_log(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("04", kubeconfig, tmp_path) == 0
    result = latest_record(tmp_path, "04-build-job-failed")
    assert {f["code"] for f in result["findings"]} == EXPECTED_04[server.scenario]
    notebook = next(tmp_path.glob("*.ipynb")).read_text()
    if EXPECTED_04[server.scenario]:
        assert ">" in notebook and "--- job-" in notebook   # the error lines with context, not the whole log


@pytest.mark.parametrize("platform", ["buildkit-down"], indirect=True)
def test_buildkitd_restarts_only_on_confirm(platform, tmp_path):
    server, kubeconfig = platform

    def restarted():
        deployment = server.store.get("apps/v1", "Deployment", "buildkit", "buildkitd")
        return "kubectl.kubernetes.io/restartedAt" in (deployment["spec"]["template"]["metadata"].get("annotations") or {})

    assert run_runbook("03", kubeconfig, tmp_path / "dry") == 0 and not restarted()
    assert run_runbook("03", kubeconfig, tmp_path / "go", "dry_run", "false", "confirm", "buildkitd") == 0
    assert restarted()
    [change] = latest_record(tmp_path / "go", "03-buildkit-job-pending")["changes"]
    assert change["resource"] == "Deployment buildkit/buildkitd"


@pytest.mark.parametrize("platform", ["job-pending-insufficient-cpu"], indirect=True)
def test_stuck_job_deleted_only_when_named(platform, tmp_path):
    server, kubeconfig = platform
    [job] = [j["metadata"]["name"] for j in server.store.list("batch/v1", "Job", "nasiko-agents")
             if not (j.get("status") or {}).get("succeeded")]
    assert run_runbook("03", kubeconfig, tmp_path / "wrong", "dry_run", "false", "confirm", "job-someone-else") == 2
    assert any(j["metadata"]["name"] == job for j in server.store.list("batch/v1", "Job", "nasiko-agents"))
    assert run_runbook("03", kubeconfig, tmp_path / "go", "dry_run", "false", "confirm", job) == 0
    assert not any(j["metadata"]["name"] == job for j in server.store.list("batch/v1", "Job", "nasiko-agents"))
    assert not [p for p in server.store.list("v1", "Pod", "nasiko-agents") if p["metadata"]["name"].startswith(job)]


@pytest.mark.parametrize("platform", ["build-missing-dockerfile"], indirect=True)
def test_failed_job_deleted_on_confirm(platform, tmp_path):
    server, kubeconfig = platform
    failed = [j["metadata"]["name"] for j in server.store.list("batch/v1", "Job", "nasiko-agents")
              if any(c["type"] == "Failed" for c in (j.get("status") or {}).get("conditions", []))]
    assert run_runbook("04", kubeconfig, tmp_path, "dry_run", "false", "confirm", failed[0]) == 0
    assert failed[0] not in [j["metadata"]["name"] for j in server.store.list("batch/v1", "Job", "nasiko-agents")]


EXPECTED_08 = {
    "healthy": (set(), [True]),
    "buildkit-down": ({"buildkit/daemon-down"}, [False]),
    "buildkit-service-missing": ({"buildkit/service-missing"}, [False]),
    "buildkit-wrong-address": ({"buildkit/wrong-address"}, [True, False]),   # the Service works; the configured name does not
}


@pytest.mark.parametrize("platform", sorted(EXPECTED_08), indirect=True)
def test_unreachable_runbook_checks_addresses_and_probes_from_inside(platform, tmp_path):
    server, kubeconfig = platform
    codes, reachable = EXPECTED_08[server.scenario]
    assert run_runbook("08", kubeconfig, tmp_path) == 0
    result = latest_record(tmp_path, "08-buildkit-unreachable")
    assert {f["code"] for f in result["findings"]} == codes
    assert result["outcome"] == ("critical" if codes else "ok")          # probing is not fixing
    probes = [c for c in result["changes"] if c["fix"] == "connectivity-probe"]
    assert [c["verb"] for c in probes] == ["create", "delete"] * len(reachable)
    assert all(c["diagnostic"] for c in probes)
    assert not server.store.list("v1", "Pod", "nasiko-agents", label_selector="nasiko-nb/probe")   # cleaned up
    outputs = [o for c in nbformat.read(next(tmp_path.glob("*.ipynb")), as_version=4).cells for o in c.get("outputs", [])]
    table = next(o["data"]["text/plain"] for o in outputs if "debug pod" in o.get("data", {}).get("text/plain", ""))
    assert [flag == "True" for flag in re.findall(r"\b(True|False)\b", table)] == reachable
