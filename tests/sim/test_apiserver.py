"""The Kubernetes API emulator through the official `kubernetes` client: CRUD, errors, selectors, patches, logs."""
from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from nasiko_nb.sim.server import start_server
from nasiko_nb.sim.store import ApiError, Store


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}


def pod(name: str, ns: str = "agents", labels: dict | None = None, containers=("app",), phase: str = "Running",
        node: str = "node-1", owner: dict | None = None, waiting: str | None = None) -> dict:
    metadata = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        metadata["ownerReferences"] = [owner]
    state = {"waiting": {"reason": waiting, "message": "pull failed"}} if waiting else {
        "running": {"startedAt": "2025-01-01T00:00:00Z"}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": node, "containers": [{"name": c, "image": f"registry.example/{c}:1"}
                                                       for c in containers]},
            "status": {"phase": phase, "containerStatuses": [
                {"name": c, "ready": not waiting, "restartCount": 0, "image": f"registry.example/{c}:1",
                 "imageID": "", "state": state} for c in containers]}}


def deployment(name: str, ns: str = "agents") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"imagePullSecrets": [{"name": "old-creds"}],
                                           "containers": [{"name": "app", "image": "registry.example/app:1",
                                                           "env": [{"name": "A", "value": "1"},
                                                                   {"name": "B", "value": "2"}]},
                                                          {"name": "sidecar", "image": "proxy:1"}]}}},
            "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}


