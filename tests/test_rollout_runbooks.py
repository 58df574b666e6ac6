"""12-restart-deployment, 13-clean-slate-reset and 10-cluster-health end to end; undo checked against kubectl."""
from __future__ import annotations

import subprocess

import pytest

from nasiko_nb import fixes, sim
from nasiko_nb.cluster import connect
from nasiko_nb.rollouts import plan_undo, rollout_status
from nasiko_nb.snapshot import take_snapshot
from tests.runbook_runs import assert_no_secret_in, latest_record, run_runbook

REVISION = "deployment.kubernetes.io/revision"


def deployment(server, name="nasiko-backend", namespace="nasiko") -> dict:
    return server.store.get("apps/v1", "Deployment", namespace, name)


def history(server, name="nasiko-backend", namespace="nasiko") -> dict[int, str]:
    """revision -> ReplicaSet name, as kubectl rollout history reads it."""
    uid = deployment(server, name, namespace)["metadata"]["uid"]
    return {int(rs["metadata"]["annotations"][REVISION]): rs["metadata"]["name"]
            for rs in server.store.list("apps/v1", "ReplicaSet", namespace)
            if any(ref["uid"] == uid for ref in rs["metadata"].get("ownerReferences", []))}


@pytest.mark.parametrize("platform", ["healthy"], indirect=True)
def test_restart_then_undo_only_on_confirm(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("12", kubeconfig, tmp_path / "dry") == 0 and history(server) == {1: history(server)[1]}
    assert run_runbook("12", kubeconfig, tmp_path / "wrong", "dry_run", "false", "confirm", "nasiko-web") == 2
    assert len(history(server)) == 1
    assert run_runbook("12", kubeconfig, tmp_path / "restart", "dry_run", "false", "confirm", "nasiko-backend") == 0
    first, second = history(server)[1], history(server)[2]
    template = deployment(server)["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    assert rollout_status(deployment(server)).done
    notebook = next((tmp_path / "restart").glob("*.ipynb")).read_text()
    assert "successfully rolled out" in notebook and second in notebook
    assert run_runbook("12", kubeconfig, tmp_path / "undo", "action", "undo", "dry_run", "false",
                       "confirm", "nasiko-backend@1") == 0
    assert history(server) == {2: second, 3: first}          # revision 1's ReplicaSet is reused as revision 3
    assert "restartedAt" not in str(deployment(server)["spec"]["template"]["metadata"].get("annotations"))
    [change] = latest_record(tmp_path / "undo", "12-restart-deployment")["changes"]
    assert change["fix"] == "rollout-undo" and "roll back from revision 2 to revision 1" in change["change"]
    assert_no_secret_in(tmp_path / "undo", server)


def test_undo_sends_what_kubectl_sends(tmp_path):
    """The same restart and undo on two emulators, one by kubectl and one by the plan: same result."""
    ours, theirs = sim.start("healthy"), sim.start("healthy")
    try:
        kubeconfig = str(theirs.write_kubeconfig(tmp_path / "kubectl"))
        cluster = connect(str(ours.write_kubeconfig(tmp_path / "ours")))
        for server in (ours, theirs):     # same starting point: one restart, by kubectl
            subprocess.run(["kubectl", "--kubeconfig", str(server.write_kubeconfig(tmp_path / "k")), "rollout",
                            "restart", "deployment/nasiko-backend", "-n", "nasiko"], check=True, capture_output=True)
        subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "rollout", "undo", "deployment/nasiko-backend",
                        "-n", "nasiko"], check=True, capture_output=True, timeout=30)
        plan = plan_undo(take_snapshot(cluster, namespaces=["nasiko"], kinds=("deployments", "replicasets")),
                         deployment(ours), 0, timeout_s=10)
        fixes.apply_plan(cluster, plan, dry_run=False, confirm="nasiko-backend@1")
        assert plan.target == "nasiko-backend@1"

        def comparable(server):
            found = deployment(server)
            return found["spec"]["template"], {k: v for k, v in found["metadata"]["annotations"].items()}

        assert comparable(ours) == comparable(theirs)
        assert sorted(history(ours)) == sorted(history(theirs)) == [2, 3]
        shown = subprocess.run(["kubectl", "--kubeconfig", str(ours.write_kubeconfig(tmp_path / "check")), "rollout",
                                "history", "deployment/nasiko-backend", "-n", "nasiko"],
                               check=True, capture_output=True, text=True).stdout
        assert [line.split()[0] for line in shown.splitlines()[2:] if line.strip()] == ["2", "3"]
    finally:
        ours.stop()
        theirs.stop()


