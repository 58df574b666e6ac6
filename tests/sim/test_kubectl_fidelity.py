"""Emulator fidelity: the same calls through the `kubernetes` client and through kubectl 1.32 end in the same state."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from kubernetes import client, config

from nasiko_nb.sim.server import start_server
from nasiko_nb.sim.store import Store

KUBECTL = shutil.which("kubectl")
if KUBECTL is None and not os.environ.get("CI"):
    pytest.skip("kubectl is not installed (set CI to make this a failure)", allow_module_level=True)

NS = "agents"
WEB_UID = "0b9c3a5e-0000-4000-8000-000000000001"


def _container_status(name: str, state: dict, ready: bool, restarts: int = 0, last: dict | None = None) -> dict:
    status = {"name": name, "ready": ready, "restartCount": restarts, "image": f"{name}:1", "imageID": "",
              "state": state}
    if last:
        status["lastState"] = last
    return status


def cluster_objects() -> list[dict]:
    running = {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": "task:1"}]}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}, "status": {"phase": "Active"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": NS, "uid": WEB_UID},
         "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "web:1"}]},
         "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                    "containerStatuses": [_container_status(
                        "web", running, True, restarts=1,
                        last={"terminated": {"exitCode": 1, "reason": "Error",
                                             "finishedAt": "2025-01-01T00:00:00Z"}})]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "multi", "namespace": NS},
         "spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "proxy", "image": "proxy:1"}]},
         "status": {"phase": "Running", "containerStatuses": [_container_status("app", running, True),
                                                              _container_status("proxy", running, True)]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pulling", "namespace": NS},
         "spec": {"containers": [{"name": "agent", "image": "registry.example/agent:missing"}]},
         "status": {"phase": "Pending", "containerStatuses": [_container_status(
             "agent", {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}, False)]}},
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": NS},
         "involvedObject": {"kind": "Pod", "name": "web", "namespace": NS, "uid": WEB_UID, "apiVersion": "v1"},
         "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container web",
         "source": {"component": "kubelet"}, "count": 3,
         "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:05:00Z"},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate-ok", "namespace": NS},
         "spec": {"template": template}, "status": {"succeeded": 1}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate-failed", "namespace": NS},
         "spec": {"template": template}, "status": {"failed": 1}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate-new", "namespace": NS},
         "spec": {"template": template}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat", "namespace": NS},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "chat"}},
                  "template": {"metadata": {"labels": {"app": "chat"}}, "spec": {
                      "imagePullSecrets": [{"name": "old-creds"}],
                      "containers": [{"name": "chat", "image": "chat:1", "env": [{"name": "A", "value": "1"}]},
                                     {"name": "proxy", "image": "proxy:1"}]}}}},
    ]


def loaded_store() -> Store:
    store = Store()
    store.load(cluster_objects())
    store.set_log(NS, "multi", "proxy", "proxy listening on 8080\n")
    store.set_log(NS, "web", "web", "panic: registry unreachable\n", previous=True)
    return store


MERGE_PATCH = {"metadata": {"labels": {"patched": "merge"}}}
STRATEGIC_PATCH = {"spec": {"template": {"spec": {
    "imagePullSecrets": [{"name": "new-creds"}],
    "containers": [{"name": "chat", "image": "chat:2", "env": [{"name": "B", "value": "2"}]}]}}}}
JSON_PATCH = [{"op": "replace", "path": "/spec/replicas", "value": 2},
              {"op": "add", "path": "/metadata/annotations", "value": {"note/x": "json"}}]


@pytest.fixture
def servers():
    with start_server(loaded_store()) as by_client, start_server(loaded_store()) as by_kubectl:
        yield by_client, by_kubectl


def kubectl_runner(server, tmp_path):
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
                                 *args], capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


def state_of(store: Store) -> dict:
    """What must match between the two servers: names, labels, annotations, specs (not versions or uids)."""
    state = {}
    for api_version, kind in [("v1", "Pod"), ("batch/v1", "Job"), ("apps/v1", "Deployment")]:
        state[kind] = [{"name": obj["metadata"]["name"], "labels": obj["metadata"].get("labels"),
                        "annotations": obj["metadata"].get("annotations"), "spec": obj.get("spec")}
                       for obj in store.list(api_version, kind, NS)]
    return state


def test_same_calls_through_client_and_kubectl_give_same_state(servers, tmp_path):
    by_client, by_kubectl = servers
    api = config.new_client_from_config(str(by_client.write_kubeconfig(tmp_path / "client-kubeconfig")))
    core, batch, apps = client.CoreV1Api(api), client.BatchV1Api(api), client.AppsV1Api(api)
    kubectl = kubectl_runner(by_kubectl, tmp_path)

    client_pods = sorted((p.metadata.namespace, p.metadata.name) for p in core.list_pod_for_all_namespaces().items)
    listed = json.loads(kubectl("get", "pods", "-n", NS, "-o", "json").stdout)
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed["items"]) == client_pods

    assert core.read_namespaced_pod_log("multi", NS, container="proxy") == \
        kubectl("logs", "-n", NS, "multi", "-c", "proxy").stdout == "proxy listening on 8080\n"
    assert core.read_namespaced_pod_log("web", NS, previous=True) == \
        kubectl("logs", "-n", NS, "web", "--previous").stdout == "panic: registry unreachable\n"

    for job in batch.list_namespaced_job(NS, field_selector="status.successful=0").items:
        batch.delete_namespaced_job(job.metadata.name, NS, propagation_policy="Background")
    kubectl("delete", "jobs", "-n", NS, "--field-selector", "status.successful=0")

    apps.patch_namespaced_deployment("chat", NS, MERGE_PATCH)
    apps.patch_namespaced_deployment("chat", NS, STRATEGIC_PATCH)
    api.call_api("/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "PATCH",
                 path_params={"namespace": NS, "name": "chat"}, body=JSON_PATCH,
                 header_params={"Content-Type": "application/json-patch+json", "Accept": "application/json"},
                 auth_settings=["BearerToken"], _preload_content=False)
    kubectl("patch", "deployment", "chat", "-n", NS, "--type", "merge", "-p", json.dumps(MERGE_PATCH))
    kubectl("patch", "deployment", "chat", "-n", NS, "--type", "strategic", "-p", json.dumps(STRATEGIC_PATCH))
    kubectl("patch", "deployment", "chat", "-n", NS, "--type", "json", "-p", json.dumps(JSON_PATCH))

    expected = state_of(by_client.store)
    assert state_of(by_kubectl.store) == expected
    assert [job["name"] for job in expected["Job"]] == ["migrate-ok"]
    (chat,) = expected["Deployment"]
    pod_spec = chat["spec"]["template"]["spec"]
    assert [s["name"] for s in pod_spec["imagePullSecrets"]] == ["old-creds", "new-creds"]
    assert pod_spec["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert (chat["spec"]["replicas"], chat["labels"], chat["annotations"]) == (
        2, {"patched": "merge"}, {"note/x": "json"})


def test_kubectl_get_prints_server_side_columns(servers, tmp_path):
    kubectl = kubectl_runner(servers[1], tmp_path)
    lines = kubectl("get", "pods", "-A").stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["pulling"][2:4] == ["0/1", "ImagePullBackOff"]
    assert rows["multi"][2:5] == ["2/2", "Running", "0"]
    assert rows["web"][2:5] == ["1/1", "Running", "1"]
    jobs = kubectl("get", "jobs", "-n", NS).stdout.splitlines()
    assert jobs[0].split()[:4] == ["NAME", "STATUS", "COMPLETIONS", "DURATION"]


def test_kubectl_describe_pod_shows_events(servers, tmp_path):
    kubectl = kubectl_runner(servers[1], tmp_path)
    described = kubectl("describe", "pod", "-n", NS, "web").stdout
    assert "Name:             web" in described or "Name:         web" in described
    assert "BackOff" in described and "Back-off restarting failed container web" in described
    assert "10.0.0.5" in described


def test_kubectl_errors_match_server_messages(servers, tmp_path):
    kubectl = kubectl_runner(servers[1], tmp_path)
    missing = kubectl("get", "pod", "-n", NS, "absent", check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): pods "absent" not found' in missing.stderr
    bad_field = kubectl("get", "pods", "-n", NS, "--field-selector", "spec.bogus=1", check=False)
    assert "field label not supported: spec.bogus" in bad_field.stderr
    previous = kubectl("logs", "-n", NS, "multi", "-c", "app", "--previous", check=False)
    assert 'previous terminated container "app" in pod "multi" not found' in previous.stderr
    assert "Error from server" not in kubectl("api-resources").stderr