@pytest.fixture
def emulator(tmp_path):
    store = Store()
    store.load([namespace("agents"), namespace("default")])
    server = start_server(store)
    api_client = config.new_client_from_config(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    yield server, api_client
    api_client.close()
    server.stop()


@pytest.fixture
def core(emulator):
    return client.CoreV1Api(emulator[1])


@pytest.fixture
def apps(emulator):
    return client.AppsV1Api(emulator[1])


def raw(server, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict | str]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            status, text, content_type = response.status, response.read().decode(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        status, text, content_type = error.code, error.read().decode(), error.headers["Content-Type"]
    return status, json.loads(text) if content_type.startswith("application/json") else text


def api_error(call, *args, **kwargs) -> tuple[int, dict]:
    with pytest.raises(ApiException) as caught:
        call(*args, **kwargs)
    return caught.value.status, json.loads(caught.value.body)


# -- discovery ----------------------------------------------------------------------------------------------------


def test_every_advertised_group_version_is_served(emulator):
    server, _ = emulator
    status, groups = raw(server, "GET", "/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
    assert status == 200 and groups["kind"] == "APIGroupList"
    for group in groups["groups"]:
        assert raw(server, "GET", f"/apis/{group['name']}")[0] == 200
        for version in group["versions"]:
            status, document = raw(server, "GET", f"/apis/{version['groupVersion']}")
            assert status == 200 and document["groupVersion"] == version["groupVersion"]
    assert raw(server, "GET", "/apis/resource.k8s.io/v1beta1")[0] == 404
    assert raw(server, "GET", "/version")[1]["gitVersion"].startswith("v1.34.")


def test_version_through_client(emulator):
    assert client.VersionApi(emulator[1]).get_code().git_version.startswith("v1.34.")


# -- CRUD and server-set metadata ----------------------------------------------------------------------------------


def test_create_get_list_update_delete_namespaced(core):
    created = core.create_namespaced_pod("agents", pod("web", labels={"app": "web"}))
    assert created.metadata.uid and created.metadata.creation_timestamp and created.metadata.generation == 1
    first_version = int(created.metadata.resource_version)
    fetched = core.read_namespaced_pod("web", "agents")
    assert fetched.spec.containers[0].image == "registry.example/app:1"
    fetched.metadata.labels["tier"] = "front"
    replaced = core.replace_namespaced_pod("web", "agents", fetched)
    assert int(replaced.metadata.resource_version) > first_version
    assert replaced.metadata.labels == {"app": "web", "tier": "front"}
    listing = core.list_namespaced_pod("agents")
    assert [p.metadata.name for p in listing.items] == ["web"]
    assert int(listing.metadata.resource_version) >= int(replaced.metadata.resource_version)
    deleted = core.delete_namespaced_pod("web", "agents")
    assert deleted.metadata.name == "web"
    assert core.list_namespaced_pod("agents").items == []


def test_cluster_scoped_and_all_namespaces(core):
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
    core.create_namespaced_pod("agents", pod("a"))
    core.create_namespaced_pod("default", pod("b", ns="default"))
    assert core.read_node("node-1").metadata.namespace is None
    assert [(p.metadata.namespace, p.metadata.name) for p in core.list_pod_for_all_namespaces().items] == [
        ("agents", "a"), ("default", "b")]


def test_generate_name(core):
    created = core.create_namespaced_config_map("agents", {"metadata": {"generateName": "cfg-"}, "data": {"k": "v"}})
    assert created.metadata.name.startswith("cfg-") and len(created.metadata.name) > 4


def test_generation_counts_spec_changes_only(apps):
    created = apps.create_namespaced_deployment("agents", deployment("chat"))
    assert created.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment("chat", "agents", {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("chat", "agents", {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2


# -- errors ----------------------------------------------------------------------------------------------------------


def test_not_found_body(core, apps):
    status, body = api_error(core.read_namespaced_pod, "missing", "agents")
    assert status == 404 and body["reason"] == "NotFound" and body["message"] == 'pods "missing" not found'
    assert body["details"] == {"name": "missing", "kind": "pods"}
    status, body = api_error(apps.read_namespaced_deployment, "missing", "agents")
    assert body["message"] == 'deployments.apps "missing" not found' and body["details"]["group"] == "apps"


def test_already_exists_and_conflict(core):
    core.create_namespaced_pod("agents", pod("web"))
    status, body = api_error(core.create_namespaced_pod, "agents", pod("web"))
    assert (status, body["reason"], body["message"]) == (409, "AlreadyExists", 'pods "web" already exists')
    stale = core.read_namespaced_pod("web", "agents")
    fresh = core.read_namespaced_pod("web", "agents")
    fresh.metadata.labels = {"v": "2"}
    core.replace_namespaced_pod("web", "agents", fresh)
    stale.metadata.labels = {"v": "stale"}
    status, body = api_error(core.replace_namespaced_pod, "web", "agents", stale)
    assert status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified; please apply your changes to the latest version" in body["message"]


def test_invalid_names_and_missing_namespace(core):
    status, body = api_error(core.create_namespaced_pod, "agents", {"metadata": {}, "spec": {"containers": []}})
    assert status == 422 and body["reason"] == "Invalid" and "name or generateName is required" in body["message"]
    status, body = api_error(core.create_namespaced_pod, "agents", pod("Bad_Name"))
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.name"
    status, body = api_error(core.create_namespaced_pod, "nowhere", pod("web", ns="nowhere"))
    assert (status, body["reason"], body["message"]) == (404, "NotFound", 'namespaces "nowhere" not found')


def test_read_only_store_rejects_writes(tmp_path):
    store = Store(read_only=True)
    store.load([namespace("agents"), pod("web")])
    with start_server(store) as server:
        core = client.CoreV1Api(config.new_client_from_config(str(server.write_kubeconfig(tmp_path / "k"))))
        assert core.read_namespaced_pod("web", "agents").metadata.name == "web"
        status, body = api_error(core.delete_namespaced_pod, "web", "agents")
        assert status == 405 and body["reason"] == "MethodNotAllowed"
        assert api_error(core.create_namespaced_pod, "agents", pod("other"))[0] == 405


# -- selectors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("selector, expected", [
    ("app=web", ["web-1", "web-2"]),
    ("app==web", ["web-1", "web-2"]),
    ("app!=web", ["db", "plain"]),
    ("app in (web, db)", ["db", "web-1", "web-2"]),
    ("app notin (web)", ["db", "plain"]),
    ("tier", ["web-1"]),
    ("!tier", ["db", "plain", "web-2"]),
    ("app=web,tier=front", ["web-1"]),
    ("app in (web),!tier", ["web-2"]),
])
def test_label_selector_operators(core, selector, expected):
    for name, labels in [("web-1", {"app": "web", "tier": "front"}), ("web-2", {"app": "web"}),
                         ("db", {"app": "db"}), ("plain", {})]:
        core.create_namespaced_pod("agents", pod(name, labels=labels))
    names = [p.metadata.name for p in core.list_namespaced_pod("agents", label_selector=selector).items]
    assert sorted(names) == expected


def test_field_selectors(core):
    core.create_namespaced_pod("agents", pod("running", node="node-1"))
    core.create_namespaced_pod("agents", pod("pending", phase="Pending", node="node-2"))
    names = lambda **kw: sorted(p.metadata.name for p in core.list_pod_for_all_namespaces(**kw).items)  # noqa: E731
    assert names(field_selector="status.phase=Pending") == ["pending"]
    assert names(field_selector="status.phase!=Pending") == ["running"]
    assert names(field_selector="spec.nodeName==node-1") == ["running"]
    assert names(field_selector="metadata.name=pending,metadata.namespace=agents") == ["pending"]
    status, body = api_error(core.list_pod_for_all_namespaces, field_selector="spec.bogus=1")
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"].endswith("field label not supported: spec.bogus")


def test_event_field_selectors(core):
    for name, reason, kind in [("e1", "Failed", "Pod"), ("e2", "Pulled", "Pod"), ("e3", "Failed", "Node")]:
        core.create_namespaced_event("agents", {
            "metadata": {"name": name}, "reason": reason, "type": "Warning" if reason == "Failed" else "Normal",
            "involvedObject": {"kind": kind, "name": "web", "namespace": "agents", "uid": "u-1",
                               "apiVersion": "v1", "fieldPath": "spec.containers{app}"}})

    def select(selector: str) -> list[str]:
        return sorted(e.metadata.name for e in core.list_namespaced_event("agents", field_selector=selector).items)

    assert select("involvedObject.kind=Pod,involvedObject.name=web,involvedObject.uid=u-1") == ["e1", "e2"]
    assert select("reason=Failed") == ["e1", "e3"]
    assert select("type=Normal") == ["e2"]
    assert select("involvedObject.fieldPath=spec.containers{app},involvedObject.apiVersion=v1") == ["e1", "e2", "e3"]
    assert select("involvedObject.namespace!=agents") == []


def test_job_status_successful_counts_absent_as_zero(emulator):
    batch = client.BatchV1Api(emulator[1])
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
    batch.create_namespaced_job("agents", {"metadata": {"name": "never-ran"}, "spec": {"template": template}})
    batch.create_namespaced_job("agents", {"metadata": {"name": "done"}, "spec": {"template": template}})
    done = batch.read_namespaced_job("done", "agents")
    batch.patch_namespaced_job_status("done", "agents", {"status": {"succeeded": 1}})
    assert done.status is None or done.status.succeeded is None
    failed = batch.list_namespaced_job("agents", field_selector="status.successful=0").items
    assert [job.metadata.name for job in failed] == ["never-ran"]
    assert [j.metadata.name for j in batch.list_namespaced_job("agents", field_selector="status.successful=1").items] \
        == ["done"]


# -- patches -----------------------------------------------------------------------------------------------------


def test_merge_patch(emulator, apps):
    server, api_client = emulator
    apps.create_namespaced_deployment("agents", deployment("chat"))
    status, patched = raw(server, "PATCH", "/apis/apps/v1/namespaces/agents/deployments/chat",
                          {"metadata": {"labels": {"team": "ai"}},
                           "spec": {"template": {"spec": {"imagePullSecrets": [{"name": "new-creds"}],
                                                          "containers": [{"name": "app", "image": "x:2"}]}}},
                           "status": {"readyReplicas": 99}},
                          {"Content-Type": "application/merge-patch+json"})
    assert status == 200
    spec = patched["spec"]["template"]["spec"]
    assert spec["containers"] == [{"name": "app", "image": "x:2"}]
    assert spec["imagePullSecrets"] == [{"name": "new-creds"}]
    assert patched["metadata"]["labels"] == {"team": "ai"}
    assert patched["status"]["readyReplicas"] == 1
    _, removed = raw(server, "PATCH", "/apis/apps/v1/namespaces/agents/deployments/chat",
                     {"metadata": {"labels": {"team": None}}}, {"Content-Type": "application/merge-patch+json"})
    assert removed["metadata"]["labels"] == {}


def test_strategic_merge_patch_merges_lists_by_key(apps):
    apps.create_namespaced_deployment("agents", deployment("chat"))
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
        "imagePullSecrets": [{"name": "new-creds"}],
        "containers": [{"name": "app", "image": "registry.example/app:2",
                        "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}, {"name": "A",
                                                                                           "$patch": "delete"}]}]}}}}
    patched = apps.patch_namespaced_deployment("chat", "agents", patch)
    spec = patched.spec.template.spec
    assert [s.name for s in spec.image_pull_secrets] == ["old-creds", "new-creds"]
    assert [(c.name, c.image) for c in spec.containers] == [("app", "registry.example/app:2"), ("sidecar", "proxy:1")]
    assert [(e.name, e.value) for e in spec.containers[0].env] == [("B", "20"), ("C", "3")]
    replaced = apps.patch_namespaced_deployment("chat", "agents", {"spec": {"template": {"spec": {
        "imagePullSecrets": [{"$patch": "replace"}, {"name": "only"}]}}}})
    assert [s.name for s in replaced.spec.template.spec.image_pull_secrets] == ["only"]