@pytest.mark.parametrize("platform", ["healthy"], indirect=True)
def test_undo_to_a_missing_revision_is_blocked(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("12", kubeconfig, tmp_path, "action", "undo", "to_revision", "7", "dry_run", "false",
                       "confirm", "nasiko-backend@7") == 1     # a blocked fix fails the run, nothing changed
    assert "revision 7 not found (revisions: 1)" in next(tmp_path.glob("*.ipynb")).read_text()
    assert len(history(server)) == 1


@pytest.mark.parametrize("platform", ["healthy"], indirect=True)
def test_unknown_deployment_is_one_clear_line(platform, tmp_path, capsys):
    _, kubeconfig = platform
    assert run_runbook("12", kubeconfig, tmp_path, "deployment", "backend") == 2
    assert "deployment 'backend' not found in namespace 'nasiko'; it has: buildkit" not in capsys.readouterr().err
    assert "deployment 'backend' not found in namespace 'nasiko'; it has: k8s-service-registry, kong-gateway" in \
        next(tmp_path.glob("*.ipynb")).read_text()


@pytest.mark.parametrize("platform", ["cluster-failed-jobs"], indirect=True)
def test_clean_slate_plans_first_and_waits_for_the_platform(platform, tmp_path):
    server, kubeconfig = platform
    jobs_before = len(server.store.list("batch/v1", "Job", "nasiko-agents"))
    assert run_runbook("13", kubeconfig, tmp_path / "plan") == 0
    planned = next((tmp_path / "plan").glob("*.ipynb")).read_text()
    assert f"{jobs_before} Jobs in nasiko-agents" in planned and "nasiko-k8s-build-worker" in planned
    assert len(server.store.list("batch/v1", "Job", "nasiko-agents")) == jobs_before
    assert run_runbook("13", kubeconfig, tmp_path / "go", "dry_run", "false", "confirm", "clean-slate") == 0
    assert server.store.list("batch/v1", "Job", "nasiko-agents") == []
    assert not [p for p in server.store.list("v1", "Pod", "nasiko-agents") if p["status"].get("phase") == "Failed"]
    for name in ("nasiko-backend", "nasiko-k8s-build-worker"):
        assert "kubectl.kubernetes.io/restartedAt" in deployment(server, name)["spec"]["template"]["metadata"]["annotations"]
    result = latest_record(tmp_path / "go", "13-clean-slate-reset")
    assert [c["verb"] for c in result["changes"]] == ["delete-collection", "patch", "patch"]
    assert "Deployments of nasiko are available" in next((tmp_path / "go").glob("*.ipynb")).read_text()


@pytest.mark.parametrize("platform", ["image-pull-missing-secret", "buildkit-down"], indirect=True)
def test_cluster_health_shows_what_is_wrong(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("10", kubeconfig, tmp_path) == 0
    notebook = next(tmp_path.glob("*.ipynb")).read_text()
    result = latest_record(tmp_path, "10-cluster-health")
    assert result["changes"] == []
    if server.scenario == "buildkit-down":
        assert "CrashLoopBackOff" in notebook and "previous instance" in notebook
        assert "buildkit/daemon-down" in {f["code"] for f in result["findings"]}
        assert "Name:         buildkitd-" in notebook           # the describe view picked the troubled pod
    else:
        assert "ImagePullBackOff" in notebook and "image-pull/missing-pull-secret" in {f["code"] for f in result["findings"]}
    assert_no_secret_in(tmp_path, server)


def test_cluster_health_api_calls_do_not_grow_with_pods(tmp_path, monkeypatch):
    calls = {}
    for label, extra in (("small", {}), ("big", {"extra_pods": 2000, "extra_nodes": 10})):
        server = sim.start("buildkit-down", **extra)
        try:
            kubeconfig = str(server.write_kubeconfig(tmp_path / label / "kubeconfig"))
            assert run_runbook("10", kubeconfig, tmp_path / label) == 0
            calls[label] = latest_record(tmp_path / label, "10-cluster-health")["api_calls"]
        finally:
            server.stop()
    assert calls["small"] == calls["big"]
