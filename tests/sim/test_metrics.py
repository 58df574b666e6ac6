"""metrics.k8s.io as metrics-server serves it: discovery, NodeMetrics and PodMetrics computed from what runs, and
kubectl top against the emulator."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from nasiko_nb import sim
from nasiko_nb.sim.kubelet import parse_cpu, parse_memory
from nasiko_nb.sim.metrics import PRESSURE_MEMORY_SHARE
from tests.sim.test_apiserver import raw

KUBECTL = shutil.which("kubectl")
METRICS = "/apis/metrics.k8s.io/v1beta1"
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def healthy():
    server = sim.start("healthy")
    yield server
    server.stop()


@pytest.fixture
def fresh():
    server = sim.start("healthy")
    yield server
    server.stop()


def kubectl_runner(server, tmp_path):
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
                               *args], capture_output=True, text=True, timeout=60)

    return run


def nanocores(quantity: str) -> int:
    assert quantity.endswith("n")
    return int(quantity[:-1])


def kibibytes(quantity: str) -> int:
    assert quantity.endswith("Ki")
    return int(quantity[:-2])


def running_pods(server, namespace=None) -> list[dict]:
    return [p for p in server.store.list("v1", "Pod", namespace) if p["status"]["phase"] == "Running"]


def test_discovery_lists_the_metrics_group(healthy):
    status, groups = raw(healthy, "GET", "/apis")
    [group] = [g for g in groups["groups"] if g["name"] == "metrics.k8s.io"]
    assert group["preferredVersion"] == {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}
    assert raw(healthy, "GET", "/apis/metrics.k8s.io")[1]["preferredVersion"]["version"] == "v1beta1"
    status, resources = raw(healthy, "GET", METRICS)
    assert status == 200 and resources["groupVersion"] == "metrics.k8s.io/v1beta1"
    assert {r["name"]: (r["kind"], r["namespaced"], r["verbs"]) for r in resources["resources"]} == {
        "nodes": ("NodeMetrics", False, ["get", "list"]), "pods": ("PodMetrics", True, ["get", "list"])}


def test_node_metrics_follow_the_pods_on_each_node(healthy):
    status, listing = raw(healthy, "GET", f"{METRICS}/nodes")
    assert status == 200 and listing["kind"] == "NodeMetricsList" and listing["apiVersion"] == "metrics.k8s.io/v1beta1"
    nodes = {n["metadata"]["name"]: n for n in healthy.store.list("v1", "Node")}
    assert sorted(m["metadata"]["name"] for m in listing["items"]) == sorted(nodes)
    for item in listing["items"]:
        node = nodes[item["metadata"]["name"]]
        assert item["kind"] == "NodeMetrics" and item["window"] == "20.035s"
        assert item["metadata"]["labels"] == node["metadata"]["labels"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["timestamp"])
        assert item["metadata"]["creationTimestamp"] >= item["timestamp"]
        requested_cpu = sum(parse_cpu(c["resources"]["requests"]["cpu"]) for p in running_pods(healthy)
                            if p["spec"]["nodeName"] == node["metadata"]["name"] for c in p["spec"]["containers"])
        used_cpu_m = nanocores(item["usage"]["cpu"]) / 1e6
        assert 0.35 * requested_cpu + 90 <= used_cpu_m <= 0.70 * requested_cpu + 140
        assert 0 < kibibytes(item["usage"]["memory"]) * 1024 < parse_memory(node["status"]["allocatable"]["memory"])
    again = raw(healthy, "GET", f"{METRICS}/nodes")[1]
    assert [i["usage"] for i in again["items"]] == [i["usage"] for i in listing["items"]]


def test_pod_metrics_per_running_container(healthy):
    status, listing = raw(healthy, "GET", f"{METRICS}/namespaces/nasiko/pods")
    assert status == 200 and listing["kind"] == "PodMetricsList"
    pods = {p["metadata"]["name"]: p for p in running_pods(healthy, "nasiko")}
    assert sorted(m["metadata"]["name"] for m in listing["items"]) == sorted(pods)
    for item in listing["items"]:
        pod = pods[item["metadata"]["name"]]
        assert item["metadata"]["namespace"] == "nasiko" and item["metadata"]["labels"] == pod["metadata"]["labels"]
        requests = {c["name"]: c["resources"]["requests"] for c in pod["spec"]["containers"]}
        assert [c["name"] for c in item["containers"]] == list(requests)
        for container in item["containers"]:
            cpu = nanocores(container["usage"]["cpu"]) / 1e6 / parse_cpu(requests[container["name"]]["cpu"])
            memory = kibibytes(container["usage"]["memory"]) * 1024 / parse_memory(
                requests[container["name"]]["memory"])
            assert 0.35 <= cpu < 0.70 and 0.49 <= memory < 0.90
    everywhere = raw(healthy, "GET", f"{METRICS}/pods")[1]["items"]
    assert {m["metadata"]["namespace"] for m in everywhere} >= {"nasiko", "nasiko-agents", "kube-system", "buildkit"}
    selected = raw(healthy, "GET", f"{METRICS}/namespaces/nasiko/pods?labelSelector=app%3Dnasiko-k8s-build-worker")
    assert len(selected[1]["items"]) == 2


def test_get_one_and_missing_ones(healthy):
    node = healthy.store.list("v1", "Node")[0]["metadata"]["name"]
    status, item = raw(healthy, "GET", f"{METRICS}/nodes/{node}")
    assert status == 200 and item["kind"] == "NodeMetrics" and item["metadata"]["name"] == node
    status, error = raw(healthy, "GET", f"{METRICS}/nodes/no-such-node")
    assert status == 404 and error["reason"] == "NotFound"
    assert error["message"] == 'nodemetrics.metrics.k8s.io "no-such-node" not found'
    status, error = raw(healthy, "GET", f"{METRICS}/namespaces/nasiko/pods/nope")
    assert status == 404 and error["message"] == 'podmetrics.metrics.k8s.io "nasiko/nope" not found'
    completed = next(p for p in healthy.store.list("v1", "Pod", "nasiko") if p["status"]["phase"] == "Succeeded")
    assert raw(healthy, "GET", f"{METRICS}/namespaces/nasiko/pods/{completed['metadata']['name']}")[0] == 404


@pytest.mark.parametrize("method, path", [("POST", "/nodes"), ("PUT", "/nodes/x"), ("PATCH", "/nodes/x"),
                                          ("DELETE", "/nodes/x"), ("DELETE", "/namespaces/nasiko/pods"),
                                          ("GET", "/nodes?watch=true")])
def test_metrics_are_read_only(healthy, method, path):
    status, error = raw(healthy, method, METRICS + path, body={"metadata": {"name": "x"}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert status == 405 and error["kind"] == "Status" and error["reason"] == "MethodNotAllowed"


def test_node_under_memory_pressure_uses_most_of_its_memory():
    server = sim.start("cluster-node-pressure")
    try:
        [pressured] = [n for n in server.store.list("v1", "Node")
                       if any(c["type"] == "MemoryPressure" and c["status"] == "True" for c in n["status"]["conditions"])]
        usage = raw(server, "GET", f"{METRICS}/nodes/{pressured['metadata']['name']}")[1]["usage"]
        share = kibibytes(usage["memory"]) * 1024 / parse_memory(pressured["status"]["allocatable"]["memory"])
        assert share == pytest.approx(PRESSURE_MEMORY_SHARE, abs=0.001)
        others = [i for i in raw(server, "GET", f"{METRICS}/nodes")[1]["items"]
                  if i["metadata"]["name"] != pressured["metadata"]["name"]]
        assert all(kibibytes(i["usage"]["memory"]) < 0.8 * kibibytes(usage["memory"]) for i in others)
    finally:
        server.stop()


def test_metrics_reflect_pods_as_they_change(fresh):
    deploy = fresh.store.get("apps/v1", "Deployment", "nasiko", "nasiko-web")
    deploy["spec"]["replicas"] = 3
    fresh.store.update(deploy)
    web = "/namespaces/nasiko/pods?labelSelector=app%3Dnasiko-web"
    assert len(raw(fresh, "GET", METRICS + web)[1]["items"]) == 3
    before = {i["metadata"]["name"]: nanocores(i["usage"]["cpu"]) for i in raw(fresh, "GET", f"{METRICS}/nodes")[1]["items"]}
    victim = next(p for p in running_pods(fresh, "nasiko") if p["metadata"]["labels"].get("app") == "nasiko-backend")
    fresh.store.delete("v1", "Pod", "nasiko", victim["metadata"]["name"])
    after = {i["metadata"]["name"]: nanocores(i["usage"]["cpu"]) for i in raw(fresh, "GET", f"{METRICS}/nodes")[1]["items"]}
    assert after[victim["spec"]["nodeName"]] < before[victim["spec"]["nodeName"]]
    assert raw(fresh, "GET", f"{METRICS}/namespaces/nasiko/pods/{victim['metadata']['name']}")[0] == 404


@needs_kubectl
def test_kubectl_top_nodes_and_pods(healthy, tmp_path):
    kubectl = kubectl_runner(healthy, tmp_path)
    top_nodes = kubectl("top", "nodes")
    assert top_nodes.returncode == 0, top_nodes.stderr
    header, *rows = top_nodes.stdout.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    nodes = sorted(n["metadata"]["name"] for n in healthy.store.list("v1", "Node"))
    assert sorted(row.split()[0] for row in rows) == nodes
    assert all(re.fullmatch(r"\d+m \d+% \d+Mi \d+%", " ".join(row.split()[1:])) for row in rows)

    top_pods = kubectl("top", "pods", "-n", "nasiko")
    assert top_pods.returncode == 0, top_pods.stderr
    header, *rows = top_pods.stdout.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert sorted(row.split()[0] for row in rows) == sorted(p["metadata"]["name"] for p in running_pods(healthy, "nasiko"))
    containers = kubectl("top", "pods", "-n", "nasiko", "-l", "app=kong-gateway", "--containers")
    assert {row.split()[1] for row in containers.stdout.splitlines()[1:]} == {"kong", "chat-history"}
    missing = kubectl("top", "pod", "-n", "nasiko", "nope")
    assert 'podmetrics.metrics.k8s.io "nasiko/nope" not found' in missing.stderr


@needs_kubectl
def test_kubectl_raw_get_and_api_resources(healthy, tmp_path):
    kubectl = kubectl_runner(healthy, tmp_path)
    listing = json.loads(kubectl("get", "--raw", f"{METRICS}/nodes").stdout)
    assert listing["kind"] == "NodeMetricsList" and len(listing["items"]) == len(healthy.store.list("v1", "Node"))
    table = kubectl("get", "nodes.metrics.k8s.io")
    assert table.returncode == 0 and table.stdout.split("\n")[0].split() == ["NAME", "CPU", "MEMORY", "WINDOW"]
    resources = kubectl("api-resources")
    assert resources.returncode == 0 and "Error" not in resources.stderr
    assert re.search(r"^nodes\s+metrics\.k8s\.io/v1beta1\s+false\s+NodeMetrics$", resources.stdout, re.M)
    assert re.search(r"^pods\s+metrics\.k8s\.io/v1beta1\s+true\s+PodMetrics$", resources.stdout, re.M)
    assert kubectl("get", "pods", "-n", "nasiko", "-o", "name").stdout.count("pod/") == \
        len(healthy.store.list("v1", "Pod", "nasiko")), "plain `pods` still means the core resource"


def test_replayed_snapshot_serves_the_metrics_it_captured(tmp_path):
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "real-node", "labels": {"pool": "p"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"memory": "8Gi"}}}
    measured = {"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetricsList", "items": [
        {"metadata": {"name": "real-node", "labels": {"pool": "p"}}, "timestamp": "2026-01-02T03:04:05Z",
         "window": "10.5s", "usage": {"cpu": "1234567n", "memory": "7654321Ki"}}]}
    (tmp_path / "nodes.json").write_text(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": [node]}))
    (tmp_path / "nodemetrics.json").write_text(json.dumps(measured))
    server = sim.start(snapshot=tmp_path)
    try:
        [item] = raw(server, "GET", f"{METRICS}/nodes")[1]["items"]
        assert item["usage"] == {"cpu": "1234567n", "memory": "7654321Ki"} and item["window"] == "10.5s"
        assert raw(server, "GET", f"{METRICS}/nodes?labelSelector=pool%3Dother")[1]["items"] == []
        assert raw(server, "GET", f"{METRICS}/namespaces/default/pods")[1]["items"] == []
    finally:
        server.stop()