def test_strategic_merge_of_ports_and_primitive_set(core):
    body = pod("web")
    body["metadata"]["finalizers"] = ["a"]
    body["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "name": "http"}]
    core.create_namespaced_pod("agents", body)
    patched = core.patch_namespaced_pod("web", "agents", {
        "metadata": {"finalizers": ["b"]},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "name": "web"},
                                                          {"containerPort": 443}]}]}})
    assert patched.metadata.finalizers == ["a", "b"]
    assert [(p.container_port, p.name) for p in patched.spec.containers[0].ports] == [(80, "web"), (443, None)]


def test_json_patch_operations(emulator, core):
    server, _ = emulator
    core.create_namespaced_config_map("agents", {"metadata": {"name": "cfg", "annotations": {"a/b": "1"}},
                                                 "data": {"x": "1", "y": "2"}})
    ops = [{"op": "test", "path": "/data/x", "value": "1"},
           {"op": "add", "path": "/data/z", "value": "3"},
           {"op": "replace", "path": "/data/x", "value": "10"},
           {"op": "remove", "path": "/data/y"},
           {"op": "copy", "from": "/data/z", "path": "/data/w"},
           {"op": "move", "from": "/data/z", "path": "/data/v"},
           {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "escaped"}]
    status, patched = raw(server, "PATCH", "/api/v1/namespaces/agents/configmaps/cfg", ops,
                          {"Content-Type": "application/json-patch+json"})
    assert status == 200
    assert patched["data"] == {"x": "10", "w": "3", "v": "3"}
    assert patched["metadata"]["annotations"] == {"a/b": "escaped"}
    status, body = raw(server, "PATCH", "/api/v1/namespaces/agents/configmaps/cfg",
                       [{"op": "test", "path": "/data/x", "value": "nope"}],
                       {"Content-Type": "application/json-patch+json"})
    assert status == 422 and body["kind"] == "Status"
    assert core.read_namespaced_config_map("cfg", "agents").data["x"] == "10"


