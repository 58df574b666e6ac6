"""Snapshot replay: kubectl dumps (List, typed list, multi-document YAML, directories with logs) and bad input."""
from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from nasiko_nb.sim import SnapshotError, build_store, start
from nasiko_nb.sim.store import ApiError

POD_LIST = {
    "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "123"},
    "items": [{"metadata": {"name": "agent-x-1-abc-def12", "namespace": "nasiko-agents", "labels": {"app": "agent-x-1"}},
               "spec": {"containers": [{"name": "agent", "image": "registry.digitalocean.com/nasiko-images/x:v1"}]},
               "status": {"phase": "Pending", "containerStatuses": [
                   {"name": "agent", "ready": False, "restartCount": 0, "image": "registry.digitalocean.com/nasiko-images/x:v1",
                    "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}}],
}

DEPLOYMENTS_YAML = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: agent-x-1
      namespace: nasiko-agents
    spec:
      replicas: 1
      selector: {matchLabels: {app: agent-x-1}}
      template:
        metadata: {labels: {app: agent-x-1}}
        spec:
          containers: [{name: agent, image: "registry.digitalocean.com/nasiko-images/x:v1"}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: agent-x-1, namespace: nasiko-agents}
    spec:
      selector: {app: agent-x-1}
      ports: [{name: http, port: 80, targetPort: 5000}]
    """)


@pytest.fixture
def snapshot_dir(tmp_path):
    (tmp_path / "pods.json").write_text(json.dumps(POD_LIST))
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "deployments.yaml").write_text(DEPLOYMENTS_YAML)
    (tmp_path / "events.yml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "agent-x-1-abc-def12.1", "namespace": "nasiko-agents"},
         "involvedObject": {"kind": "Pod", "name": "agent-x-1-abc-def12", "namespace": "nasiko-agents"},
         "reason": "Failed", "type": "Warning", "message": "Error: ImagePullBackOff"}]}))
    logs = tmp_path / "logs" / "nasiko-agents" / "agent-x-1-abc-def12"
    logs.mkdir(parents=True)
    (logs / "agent.log").write_text("current log\n")
    (logs / "agent.previous.log").write_text("previous log\n")
    (tmp_path / "logs" / "stray.yaml").write_text("not: [a, kubernetes object")
    return tmp_path


def test_directory_with_logs(snapshot_dir):
    store = build_store(snapshot=snapshot_dir)
    pod = store.get("v1", "Pod", "nasiko-agents", "agent-x-1-abc-def12")
    assert pod["kind"] == "Pod" and pod["metadata"]["uid"]
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    assert store.get("apps/v1", "Deployment", "nasiko-agents", "agent-x-1")["spec"]["replicas"] == 1
    assert [e["reason"] for e in store.list("v1", "Event", "nasiko-agents")] == ["Failed"]
    assert store.get("v1", "Namespace", None, "nasiko-agents")["status"]["phase"] == "Active"
    assert store.get_log("nasiko-agents", "agent-x-1-abc-def12", "agent") == "current log\n"
    assert store.get_log("nasiko-agents", "agent-x-1-abc-def12", "agent", previous=True) == "previous log\n"
    with pytest.raises(ApiError) as error:
        store.delete("v1", "Pod", "nasiko-agents", "agent-x-1-abc-def12")
    assert error.value.status == 405


def test_kubectl_yaml_list_file(tmp_path):
    dump = tmp_path / "all.yaml"
    dump.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred", "namespace": "nasiko"}, "type": "Opaque"},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "b"}}]}))
    store = build_store(snapshot=dump)
    assert store.get("v1", "Secret", "nasiko", "regcred")["type"] == "Opaque"
    assert store.get("v1", "ConfigMap", "default", "cm")["data"] == {"a": "b"}
    assert {n["metadata"]["name"] for n in store.list("v1", "Namespace")} == {"nasiko", "default"}


def test_writable_snapshot_rolls_out_new_pods(snapshot_dir):
    store = build_store(snapshot=snapshot_dir, writable_snapshot=True)
    deploy = store.get("apps/v1", "Deployment", "nasiko-agents", "agent-x-1")
    deploy["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "agent-registry-credentials"}]
    store.update(deploy)
    pods = store.list("v1", "Pod", "nasiko-agents", label_selector="pod-template-hash")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"


@pytest.mark.parametrize("name, content, problem", [
    ("broken.yaml", "kind: Pod\nmetadata: [unclosed", "not valid YAML"),
    ("broken.json", '{"kind": "PodList", ', "not valid JSON"),
    ("nokind.yaml", "apiVersion: v1\nmetadata: {name: x}\n", "has no kind"),
    ("unknown.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n", "unknown kind Widget"),
    ("empty.yaml", "# nothing here\n", "empty"),
    ("scalar.yaml", "just a string\n", "not a Kubernetes object"),
    ("noname.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {}\n", "has no metadata.name"),
    ("baditem.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"metadata": {"name": "x"}}]}), "item 0 has no kind"),
])
def test_malformed_snapshot_gives_one_clear_line(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SnapshotError) as error:
        build_store(snapshot=path)
    message = str(error.value)
    assert problem in message and str(path) in message and "\n" not in message


def test_missing_and_empty_directory(tmp_path):
    with pytest.raises(SnapshotError, match="no such file or directory"):
        build_store(snapshot=tmp_path / "absent")
    with pytest.raises(SnapshotError, match="holds no"):
        build_store(snapshot=tmp_path)


def test_replay_served_over_http(snapshot_dir):
    from kubernetes import client, config
    with start(snapshot=snapshot_dir) as server:
        kubeconfig = server.write_kubeconfig(snapshot_dir / "kubeconfig")
        api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        pods = api.list_namespaced_pod("nasiko-agents").items
        assert [p.metadata.name for p in pods] == ["agent-x-1-abc-def12"]
        log = api.read_namespaced_pod_log("agent-x-1-abc-def12", "nasiko-agents", container="agent")
        assert log == "current log\n"
