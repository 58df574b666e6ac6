"""Papermill runs of the runbooks against every scenario of the simulated platform, through the CLI."""
import json
import tempfile
from pathlib import Path

import pytest

from nasiko_nb import sim
from nasiko_nb.cli import main
from tests.secrets_check import leaked_in

EXPECTED_05 = {
    "healthy": set(),
    **{scenario: set() for scenario in ("agent-chat-healthy", "agent-chat-route-by-deployment-name",
                                        "agent-chat-missing-label", "agent-chat-no-route", "agent-chat-no-endpoints",
                                        "agent-chat-skipped-name", "agent-chat-stale-deployments")},
    "image-pull-missing-secret": {"image-pull/missing-pull-secret"},
    "image-pull-pull-secret-not-found": {"image-pull/pull-secret-not-found"},
    "image-pull-tag-not-found": {"image-pull/tag-not-found"},
    "image-pull-unauthorized": {"image-pull/unauthorized"},
    "image-pull-secret-wrong-registry": {"image-pull/pull-secret-wrong-registry"},
    "image-pull-init-container": {"image-pull/tag-not-found"},
    "image-pull-events-expired": {"image-pull/tag-not-found"},
    "image-pull-dns": {"image-pull/dns"},
    # a private Docker Hub image while the pull secret only has DigitalOcean credentials
    "image-pull-forbidden": {"image-pull/pull-secret-wrong-registry"},
    "image-pull-invalid-name": {"image-pull/invalid-name"},
    # registry scenarios: the agents running before the credentials broke still run; only a build Job failed
    "registry-401-read-only-token": set(),
    "registry-401-expired-token": set(),
    "registry-401-wrong-user": set(),
    "registry-401-revoked-token": set(),
    "registry-name-mismatch": set(),
    "registry-secrets-inconsistent": set(),
    # ECR: agents deployed with a login older than 12 h cannot pull; the refresher's own trouble and a
    # missing repository (only a new build's push fails) leave every running agent alone
    "ecr-healthy": set(),
    "ecr-agent-secret-stale": {"image-pull/unauthorized"},
    "ecr-refresher-missing": {"image-pull/unauthorized"},
    "ecr-refresher-failing": set(),
    "ecr-repository-missing": set(),
    # BuildKit, build Job and resource scenarios: every image pulls (the build pods' failures are BuildKit's,
    # curl's, the scheduler's or the kubelet's evictions, never a pull)
    "buildkit-down": set(),
    "buildkit-service-missing": set(),
    "buildkit-wrong-address": set(),
    "job-pending-insufficient-cpu": set(),
    "job-pending-insufficient-memory": set(),
    "job-pending-untolerated-taint": set(),
    "build-init-download-404": set(),
    "build-missing-dockerfile": set(),
    "build-context-too-large": set(),
    "build-network-timeout": set(),
    "build-copy-source-missing": set(),
    "cluster-evicted-pods": set(),
    "cluster-failed-jobs": set(),
    "cluster-node-pressure": set(),
}


def record_of(output: Path, runbook: str) -> dict:
    [path] = sorted(output.glob(f"*-{runbook}.json"))[-1:]
    return json.loads(path.read_text())


def record_files(output: Path) -> list[Path]:
    return [p for p in output.iterdir() if p.suffix in (".ipynb", ".html", ".json")]


def test_every_scenario_has_an_expectation():
    assert set(EXPECTED_05) == set(sim.SCENARIOS)


@pytest.mark.parametrize("scenario", sorted(EXPECTED_05))
def test_image_pull_runbook_reports_the_scenario_cause(scenario, tmp_path):
    assert main(["run", "image-pull-backoff", "--demo", scenario, "--output", str(tmp_path)]) == 0
    record = record_of(tmp_path, "05-image-pull-backoff")
    codes = {f["code"] for f in record["findings"]}
    assert codes == EXPECTED_05[scenario]
    assert record["changes"] == [] and record["side_effects"] == "mutating"
    assert record["outcome"] == ("critical" if codes else "ok")
    for path in record_files(tmp_path):
        assert leaked_in(path.read_text()) == [], path.name
    nb = json.loads(next(tmp_path.glob("*.ipynb")).read_text())
    assert nb["metadata"]["nasiko"]["findings"] == record["findings"]


