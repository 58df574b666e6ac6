"""Scenarios: every one builds a consistent cluster, and each broken one shows what a real kubelet would."""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from nasiko_nb.sim import SCENARIOS, SECRET_VALUES, UnknownScenario, build_store
from nasiko_nb.sim.kubelet import InvalidReference, RegistryWorld, parse_image, pull_image
from nasiko_nb.sim.digitalocean import DOWorld
from nasiko_nb.sim.platform import (ECR_PASSWORD, REGISTRY_USER, REVOKED_DO_TOKEN, is_ready, pull_secret,
                                    registry_world)
from nasiko_nb.sim.scenarios import build

def index(objects):
    by_uid = {o["metadata"]["uid"]: o for o in objects if o["metadata"].get("uid")}
    by_key = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
    return by_uid, by_key


def assert_consistent(objects):
    by_uid, by_key = index(objects)
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    pods = [o for o in objects if o["kind"] == "Pod"]
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        assert ns is None or ns in namespaces, f"{obj['kind']} {ns}/{obj['metadata']['name']}: namespace missing"
        for ref in obj["metadata"].get("ownerReferences", []):
            owner = by_uid.get(ref["uid"])
            assert owner is not None, f"{obj['kind']} {obj['metadata']['name']}: owner {ref['name']} missing"
            assert (owner["kind"], owner["metadata"]["name"]) == (ref["kind"], ref["name"])
    for event in (o for o in objects if o["kind"] == "Event"):
        involved = event["involvedObject"]
        target = by_key.get((involved["kind"], involved.get("namespace") or None, involved["name"]))
        assert target is not None, f"event {event['metadata']['name']} about missing {involved['kind']} {involved['name']}"
        assert target["metadata"]["uid"] == involved["uid"]
        assert target["apiVersion"] == involved["apiVersion"]
        assert event["source"]["component"] and event["reportingComponent"] and event["count"] >= 1
    for pod in pods:
        scheduled = next((c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"), None)
        if scheduled is not None and scheduled["status"] == "False":   # the scheduler found no node
            assert pod["status"]["phase"] == "Pending" and scheduled["reason"] == "Unschedulable"
            assert not pod["spec"].get("nodeName") and not pod["status"].get("podIP")
        elif pod["status"]["phase"] in ("Running", "Pending"):
            assert pod["spec"]["nodeName"] and pod["status"]["podIP"]
    ips = [p["status"]["podIP"] for p in pods if p["status"].get("podIP")]
    assert len(ips) == len(set(ips)), "pod IPs must be unique"
    for svc in (o for o in objects if o["kind"] == "Service" and o["spec"].get("selector")):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        selected = [p for p in pods if p["metadata"]["namespace"] == ns
                    and all(p["metadata"].get("labels", {}).get(k) == v for k, v in svc["spec"]["selector"].items())]
        assert selected, f"Service {ns}/{name} selects no pod"
        endpoints = by_key[("Endpoints", ns, name)]
        ready_ips = sorted(a["ip"] for s in endpoints["subsets"] for a in s.get("addresses", []))
        assert ready_ips == sorted(p["status"]["podIP"] for p in selected if is_ready(p)), f"endpoints of {ns}/{name}"
    for deploy in (o for o in objects if o["kind"] == "Deployment"):
        ns = deploy["metadata"]["namespace"]
        owned = [p for p in pods if p["metadata"]["namespace"] == ns and p["metadata"]["labels"].get("pod-template-hash")
                 and p["status"]["phase"] != "Failed"     # evicted pods stay behind, no longer counted
                 and by_uid[p["metadata"]["ownerReferences"][0]["uid"]]["metadata"]["ownerReferences"][0]["uid"]
                 == deploy["metadata"]["uid"]]
        assert len(owned) == deploy["spec"]["replicas"] == deploy["status"]["replicas"]
        assert deploy["status"]["readyReplicas"] == sum(is_ready(p) for p in owned)


def assert_gateway_consistent(cluster):
    """Kong holds the static proxies and, for every agent Service the registry routes, its service, route and
    plugins, each pointing at an existing Kong entity."""
    kong = cluster.kong
    services = {s["id"]: s for s in kong.all("services")}
    routes = kong.all("routes")
    assert {"/api", "/app", "/auth", "/router", "~/$", "/n8n"} <= {p for r in routes for p in r["paths"]}
    assert all(r["service"]["id"] in services for r in routes)
    assert all(p["service"] is None or p["service"]["id"] in services for p in kong.all("plugins"))
    agent_services = {s["name"] for s in services.values() if s["name"].startswith("agent-")}
    if cluster.registry_syncs:
        expected = {s["metadata"]["name"] for s in cluster.of_kind("Service", "nasiko-agents")
                    if s["metadata"]["name"].startswith("agent-") and "redis" not in s["metadata"]["name"]}
        assert agent_services == expected


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_builds_consistent_state(name):
    cluster = build(name)
    assert_consistent(cluster.objects)
    assert (name in ("healthy", "ecr-healthy", "agent-chat-healthy")) == (not cluster.broken)
    assert_gateway_consistent(cluster)
    broken_pods = {b.split(" ", 1)[1] for b in cluster.broken if b.startswith("Pod ")}
    for pod in (o for o in cluster.objects if o["kind"] == "Pod"):
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        healthy = pod["status"]["phase"] == "Succeeded" or (pod["status"]["phase"] == "Running" and is_ready(pod))
        assert healthy == (key not in broken_pods), key


def test_healthy_layout_follows_the_platform_facts():
    cluster = build("healthy")
    _, by_key = index(cluster.objects)
    kong = by_key[("Deployment", "nasiko", "kong-gateway")]
    assert [c["name"] for c in kong["spec"]["template"]["spec"]["containers"]] == ["kong", "chat-history"]
    assert by_key[("Service", "nasiko", "kong-gateway")]["spec"]["type"] == "LoadBalancer"
    assert by_key[("Deployment", "nasiko", "nasiko-k8s-build-worker")]["spec"]["replicas"] == 2
    assert by_key[("Service", "buildkit", "buildkitd")]["spec"]["ports"][0]["port"] == 1234
    assert by_key[("PersistentVolumeClaim", "buildkit", "buildkit-cache")]["status"]["phase"] == "Bound"
    for ns, name in (("nasiko", "regcred"), ("buildkit", "regcred"), ("nasiko-agents", "agent-registry-credentials")):
        secret = by_key[("Secret", ns, name)]
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
        user, _, token = base64.b64decode(auths["registry.digitalocean.com"]["auth"]).decode().partition(":")
        assert user == token and token in SECRET_VALUES
        assert cluster.digitalocean.tokens[token].account == REGISTRY_USER
    nodes = [o for o in cluster.objects if o["kind"] == "Node"]
    assert len(nodes) == 2 and all(n["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.1" for n in nodes)
    agents = [o for o in cluster.objects if o["kind"] == "Deployment" and o["metadata"]["namespace"] == "nasiko-agents"]
    assert len(agents) == 2
    for deploy in agents:
        spec = deploy["spec"]["template"]["spec"]
        assert spec["imagePullSecrets"] == [{"name": "agent-registry-credentials"}]
        assert spec["containers"][0]["name"] == "agent" and spec["containers"][0]["ports"][0]["containerPort"] == 5000
    jobs = [o for o in cluster.objects if o["kind"] == "Job" and o["metadata"]["namespace"] == "nasiko-agents"]
    assert len(jobs) == 2 and all(j["status"]["succeeded"] == 1 for j in jobs)
    job_pod = next(p for p in cluster.objects if p["kind"] == "Pod" and p["metadata"]["labels"].get("job-name") == jobs[0]["metadata"]["name"])
    assert job_pod["spec"]["initContainers"][0]["name"] == "download-agent"
    env = {e["name"]: e["value"] for e in job_pod["spec"]["containers"][0]["env"]}
    assert env["BUILDKIT_HOST"] == "tcp://buildkitd.buildkit.svc.cluster.local:1234"
    assert (job_pod["metadata"]["namespace"], job_pod["metadata"]["name"], "buildkit-client", False) in cluster.logs
    reasons = {e["reason"] for e in cluster.objects if e["kind"] == "Event"}
    assert {"Scheduled", "Pulled", "Created", "Started"} <= reasons


def _broken_pod(cluster):
    name = next(b.split(" ", 1)[1] for b in cluster.broken if b.startswith("Pod "))
    ns, pod_name = name.split("/")
    pod = next(o for o in cluster.objects if o["kind"] == "Pod" and o["metadata"]["name"] == pod_name)
    events = [e for e in cluster.objects if e["kind"] == "Event" and e["involvedObject"]["name"] == pod_name]
    return pod, events


@pytest.mark.parametrize("name, waiting_reason, text", [
    ("image-pull-missing-secret", "ImagePullBackOff", "401 Unauthorized"),
    ("image-pull-pull-secret-not-found", "ImagePullBackOff", "401 Unauthorized"),
    ("image-pull-tag-not-found", "ImagePullBackOff", "code = NotFound"),
    ("image-pull-unauthorized", "ImagePullBackOff", "failed to fetch oauth token"),
    ("image-pull-secret-wrong-registry", "ImagePullBackOff", "401 Unauthorized"),
    ("image-pull-dns", "ImagePullBackOff", "no such host"),
    ("image-pull-forbidden", "ImagePullBackOff", "insufficient_scope"),
    ("image-pull-invalid-name", "InvalidImageName", "repository name must be lowercase"),
])
def test_broken_agent_pod_state_and_events(name, waiting_reason, text):
    pod, events = _broken_pod(build(name))
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert pod["status"]["phase"] == "Pending"
    assert waiting["reason"] == waiting_reason and text in waiting["message"]
    if waiting_reason == "ImagePullBackOff":
        image = pod["spec"]["containers"][0]["image"]
        assert waiting["message"].startswith(f'Back-off pulling image "{image}": ErrImagePull: rpc error: code = ')
        messages = {e["message"] for e in events}
        assert any(m.startswith(f'Failed to pull image "{image}": ') and text in m for m in messages)
        assert {"Error: ErrImagePull", "Error: ImagePullBackOff", f'Back-off pulling image "{image}"'} <= messages
        backoff = next(e for e in events if e["reason"] == "BackOff")
        assert backoff["type"] == "Normal" and backoff["involvedObject"]["fieldPath"] == "spec.containers{agent}"
    else:
        assert {e["reason"] for e in events} >= {"InspectFailed", "Failed"}


def test_pull_secret_not_found_event():
    cluster = build("image-pull-pull-secret-not-found")
    assert not any(o["kind"] == "Secret" and o["metadata"]["name"] == "agent-registry-credentials" for o in cluster.objects)
    pod, events = _broken_pod(cluster)
    event = next(e for e in events if e["reason"] == "FailedToRetrieveImagePullSecret")
    assert event["type"] == "Warning"
    assert event["message"] == ("Unable to retrieve some image pull secrets (agent-registry-credentials); "
                                "attempting to pull the image may not succeed.")


def test_wrong_registry_secret_names_another_host():
    cluster = build("image-pull-secret-wrong-registry")
    secret = next(o for o in cluster.objects if o["kind"] == "Secret" and o["metadata"]["name"] == "agent-registry-credentials")
    hosts = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    assert list(hosts) == ["123456789012.dkr.ecr.us-east-1.amazonaws.com"]


def test_init_container_pull_failure():
    pod, events = _broken_pod(build("image-pull-init-container"))
    init = pod["status"]["initContainerStatuses"][0]
    assert init["name"] == "download-agent" and init["state"]["waiting"]["reason"] == "ImagePullBackOff"
    assert "curlimages/curl:8.11.1-alpine: not found" in init["state"]["waiting"]["message"]
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    initialized = next(c for c in pod["status"]["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False" and "download-agent" in initialized["message"]
    assert any(e["involvedObject"].get("fieldPath") == "spec.initContainers{download-agent}" for e in events)


def test_expired_events_leave_only_the_waiting_message():
    pod, events = _broken_pod(build("image-pull-events-expired"))
    assert "not found" in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert events and not any(e["message"].startswith("Failed to pull image") for e in events)
    assert {e["reason"] for e in events} == {"BackOff", "Failed"}


def test_unknown_scenario_lists_names():
    with pytest.raises(UnknownScenario, match="image-pull-missing-secret"):
        build_store("no-such-scenario")


def test_image_reference_parsing():
    ref = parse_image("kong:3.4")
    assert (ref.host, ref.repository, ref.tag, ref.full) == ("docker.io", "library/kong", "3.4", "docker.io/library/kong:3.4")
    assert parse_image("registry.digitalocean.com/nasiko-images/a:v1").host == "registry.digitalocean.com"
    assert parse_image("localhost:5000/x").tag == "latest"
    with pytest.raises(InvalidReference, match="must be lowercase"):
        parse_image("registry.digitalocean.com/nasiko-images/My_Agent:v1")
    with pytest.raises(InvalidReference):
        parse_image("bad image")


def test_pull_decisions():
    do = DOWorld()
    do.add_account(REGISTRY_USER)
    do.create_registry(REGISTRY_USER, "nasiko-images")
    do.push("nasiko-images", "demo", "v1", 1000)
    token = do.registry_credentials(REGISTRY_USER, read_write=False, expiry_seconds=3600)
    world = registry_world(do)
    now = datetime.now(timezone.utc)
    good = {"creds": pull_secret("x", "creds", now, token)}
    wrong = {"creds": pull_secret("x", "creds", now, token + "x")}
    image = "registry.digitalocean.com/nasiko-images/demo:v1"
    assert pull_image(image, ["creds"], good, world).ok
    assert "401 Unauthorized" in pull_image(image, ["creds"], wrong, world).message
    assert "401 Unauthorized" in pull_image(image, [], good, world).message
    assert pull_image(image, ["creds", "absent"], good, world).missing_secrets == ("absent",)
    assert "not found" in pull_image(image.replace("v1", "v2"), ["creds"], good, world).message
    assert pull_image("nginx:1.27", [], {}, world).ok
    assert "insufficient_scope" in pull_image("acme/nothing:1", [], {}, world).message
    assert pull_image("anything.example/x:1", [], {}, RegistryWorld(permissive=True)).ok
    later = now + timedelta(hours=2)
    assert "401 Unauthorized" in pull_image(image, ["creds"], good, world, at=later).message   # expired by then
    do.add_account("other@example.com")
    do.create_registry("other@example.com", "other-registry")
    other = {"creds": pull_secret("x", "creds", now, do.registry_credentials("other@example.com", True, None))}
    assert "insufficient_scope" in pull_image(image, ["creds"], other, world).message


def test_controller_rerolls_after_pull_secret_patch():
    store = build_store("image-pull-missing-secret")
    deploy = next(d for d in store.list("apps/v1", "Deployment", "nasiko-agents") if "weather-agent" in d["metadata"]["name"])
    name = deploy["metadata"]["name"]
    old_pods = {p["metadata"]["name"] for p in store.list("v1", "Pod", "nasiko-agents", label_selector=f"app={name}")}
    deploy["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "agent-registry-credentials"}]
    store.update(deploy)
    pods = store.list("v1", "Pod", "nasiko-agents", label_selector=f"app={name}")
    assert len(pods) == 1 and pods[0]["metadata"]["name"] not in old_pods
    assert pods[0]["status"]["phase"] == "Running" and is_ready(pods[0])
    replicasets = {rs["metadata"]["name"]: rs for rs in store.list("apps/v1", "ReplicaSet", "nasiko-agents")
                   if rs["metadata"]["name"].startswith(name)}
    assert sorted(rs["spec"]["replicas"] for rs in replicasets.values()) == [0, 1]
    current = next(rs for rs in replicasets.values() if rs["spec"]["replicas"] == 1)
    assert current["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert pods[0]["metadata"]["ownerReferences"][0]["uid"] == current["metadata"]["uid"]
    deploy = store.get("apps/v1", "Deployment", "nasiko-agents", name)
    assert deploy["status"]["observedGeneration"] == deploy["metadata"]["generation"]
    assert deploy["status"]["availableReplicas"] == 1
    endpoints = store.get("v1", "Endpoints", "nasiko-agents", name)
    assert [a["ip"] for a in endpoints["subsets"][0]["addresses"]] == [pods[0]["status"]["podIP"]]


def test_controller_rollout_still_broken_shows_pull_error():
    store = build_store("image-pull-tag-not-found")
    deploy = next(d for d in store.list("apps/v1", "Deployment", "nasiko-agents") if "weather-agent" in d["metadata"]["name"])
    deploy["spec"]["template"]["metadata"].setdefault("annotations", {})["kubectl.kubernetes.io/restartedAt"] = "now"
    store.update(deploy)
    pods = store.list("v1", "Pod", "nasiko-agents", label_selector=f"app={deploy['metadata']['name']}")
    assert len(pods) == 1
    waiting = pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ErrImagePull" and "not found" in waiting["message"]
    events = store.list("v1", "Event", "nasiko-agents", field_selector=f"involvedObject.name={pods[0]['metadata']['name']}")
    assert any(e["message"].startswith("Failed to pull image") for e in events)


def test_fixed_secret_lets_stuck_pod_start():
    store = build_store("image-pull-unauthorized")
    secret = store.get("v1", "Secret", "nasiko-agents", "agent-registry-credentials")
    secret["data"] = store.get("v1", "Secret", "nasiko", "regcred")["data"]    # the platform's valid token
    store.update(secret)
    pods = store.list("v1", "Pod", "nasiko-agents")
    assert all(p["status"]["phase"] in ("Running", "Succeeded") for p in pods)


def test_extra_pods_scale():
    started = time.perf_counter()
    store = build_store("healthy", extra_pods=5000)
    elapsed = time.perf_counter() - started
    pods = store.list("v1", "Pod")
    assert len(pods) >= 5000 + 20
    assert elapsed < 10, f"building 5000 extra pods took {elapsed:.1f}s"
    namespaces = {p["metadata"]["namespace"] for p in pods if p["metadata"]["name"].startswith("load-")}
    assert namespaces == {"nasiko", "nasiko-agents"}  # where the runbooks read, so scale runs load what they list


@pytest.mark.parametrize("name, planted", [("image-pull-unauthorized", REVOKED_DO_TOKEN),
                                           ("image-pull-secret-wrong-registry", ECR_PASSWORD)],
                         ids=["unauthorized", "wrong-registry"])
def test_secret_values_only_inside_secrets(name, planted):
    cluster = build(name)
    encoded = [base64.b64encode(v.encode()).decode() for v in SECRET_VALUES]
    outside = json.dumps([o for o in cluster.objects if o["kind"] != "Secret"]) + json.dumps(list(cluster.logs.values()))
    assert not [v for v in (*SECRET_VALUES, *encoded) if v in outside]
    secret = next(o for o in cluster.objects if o["kind"] == "Secret" and o["metadata"]["name"] == "agent-registry-credentials")
    assert planted in base64.b64decode(secret["data"][".dockerconfigjson"]).decode()