def test_apply_patch_is_refused_cleanly(emulator):
    server, _ = emulator
    status, body = raw(server, "PATCH", "/api/v1/namespaces/agents/pods/web", b"kind: Pod",
                       {"Content-Type": "application/apply-patch+yaml"})
    assert status in (404, 415) and body["kind"] == "Status"
    client.CoreV1Api(emulator[1]).create_namespaced_pod("agents", pod("web"))
    status, body = raw(server, "PATCH", "/api/v1/namespaces/agents/pods/web", b"kind: Pod",
                       {"Content-Type": "application/apply-patch+yaml"})
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


def test_patch_with_stale_resource_version_conflicts(core):
    created = core.create_namespaced_pod("agents", pod("web"))
    core.patch_namespaced_pod("web", "agents", {"metadata": {"labels": {"a": "1"}}})
    status, body = api_error(core.patch_namespaced_pod, "web", "agents",
                             {"metadata": {"resourceVersion": created.metadata.resource_version,
                                           "labels": {"a": "2"}}})
    assert (status, body["reason"]) == (409, "Conflict")


# -- status and scale subresources ----------------------------------------------------------------------------------


def test_status_subresource_separates_spec_and_status(core):
    core.create_namespaced_pod("agents", pod("web"))
    patched = core.patch_namespaced_pod_status("web", "agents", {
        "metadata": {"labels": {"ignored": "yes"}}, "status": {"phase": "Failed", "reason": "Evicted"}})
    assert patched.status.phase == "Failed" and patched.status.reason == "Evicted"
    assert "ignored" not in (patched.metadata.labels or {})
    main = core.patch_namespaced_pod("web", "agents", {"status": {"phase": "Running"}, "metadata": {
        "labels": {"kept": "yes"}}})
    assert main.status.phase == "Failed" and main.metadata.labels["kept"] == "yes"
    current = core.read_namespaced_pod_status("web", "agents")
    current.status.phase = "Succeeded"
    current.spec.containers[0].image = "ignored:2"
    replaced = core.replace_namespaced_pod_status("web", "agents", current)
    assert replaced.status.phase == "Succeeded" and replaced.spec.containers[0].image == "registry.example/app:1"


