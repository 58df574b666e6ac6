"""Scale knobs: more nodes of the pool, healthy pods and failed build Jobs, built fast and served consistently."""
from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import time
from collections import Counter

import pytest

from nasiko_nb import sim
from nasiko_nb.sim.platform import NODE_POOL, NODE_POOL_ID
from nasiko_nb.sim.scenarios import build
from tests.sim.test_scenarios import assert_consistent

KUBECTL = shutil.which("kubectl")
JOB_NAME = re.compile(r"^job-[a-z0-9-]+-agent-\d{10}$")


def failed_condition(job: dict) -> bool:
    return any(c["type"] == "Failed" and c["status"] == "True" for c in job["status"].get("conditions", []))


def test_extra_nodes_are_more_nodes_of_the_pool():
    cluster = build("healthy", extra_nodes=6, extra_pods=200)
    nodes = cluster.of_kind("Node")
    assert len(nodes) == len(cluster.nodes) == 8
    names = [n["metadata"]["name"] for n in nodes]
    assert len(set(names)) == 8 and all(re.fullmatch(rf"{NODE_POOL}-[a-z0-9]{{5}}", name) for name in names)
    baseline = nodes[0]
    for node in nodes[1:]:
        assert node["metadata"]["labels"].keys() == baseline["metadata"]["labels"].keys()
        assert node["metadata"]["labels"]["doks.digitalocean.com/node-pool"] == NODE_POOL
        assert node["metadata"]["labels"]["doks.digitalocean.com/node-pool-id"] == NODE_POOL_ID
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == node["metadata"]["name"]
        assert node["status"]["capacity"] == baseline["status"]["capacity"]
        assert node["status"]["allocatable"] == baseline["status"]["allocatable"]
        assert [c["type"] for c in node["status"]["conditions"] if c["status"] == "True"] == ["Ready"]
    for address_type in ("InternalIP", "ExternalIP"):
        addresses = [a["address"] for n in nodes for a in n["status"]["addresses"] if a["type"] == address_type]
        assert len(set(addresses)) == 8
    cidrs = [ipaddress.ip_network(n["spec"]["podCIDR"]) for n in nodes]
    assert not any(a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1:])
    assert len({n["spec"]["providerID"] for n in nodes}) == 8
    assert_consistent(cluster.objects)

    placed = Counter(p["spec"]["nodeName"] for p in cluster.of_kind("Pod") if p["metadata"]["name"].startswith("load-"))
    assert set(placed) == set(names), "extra pods spread over every node, the extra ones too"
    for pod in cluster.of_kind("Pod"):
        if pod["status"].get("podIP"):
            cidr = next(c for c, n in zip(cidrs, names) if n == pod["spec"]["nodeName"])
            assert ipaddress.ip_address(pod["status"]["podIP"]) in cidr


def test_extra_jobs_are_failed_build_jobs_with_one_failed_pod():
    cluster = build("healthy", extra_jobs=120)
    jobs = [j for j in cluster.of_kind("Job", "nasiko-agents") if failed_condition(j)]
    assert len(jobs) == 120
    names = [j["metadata"]["name"] for j in jobs]
    assert len(set(names)) == 120 and all(JOB_NAME.match(name) for name in names)
    pods_by_job = Counter(p["metadata"]["labels"].get("job-name") for p in cluster.of_kind("Pod", "nasiko-agents"))
    for job in jobs:
        assert "ttlSecondsAfterFinished" not in job["spec"]
        assert job["status"]["failed"] == 1 and "succeeded" not in job["status"] and "active" not in job["status"]
        assert pods_by_job[job["metadata"]["name"]] == 1
    failed_pods = [p for p in cluster.of_kind("Pod", "nasiko-agents")
                   if p["metadata"]["labels"].get("job-name") in set(names)]
    assert {p["status"]["phase"] for p in failed_pods} == {"Failed"}
    assert {f"Job nasiko-agents/{name}" for name in names} <= set(cluster.broken)
    assert_consistent(cluster.objects)


def test_extra_jobs_add_to_the_scenarios_jobs():
    cluster = build("cluster-failed-jobs", extra_jobs=400)
    names = [j["metadata"]["name"] for j in cluster.of_kind("Job", "nasiko-agents")]
    assert len(names) == len(set(names)) == 2 + 300 + 12 + 400     # the agents' builds, the scenario's, the extra


@pytest.mark.parametrize("name", ["job-pending-insufficient-cpu", "job-pending-insufficient-memory",
                                  "job-pending-untolerated-taint"])
def test_pending_scenarios_stay_pending_with_extra_nodes(name):
    cluster = build(name, extra_nodes=10)
    [pending] = [p for p in cluster.of_kind("Pod", "nasiko-agents") if p["status"]["phase"] == "Pending"]
    scheduled = next(c for c in pending["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["status"] == "False" and scheduled["message"].startswith("0/12 nodes are available: 12 ")
    assert "nodeName" not in pending["spec"]


def test_knobs_reach_build_store():
    store = sim.build_store("healthy", extra_nodes=3, extra_pods=30, extra_jobs=25)
    assert len(store.list("v1", "Node")) == 5
    assert len(store.list("batch/v1", "Job", "nasiko-agents", field_selector="status.successful=0")) == 25
    assert len([p for p in store.list("v1", "Pod") if p["metadata"]["name"].startswith("load-")]) == 30


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_fifty_nodes_five_thousand_pods_two_thousand_jobs_start_fast(tmp_path):
    started = time.perf_counter()
    server = sim.start("healthy", extra_nodes=48, extra_pods=3000, extra_jobs=2000)
    elapsed = time.perf_counter() - started
    try:
        assert elapsed < 30, f"starting the scaled cluster took {elapsed:.1f}s"
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")

        def kubectl(*args: str) -> list[str]:
            result = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                                    text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            return result.stdout.splitlines()

        assert len(kubectl("get", "nodes", "--no-headers")) == 50
        pods = json.loads("\n".join(kubectl("get", "pods", "-A", "-o", "json")))["items"]
        assert 4900 <= len(pods) <= 5100
        assert len({p["spec"].get("nodeName") for p in pods if p["spec"].get("nodeName")}) == 50
        failed = kubectl("get", "jobs", "-n", "nasiko-agents", "--field-selector", "status.successful=0",
                         "--no-headers", "-o", "custom-columns=NAME:.metadata.name")
        assert len(failed) == 2000 and all(JOB_NAME.match(name) for name in failed)
        assert len(kubectl("top", "nodes", "--no-headers")) == 50
    finally:
        server.stop()