def test_init_container_failure_is_reported_on_the_build_job_pod(tmp_path):
    main(["run", "05", "--demo", "image-pull-init-container", "--output", str(tmp_path)])
    [finding] = record_of(tmp_path, "05-image-pull-backoff")["findings"]
    assert finding["resource"].startswith("Pod nasiko-agents/job-")
    assert "download-agent (init)" in finding["message"]


def test_triage_runs_every_detector_and_points_onward(tmp_path, capsys):
    assert main(["demo", "image-pull-unauthorized", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    record = record_of(tmp_path, "00-triage")
    by_code = {f["code"]: f for f in record["findings"]}
    # agent-registry-credentials holds a revoked token while regcred holds the good one
    assert set(by_code) == {"image-pull/unauthorized", "registry/credentials-inconsistent"}
    assert by_code["image-pull/unauthorized"]["next"] == "02-registry-401-unauthorized"
    assert "image-pull/unauthorized" in out and "record: " in out
    html = next(tmp_path.glob("*.html")).read_text()
    assert "image-pull/unauthorized" in html and "run.snapshot(" not in html  # report view: code hidden


@pytest.fixture
def broken_platform():
    server = sim.start("image-pull-missing-secret")
    kubeconfig = server.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig")
    [deployment] = [d for d in server.store.list("apps/v1", "Deployment", "nasiko-agents")
                    if not d["spec"]["template"]["spec"].get("imagePullSecrets")]
    yield server, str(kubeconfig), deployment
    server.stop()


def current(server, deployment):
    return server.store.get("apps/v1", "Deployment", "nasiko-agents", deployment["metadata"]["name"])


def test_dry_run_plans_the_fix_and_changes_nothing(broken_platform, tmp_path):
    server, kubeconfig, deployment = broken_platform
    assert main(["run", "05", "--kubeconfig", kubeconfig, "--output", str(tmp_path)]) == 0
    after = current(server, deployment)
    assert after["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]
    assert record_of(tmp_path, "05-image-pull-backoff")["changes"] == []
    notebook = next(tmp_path.glob("*.ipynb")).read_text()
    assert "dry run: nothing changed" in notebook and "imagePullSecrets" in notebook


def test_confirmed_fix_patches_the_deployment_and_verifies_the_rollout(broken_platform, tmp_path):
    server, kubeconfig, deployment = broken_platform
    name = deployment["metadata"]["name"]
    assert main(["run", "05", "--kubeconfig", kubeconfig, "--output", str(tmp_path),
                 "-p", "dry_run", "false", "-p", "confirm", name]) == 0
    after = current(server, deployment)
    assert after["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "agent-registry-credentials"}]
    assert after["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    pods = server.store.list("v1", "Pod", "nasiko-agents", label_selector=f"app={name}")
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    record = record_of(tmp_path, "05-image-pull-backoff")
    assert record["outcome"] == "changed"
    [change] = record["changes"]
    assert change["resource"] == f"Deployment nasiko-agents/{name}" and change["verb"] == "patch"
    cells = json.loads(next(tmp_path.glob("*.ipynb")).read_text())["cells"]
    verification = next(o for c in cells for o in c.get("outputs", []) if "no pod stuck pulling" in json.dumps(o))
    assert "False" not in verification["data"]["text/plain"]


def test_confirm_naming_another_target_changes_nothing(broken_platform, tmp_path, capsys):
    server, kubeconfig, deployment = broken_platform
    code = main(["run", "05", "--kubeconfig", kubeconfig, "--output", str(tmp_path),
                 "-p", "dry_run", "false", "-p", "confirm", "agent-someone-else"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ConfirmationError" in err[0] and "nothing was changed" in err[0]
    assert current(server, deployment)["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]
    assert record_of(tmp_path, "05-image-pull-backoff")["changes"] == []


def test_fix_is_blocked_while_the_pull_secret_itself_is_missing(broken_platform, tmp_path, capsys):
    server, kubeconfig, deployment = broken_platform
    server.store.delete("v1", "Secret", "nasiko-agents", "agent-registry-credentials")
    before = current(server, deployment)
    code = main(["run", "05", "--kubeconfig", kubeconfig, "--output", str(tmp_path),
                 "-p", "dry_run", "false", "-p", "confirm", deployment["metadata"]["name"]])
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot be applied" in err and "does not exist in nasiko-agents" in err
    assert current(server, deployment)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