def test_scale_subresource(apps):
    apps.create_namespaced_deployment("agents", deployment("chat"))
    assert apps.read_namespaced_deployment_scale("chat", "agents").spec.replicas == 1
    scaled = apps.patch_namespaced_deployment_scale("chat", "agents", {"spec": {"replicas": 0}})
    assert scaled.spec.replicas == 0 and scaled.status.selector == "app=chat"
    assert apps.read_namespaced_deployment("chat", "agents").spec.replicas == 0


# -- deletion -------------------------------------------------------------------------------------------------------


def test_delete_collection_with_selectors(core):
    for name, labels, phase in [("a", {"app": "x"}, "Failed"), ("b", {"app": "x"}, "Running"),
                                ("c", {"app": "y"}, "Failed")]:
        core.create_namespaced_pod("agents", pod(name, labels=labels, phase=phase))
    deleted = core.delete_collection_namespaced_pod("agents", label_selector="app=x",
                                                    field_selector="status.phase=Failed")
    assert deleted.kind == "PodList"
    assert sorted(p.metadata.name for p in core.list_namespaced_pod("agents").items) == ["b", "c"]


def test_delete_collection_returns_deleted_objects(emulator, core):
    for name in ("a", "b"):
        core.create_namespaced_pod("agents", pod(name, labels={"app": name}))
    status, body = raw(emulator[0], "DELETE", "/api/v1/namespaces/agents/pods?labelSelector=app%20in%20(a)")
    assert status == 200 and body["kind"] == "PodList"
    assert [item["metadata"]["name"] for item in body["items"]] == ["a"]


def _owner(obj) -> dict:
    return {"apiVersion": obj.api_version, "kind": obj.kind, "name": obj.metadata.name, "uid": obj.metadata.uid,
            "controller": True}


def _deployment_tree(apps, core) -> None:
    owner = apps.create_namespaced_deployment("agents", deployment("chat"))
    replica_set = apps.create_namespaced_replica_set("agents", {
        "metadata": {"name": "chat-1", "ownerReferences": [_owner(owner)]},
        "spec": {"selector": {"matchLabels": {"app": "chat"}}, "template": deployment("chat")["spec"]["template"]}})
    core.create_namespaced_pod("agents", pod("chat-1-a", labels={"app": "chat"}, owner=_owner(replica_set)))
    core.create_namespaced_pod("agents", pod("unowned"))


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_cascading_delete(apps, core, policy):
    _deployment_tree(apps, core)
    apps.delete_namespaced_deployment("chat", "agents", propagation_policy=policy)
    assert apps.list_namespaced_replica_set("agents").items == []
    assert [p.metadata.name for p in core.list_namespaced_pod("agents").items] == ["unowned"]


def test_orphan_delete_keeps_dependents_without_owner(apps, core):
    _deployment_tree(apps, core)
    apps.delete_namespaced_deployment("chat", "agents", propagation_policy="Orphan")
    (replica_set,) = apps.list_namespaced_replica_set("agents").items
    assert replica_set.metadata.owner_references is None
    assert len(core.list_namespaced_pod("agents").items) == 2


