"""09-cluster-out-of-resources against the scheduling and clean-up scenarios, end to end (papermill)."""
from __future__ import annotations

import base64
import json

import boto3
import nbformat
import pytest

from nasiko_nb import sim
from tests.runbook_runs import assert_no_secret_in, latest_record, run_runbook

RUNBOOK = "09-cluster-out-of-resources"
EXPECTED_09 = {
    "healthy": set(),
    "job-pending-insufficient-cpu": {"scheduling/insufficient-cpu"},
    "job-pending-insufficient-memory": {"scheduling/insufficient-memory"},
    "job-pending-untolerated-taint": {"scheduling/untolerated-taint"},
    "cluster-evicted-pods": {"resources/evicted-pods"},
    "cluster-failed-jobs": {"resources/failed-jobs", "resources/finished-jobs-without-ttl",
                            "resources/orphaned-configmaps"},
    "cluster-node-pressure": {"resources/node-pressure", "resources/evicted-pods"},
    "ecr-healthy": set(),
}


def outputs(notebook_path, mime: str) -> list:
    notebook = nbformat.read(notebook_path, as_version=4)
    return [output["data"][mime] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if mime in output.get("data", {})]


@pytest.mark.parametrize("platform", sorted(EXPECTED_09), indirect=True)
def test_resource_runbook_finds_the_cause_and_draws_the_chart(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("09", kubeconfig, tmp_path) == 0
    result = latest_record(tmp_path, RUNBOOK)
    assert {f["code"] for f in result["findings"]} == EXPECTED_09[server.scenario]
    assert result["changes"] == []
    [png] = outputs(next(tmp_path.glob("*.ipynb")), "image/png")
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "image/png" in next(tmp_path.glob("*.html")).read_text() or "data:image/png" in next(
        tmp_path.glob("*.html")).read_text()
    assert_no_secret_in(tmp_path, server)


@pytest.mark.parametrize("platform", ["cluster-failed-jobs"], indirect=True)
def test_failed_jobs_cleaned_only_on_confirm_with_one_request(platform, tmp_path):
    server, kubeconfig = platform

    def failed_jobs() -> int:
        return sum(1 for j in server.store.list("batch/v1", "Job", "nasiko-agents") if j["status"].get("failed")
                   and not j["status"].get("succeeded"))

    assert run_runbook("09", kubeconfig, tmp_path / "dry") == 0 and failed_jobs() == 300
    assert run_runbook("09", kubeconfig, tmp_path / "wrong", "dry_run", "false",
                       "confirm", "delete-failed-jobs/default") == 2
    assert failed_jobs() == 300
    dry_calls = latest_record(tmp_path / "dry", RUNBOOK)["api_calls"]
    assert run_runbook("09", kubeconfig, tmp_path / "go", "dry_run", "false",
                       "confirm", "delete-failed-jobs/nasiko-agents") == 0
    assert failed_jobs() == 0
    result = latest_record(tmp_path / "go", RUNBOOK)
    [change] = result["changes"]
    assert change["verb"] == "delete-collection" and change["deleted"] == 300
    assert result["api_calls"] == dry_calls + 3        # check list, delete-collection, verify list
    notebook = (next((tmp_path / "go").glob("*.ipynb"))).read_text()
    assert "verify: 0 of the 300 planned failed Jobs still in nasiko-agents" in notebook
    assert "delete-failed-jobs: 300 of 300" in notebook    # the progress line the record keeps


@pytest.mark.parametrize("platform", ["job-pending-insufficient-cpu"], indirect=True)
def test_digitalocean_node_pool_scaled_through_pydo_and_watched(platform, tmp_path):
    server, kubeconfig = platform
    [cluster] = server.digitalocean.world.clusters.values()
    [pool] = cluster.node_pools
    assert run_runbook("09", kubeconfig, tmp_path / "dry", "node_count", "3") == 0
    assert pool.count == 2
    dry = next((tmp_path / "dry").glob("*.ipynb")).read_text()
    assert "node count 2 -> 3" in dry and "scale-node-pool/pool-8k3x1m2vd" in dry
    assert run_runbook("09", kubeconfig, tmp_path / "go", "node_count", "3", "wait_s", "20", "dry_run", "false",
                       "confirm", "scale-node-pool/pool-8k3x1m2vd") == 0
    assert pool.count == 3
    [change] = latest_record(tmp_path / "go", RUNBOOK)["changes"]
    assert change["fix"] == "scale-node-pool" and change["resource"] == "DigitalOcean node pool nasiko-cluster/pool-8k3x1m2vd"
    notebook = next((tmp_path / "go").glob("*.ipynb")).read_text()
    assert "3 of 3 nodes of the pool Ready in Kubernetes" in notebook
    assert len(server.store.list("v1", "Node", None)) == 3
    assert_no_secret_in(tmp_path / "go", server)


@pytest.mark.parametrize("platform", ["ecr-healthy"], indirect=True)
def test_eks_node_group_scaled_through_boto3(platform, tmp_path):
    server, kubeconfig = platform
    eks = boto3.client("eks", endpoint_url=server.aws.endpoint_url, region_name=server.environment()["AWS_DEFAULT_REGION"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    assert run_runbook("09", kubeconfig, tmp_path, "node_count", "5", "wait_s", "0", "dry_run", "false",
                       "confirm", "scale-node-group/nasiko-nodes") == 2     # a target that does not exist
    assert eks.describe_nodegroup(clusterName="nasiko", nodegroupName="nasiko-nodes")["nodegroup"]["scalingConfig"][
        "desiredSize"] == 2
    assert run_runbook("09", kubeconfig, tmp_path / "go", "node_count", "5", "wait_s", "0", "dry_run", "false",
                       "confirm", "scale-node-pool/nasiko-nodes") == 0
    scaling = eks.describe_nodegroup(clusterName="nasiko", nodegroupName="nasiko-nodes")["nodegroup"]["scalingConfig"]
    assert scaling == {"minSize": 1, "maxSize": 5, "desiredSize": 5}
    notebook = next((tmp_path / "go").glob("*.ipynb")).read_text()
    assert "bounds change too: min 1 -> 1, max 4 -> 5" in notebook
    assert "node group ACTIVE, desired 5" in notebook and "new nodes usually join in 2-5 minutes" in notebook
    [change] = latest_record(tmp_path / "go", RUNBOOK)["changes"]
    assert change["resource"] == "EKS node group nasiko/nasiko-nodes" and json.loads(change["body"]) == {"count": 5}


def test_api_calls_do_not_grow_with_nodes_pods_and_jobs(tmp_path, monkeypatch):
    calls = {}
    for label, extra in (("small", {"extra_nodes": 1}),
                         ("big", {"extra_nodes": 20, "extra_pods": 600, "extra_jobs": 400})):
        server = sim.start("healthy", **extra)
        try:
            for name, value in server.environment().items():
                monkeypatch.setenv(name, value)
            kubeconfig = str(server.write_kubeconfig(tmp_path / label / "kubeconfig"))
            before = server.store.request_count
            assert run_runbook("09", kubeconfig, tmp_path / label) == 0
            calls[label] = (latest_record(tmp_path / label, RUNBOOK)["api_calls"], server.store.request_count - before)
            assert len(server.store.list("batch/v1", "Job", None)) >= (400 if label == "big" else 0)
        finally:
            server.stop()
    assert calls["small"] == calls["big"]
    assert calls["small"][0] == 8     # version check + 7 lists (namespaces, nodes, node metrics, pods, events, jobs, configmaps)