def test_job_delete_without_policy_orphans_pods_like_the_real_server(emulator, core):
    server, api_client = emulator
    batch = client.BatchV1Api(api_client)
    job = batch.create_namespaced_job("agents", {"metadata": {"name": "migrate"}, "spec": {"template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
    core.create_namespaced_pod("agents", pod("migrate-x", owner=_owner(job)))
    assert raw(server, "DELETE", "/apis/batch/v1/namespaces/agents/jobs/migrate")[0] == 200
    assert [p.metadata.name for p in core.list_namespaced_pod("agents").items] == ["migrate-x"]


def test_namespace_delete_removes_contents(core):
    core.create_namespace({"metadata": {"name": "scratch"}})
    core.create_namespaced_pod("scratch", pod("tmp", ns="scratch"))
    core.delete_namespace("scratch")
    assert core.list_pod_for_all_namespaces().items == []


# -- logs ------------------------------------------------------------------------------------------------------------


def test_pod_logs(emulator, core):
    store = emulator[0].store
    core.create_namespaced_pod("agents", pod("single"))
    core.create_namespaced_pod("agents", pod("multi", containers=("app", "proxy")))
    core.create_namespaced_pod("agents", pod("pulling", waiting="ImagePullBackOff"))
    store.set_log("agents", "single", "app", "one\ntwo\nthree\n")
    store.set_log("agents", "single", "app", "crashed\n", previous=True)
    store.set_log("agents", "multi", "proxy", "proxy up\n")
    assert core.read_namespaced_pod_log("single", "agents") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("single", "agents", tail_lines=2) == "two\nthree\n"
    assert core.read_namespaced_pod_log("single", "agents", previous=True) == "crashed\n"
    stamped = core.read_namespaced_pod_log("single", "agents", timestamps=True, tail_lines=1)
    assert stamped.endswith("Z three\n") and stamped[:4].isdigit()
    assert core.read_namespaced_pod_log("multi", "agents", container="proxy") == "proxy up\n"
    status, body = api_error(core.read_namespaced_pod_log, "multi", "agents")
    assert (status, body["message"]) == (400, "a container name must be specified for pod multi, choose one of: "
                                              "[app proxy]")
    status, body = api_error(core.read_namespaced_pod_log, "multi", "agents", container="app", previous=True)
    assert (status, body["message"]) == (400, 'previous terminated container "app" in pod "multi" not found')
    status, body = api_error(core.read_namespaced_pod_log, "pulling", "agents")
    assert status == 400 and "is waiting to start: trying and failing to pull image" in body["message"]
    assert api_error(core.read_namespaced_pod_log, "absent", "agents")[0] == 404


# -- lists at scale ---------------------------------------------------------------------------------------------


def test_pagination_with_limit_and_continue(core):
    for index in range(7):
        core.create_namespaced_pod("agents", pod(f"p{index}"))
    names, token, pages = [], None, 0
    while True:
        page = core.list_pod_for_all_namespaces(limit=3, _continue=token)
        names += [p.metadata.name for p in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(names)
    assert pages == 3 and names == [f"p{index}" for index in range(7)]


def test_five_thousand_pods_list_fast(emulator):
    server, api_client = emulator
    store = server.store
    store.load(pod(f"agent-{index:05d}", labels={"app": f"a{index % 10}"}) for index in range(5000))
    core = client.CoreV1Api(api_client)
    started = time.perf_counter()
    listing = core.list_pod_for_all_namespaces(_preload_content=False)
    raw_elapsed = time.perf_counter() - started
    assert len(json.loads(listing.data)["items"]) == 5000
    assert raw_elapsed < 1.0
    started = time.perf_counter()
    status, table = raw(server, "GET", "/api/v1/pods?limit=500", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert status == 200 and len(table["rows"]) == 500 and time.perf_counter() - started < 1.0
    assert len(core.list_pod_for_all_namespaces(label_selector="app=a3").items) == 500


# -- tables ----------------------------------------------------------------------------------------------------------


def _table(server, path: str) -> dict:
    status, table = raw(server, "GET", path, headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                  "g=meta.k8s.io,application/json"})
    assert status == 200 and table["kind"] == "Table"
    return table


def test_pod_table_status_column(emulator, core):
    server, _ = emulator
    core.create_namespaced_pod("agents", pod("ok"))
    core.create_namespaced_pod("agents", pod("backoff", waiting="ImagePullBackOff"))
    init = pod("init", waiting=None, phase="Pending")
    init["spec"]["initContainers"] = [{"name": "fetch", "image": "fetch:1"}]
    init["status"] = {"phase": "Pending", "initContainerStatuses": [
        {"name": "fetch", "ready": False, "restartCount": 0, "image": "fetch:1", "imageID": "",
         "state": {"waiting": {"reason": "ErrImagePull"}}}],
        "containerStatuses": [{"name": "app", "ready": False, "restartCount": 0, "image": "a", "imageID": "",
                               "state": {"waiting": {"reason": "PodInitializing"}}}]}
    core.create_namespaced_pod("agents", init)
    evicted = pod("evicted", phase="Failed")
    evicted["status"] = {"phase": "Failed", "reason": "Evicted"}
    core.create_namespaced_pod("agents", evicted)
    done = pod("done", phase="Succeeded")
    done["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    done["status"]["containerStatuses"][0]["restartCount"] = 2
    done["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                                                          "finishedAt": "2020-01-01T00:00:00Z"}}
    core.create_namespaced_pod("agents", done)
    table = _table(server, "/api/v1/namespaces/agents/pods")
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    rows = {row["cells"][0]: row["cells"] for row in table["rows"]}
    assert rows["ok"][1:3] == ["1/1", "Running"]
    assert rows["backoff"][1:3] == ["0/1", "ImagePullBackOff"]
    assert rows["init"][2] == "Init:ErrImagePull"
    assert rows["evicted"][2] == "Evicted"
    assert rows["done"][2] == "Completed" and rows["done"][3].startswith("2 (") and rows["done"][3].endswith(" ago)")
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["rows"][0]["object"]["metadata"]["namespace"] == "agents"
    full = _table(server, "/api/v1/namespaces/agents/pods/ok?includeObject=Object")
    assert full["rows"][0]["object"]["kind"] == "Pod"


def test_other_tables(emulator, apps, core):
    server, api_client = emulator
    apps.create_namespaced_deployment("agents", deployment("chat"))
    core.create_namespaced_secret("agents", {"metadata": {"name": "creds"}, "type": "kubernetes.io/dockerconfigjson",
                                             "data": {".dockerconfigjson": "e30="}})
    deployments = _table(server, "/apis/apps/v1/namespaces/agents/deployments")
    assert [c["name"] for c in deployments["columnDefinitions"]][:5] == [
        "Name", "Ready", "Up-to-date", "Available", "Age"]
    assert deployments["rows"][0]["cells"][:4] == ["chat", "1/1", 1, 1]
    secrets = _table(server, "/api/v1/namespaces/agents/secrets")
    assert secrets["rows"][0]["cells"][:3] == ["creds", "kubernetes.io/dockerconfigjson", 1]
    configmaps = _table(server, "/apis/rbac.authorization.k8s.io/v1/clusterroles")
    assert [c["name"] for c in configmaps["columnDefinitions"]] == ["Name", "Age"]


# -- watch and store hooks ------------------------------------------------------------------------------------------


def test_watch_streams_changes(emulator, core):
    core.create_namespaced_pod("agents", pod("before"))
    seen: list[tuple[str, str]] = []

    def consume():
        for event in watch.Watch().stream(core.list_namespaced_pod, "agents", timeout_seconds=2):
            seen.append((event["type"], event["object"].metadata.name))

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.5)
    core.create_namespaced_pod("agents", pod("after"))
    core.delete_namespaced_pod("before", "agents")
    consumer.join(timeout=10)
    assert seen == [("ADDED", "before"), ("ADDED", "after"), ("DELETED", "before")]


def test_subscribers_see_writes_and_request_count(emulator, core):
    server, _ = emulator
    events: list[tuple[str, str]] = []
    server.store.subscribe(lambda kind, obj: events.append((kind, obj["metadata"]["name"])))
    server.store.reset_request_count()
    core.create_namespaced_pod("agents", pod("web"))
    core.patch_namespaced_pod("web", "agents", {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_pod("web", "agents")
    assert events == [("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web")]
    assert server.store.request_count == 3


def test_store_python_api():
    store = Store()
    store.load([namespace("agents"), pod("web")])
    assert store.get("v1", "Pod", "agents", "web")["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as missing:
        store.get("v1", "Pod", "agents", "gone")
    assert (missing.value.status, missing.value.reason) == (404, "NotFound")
    copy = store.get("v1", "Pod", "agents", "web")
    copy["metadata"]["labels"]["mutated"] = "yes"
    assert "mutated" not in store.get("v1", "Pod", "agents", "web")["metadata"]["labels"]
    updated = store.update({**copy, "status": {"phase": "Failed"}})
    assert updated["status"]["phase"] == "Failed"
    assert [p["metadata"]["name"] for p in store.list("v1", "Pod", field_selector="status.phase=Failed")] == ["web"]
    with pytest.raises(ApiError) as conflict:
        store.update(copy)
    assert conflict.value.status == 409
    with pytest.raises(ApiError) as unknown:
        store.load([{"apiVersion": "v9", "kind": "Nope", "metadata": {"name": "x"}}])
    assert unknown.value.status == 400
