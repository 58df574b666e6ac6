"""BuildKit, build Job and resource scenarios: consistent states whose broken objects look as the guide describes,
and the simulated kubelet's `nc -zv` debug pod answering from the cluster's Services and Endpoints."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from kubernetes import client, config

from nasiko_nb.sim import SCENARIOS, build_store
from nasiko_nb.sim.build_scenarios import BUILD_SCENARIOS, POOL_TAINT, WRONG_BUILDKIT_ADDRESS
from nasiko_nb.sim.kubelet import NodeFit, nc_target, parse_cpu, parse_memory, pod_requests, unschedulable_message
from nasiko_nb.sim.platform import is_ready, node_fits
from nasiko_nb.sim.scenarios import build
from nasiko_nb.sim.server import start_server
from tests.paths import SAMPLES
from tests.sim.test_scenarios import assert_consistent

MESSAGES = SAMPLES


def sample(section: str, code: str) -> str:
    entries = yaml.safe_load(MESSAGES.read_text())[section]
    return next(e.get("log") or e.get("message") for e in entries if e.get("code") == code)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def build_jobs(cluster, *, failed: bool | None = None) -> list[dict]:
    jobs = [j for j in cluster.of_kind("Job", "nasiko-agents") if j["metadata"]["name"].startswith("job-")]
    if failed is None:
        return jobs
    return [j for j in jobs if any(c["type"] == "Failed" for c in j["status"].get("conditions", [])) == failed]


def job_pods(cluster, job: dict) -> list[dict]:
    return sorted((p for p in cluster.of_kind("Pod", "nasiko-agents")
                   if p["metadata"]["labels"].get("job-name") == job["metadata"]["name"]),
                  key=lambda p: p["metadata"]["creationTimestamp"])


def events_of(cluster, obj: dict) -> list[dict]:
    return [e for e in cluster.of_kind("Event") if e["involvedObject"]["uid"] == obj["metadata"]["uid"]]


def log_of(cluster, pod: dict, container: str, previous: bool = False) -> str:
    return cluster.logs[(pod["metadata"]["namespace"], pod["metadata"]["name"], container, previous)]


def last_line(text: str) -> str:
    return text.rstrip("\n").rsplit("\n", 1)[-1]


def the_failed_build(cluster) -> tuple[dict, list[dict]]:
    [job] = build_jobs(cluster, failed=True)
    pods = job_pods(cluster, job)
    assert job["spec"]["backoffLimit"] == 1 and job["status"]["failed"] == 2 and not job["status"].get("active")
    assert job["metadata"]["name"].startswith("job-summarizer-agent-")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    assert any(e["reason"] == "BackoffLimitExceeded" and e["type"] == "Warning" for e in events_of(cluster, job))
    return job, pods


# ---- every scenario -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BUILD_SCENARIOS))
def test_scenario_builds_consistent_state(name):
    assert SCENARIOS[name] == BUILD_SCENARIOS[name]
    cluster = build(name)
    assert_consistent(cluster.objects)
    assert cluster.broken
    keys = {f"{o['kind']} {o['metadata'].get('namespace')}/{o['metadata']['name']}" for o in cluster.objects}
    keys |= {f"{o['kind']} {o['metadata']['name']}" for o in cluster.objects if not o["metadata"].get("namespace")}
    missing = [b for b in cluster.broken if b not in keys]
    assert missing in ([], ["Service buildkit/buildkitd"]), missing    # a deleted Service is broken by its absence
    for (ns, pod_name, container, _), _text in cluster.logs.items():
        pod = next(p for p in cluster.of_kind("Pod", ns) if p["metadata"]["name"] == pod_name)
        statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
        assert any(s["name"] == container for s in statuses), (pod_name, container)


# ---- BuildKit -----------------------------------------------------------------------------------------

def test_buildkit_down():
    cluster = build("buildkit-down")
    deploy = cluster.find("Deployment", "buildkit", "buildkitd")
    assert deploy["status"]["availableReplicas"] == 0 and deploy["status"]["unavailableReplicas"] == 1
    available = next(c for c in deploy["status"]["conditions"] if c["type"] == "Available")
    assert available["status"] == "False" and available["reason"] == "MinimumReplicasUnavailable"
    [pod] = cluster.of_kind("Pod", "buildkit")
    [status] = pod["status"]["containerStatuses"]
    assert pod["status"]["phase"] == "Running" and not is_ready(pod)
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff" and status["restartCount"] >= 5
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert "back-off 5m0s restarting failed container=buildkitd" in status["state"]["waiting"]["message"]
    backoff = next(e for e in events_of(cluster, pod) if e["reason"] == "BackOff")
    assert backoff["type"] == "Warning" and backoff["message"].startswith("Back-off restarting failed container buildkitd")
    assert "uid_map" in log_of(cluster, pod, "buildkitd", previous=True)
    endpoints = cluster.find("Endpoints", "buildkit", "buildkitd")
    [subset] = endpoints["subsets"]
    assert "addresses" not in subset and subset["notReadyAddresses"][0]["ip"] == pod["status"]["podIP"]
    service_ip = cluster.find("Service", "buildkit", "buildkitd")["spec"]["clusterIP"]
    expected = sample("build_logs", "buildkit/daemon-down").replace("10.245.12.7", service_ip)
    job, pods = the_failed_build(cluster)
    for build_pod in pods:
        assert last_line(log_of(cluster, build_pod, "buildkit-client")) == expected
        assert build_pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_buildkit_service_missing():
    cluster = build("buildkit-service-missing")
    assert not [o for o in cluster.objects if o["kind"] in ("Service", "Endpoints", "EndpointSlice")
                and o["metadata"].get("namespace") == "buildkit"]
    assert all(is_ready(p) for p in cluster.of_kind("Pod", "buildkit"))       # the daemon itself runs
    expected = sample("build_logs", "buildkit/wrong-address").replace("lookup buildkit.", "lookup buildkitd.")
    _, pods = the_failed_build(cluster)
    assert all(last_line(log_of(cluster, p, "buildkit-client")) == expected for p in pods)


def test_buildkit_wrong_address():
    cluster = build("buildkit-wrong-address")
    worker = cluster.find("Deployment", "nasiko", "nasiko-k8s-build-worker")
    env = {e["name"]: e.get("value") for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BUILDKIT_ADDRESS"] == WRONG_BUILDKIT_ADDRESS == "tcp://buildkit.buildkit.svc.cluster.local:1234"
    assert worker["status"]["readyReplicas"] == 2
    _, pods = the_failed_build(cluster)
    for pod in pods:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["BUILDKIT_HOST"] == WRONG_BUILDKIT_ADDRESS
        assert last_line(log_of(cluster, pod, "buildkit-client")) == sample("build_logs", "buildkit/wrong-address")


# ---- Pending build Jobs -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, reason", [("job-pending-insufficient-cpu", "Insufficient cpu"),
                                          ("job-pending-insufficient-memory", "Insufficient memory"),
                                          ("job-pending-untolerated-taint", "untolerated taint")])
def test_pending_build_job(name, reason):
    cluster = build(name)
    [job] = [j for j in build_jobs(cluster) if j["status"].get("active")]
    assert cluster.now - parse_time(job["metadata"]["creationTimestamp"]) == timedelta(minutes=10)
    assert not job["status"].get("failed") and not job["status"].get("succeeded")
    [pod] = job_pods(cluster, job)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName") and "podIP" not in pod["status"]
    [scheduled] = pod["status"]["conditions"]
    assert (scheduled["type"], scheduled["status"], scheduled["reason"]) == ("PodScheduled", "False", "Unschedulable")
    [event] = [e for e in events_of(cluster, pod) if e["reason"] == "FailedScheduling"]
    assert event["type"] == "Warning" and event["source"]["component"] == "default-scheduler"
    assert event["message"] == scheduled["message"] and event["count"] >= 2
    assert event["message"].startswith("0/2 nodes are available: 2 ") and reason in event["message"]
    # consistent with the nodes: no node has the free allocatable (or the toleration) the pod needs
    cpu, memory = pod_requests(pod["spec"])
    fits = node_fits(cluster)
    if reason == "Insufficient cpu":
        assert all(cpu > f.free_cpu for f in fits) and all(memory <= f.free_memory for f in fits)
        assert all(cpu > parse_cpu(n["status"]["allocatable"]["cpu"]) for n in cluster.of_kind("Node"))
    elif reason == "Insufficient memory":
        assert all(memory > f.free_memory for f in fits) and all(cpu <= f.free_cpu for f in fits)
        assert all(memory > parse_memory(n["status"]["allocatable"]["memory"]) for n in cluster.of_kind("Node"))
    else:
        assert all(n["spec"]["taints"] == [POOL_TAINT] for n in cluster.of_kind("Node"))
        assert "{dedicated: platform}" in event["message"] and "Preemption is not helpful" in event["message"]
    for sample_message in (sample("scheduling_events", "scheduling/insufficient-cpu"),):
        assert sample_message.split(":")[0] == event["message"].split(":")[0]      # "0/2 nodes are available"


def test_scheduler_message_wording_matches_the_samples():
    tainted = NodeFit("cp", 4000, 8 << 30, ({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},))
    full = [NodeFit(f"w{i}", 4000, 512 << 20) for i in (1, 2)]
    spec = {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}}]}
    message = unschedulable_message(spec, [tainted, *full])
    assert message.startswith(yaml.safe_load(MESSAGES.read_text())["scheduling_events"][2]["message"].rstrip("."))
    assert unschedulable_message(spec, [NodeFit("big", 4000, 8 << 30)]) is None
    both = unschedulable_message({"containers": [{"name": "c", "resources": {"requests": {"cpu": "8", "memory": "16Gi"}}}]},
                                 full)
    assert both.startswith("0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.")


# ---- failing build Jobs -------------------------------------------------------------------------------

def test_init_download_404_after_backend_restart():
    cluster = build("build-init-download-404")
    _, pods = the_failed_build(cluster)
    for pod in pods:
        [init] = pod["status"]["initContainerStatuses"]
        assert init["name"] == "download-agent" and init["state"]["terminated"]["exitCode"] == 22
        assert init["state"]["terminated"]["reason"] == "Error"
        assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
        initialized = next(c for c in pod["status"]["conditions"] if c["type"] == "Initialized")
        assert initialized["status"] == "False"
        assert last_line(log_of(cluster, pod, "download-agent")) == sample("init_container_logs", "build/init-download-failed")
        assert ("nasiko-agents", pod["metadata"]["name"], "buildkit-client", False) not in cluster.logs
    [backend] = [p for p in cluster.of_kind("Pod", "nasiko") if p["metadata"]["labels"].get("app") == "nasiko-backend"]
    [status] = backend["status"]["containerStatuses"]
    assert status["restartCount"] == 1 and status["lastState"]["terminated"]["reason"] == "OOMKilled"
    restarted = parse_time(status["state"]["running"]["startedAt"])
    assert timedelta(0) < cluster.now - restarted < timedelta(minutes=20)
    assert restarted < min(parse_time(p["status"]["startTime"]) for p in pods)    # the files were lost before
    assert "404 Not Found" in log_of(cluster, backend, "nasiko-backend")
    assert "POST /api/v1/agents/upload" in log_of(cluster, backend, "nasiko-backend", previous=True)


@pytest.mark.parametrize("name, code, first_tail, second_tail", [
    ("build-missing-dockerfile", "build/missing-dockerfile", "open Dockerfile: no such file or directory",
     "/Dockerfile: no such file or directory"),
    ("build-context-too-large", "build/context-too-large", "received message larger than max",
     "received message larger than max"),
    ("build-network-timeout", "build/network-timeout", "did not complete successfully: exit code: 1",
     "did not complete successfully: exit code: 1"),
    ("build-copy-source-missing", None, "failed to compute cache key", "failed to compute cache key"),
])
def test_failed_build_logs(name, code, first_tail, second_tail):
    cluster = build(name)
    _, pods = the_failed_build(cluster)
    first, second = (log_of(cluster, p, "buildkit-client") for p in pods)
    assert last_line(first).startswith("error: failed to solve: ") and first_tail in last_line(first)
    assert last_line(second).startswith("error: failed to solve: ") and second_tail in last_line(second)
    if code == "build/network-timeout":
        assert sample("build_logs", code).split("WARNING: Retrying")[1].split("/acme")[0] in first
        assert first != second and "packages.example.com timed out" in second
    elif code:
        assert last_line(first) == sample("build_logs", code)
    for pod in pods:
        [init] = pod["status"]["initContainerStatuses"]
        assert init["state"]["terminated"]["exitCode"] == 0
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


# ---- resources ----------------------------------------------------------------------------------------

def evicted(cluster) -> list[dict]:
    return [p for p in cluster.of_kind("Pod") if p["status"].get("reason") == "Evicted"]


def test_evicted_pods():
    cluster = build("cluster-evicted-pods")
    pods = evicted(cluster)
    assert len(pods) >= 3 and all(p["metadata"]["namespace"] == "nasiko-agents" for p in pods)
    prefix = sample("evicted_pod_status", "resources/evicted-pods").split(" Container ")[0].rsplit(" available", 1)[0]
    for pod in pods:
        assert pod["status"]["phase"] == "Failed" and pod["status"]["message"].startswith(prefix)
        assert any(c["type"] == "DisruptionTarget" for c in pod["status"]["conditions"])
        event = next(e for e in events_of(cluster, pod) if e["reason"] == "Evicted")
        assert event["type"] == "Warning" and event["message"] == pod["status"]["message"]
    for deploy in cluster.of_kind("Deployment", "nasiko-agents"):
        assert deploy["status"]["availableReplicas"] == 1
    assert all(c["status"] == "False" for n in cluster.of_kind("Node") for c in n["status"]["conditions"]
               if c["type"] == "MemoryPressure")


def test_node_pressure():
    cluster = build("cluster-node-pressure")
    [node] = [n for n in cluster.of_kind("Node") if n["spec"].get("taints")]
    assert node["spec"]["taints"] == [{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]
    pressure = next(c for c in node["status"]["conditions"] if c["type"] == "MemoryPressure")
    assert pressure["status"] == "True" and cluster.now - parse_time(pressure["lastTransitionTime"]) < timedelta(minutes=10)
    pods = evicted(cluster)
    assert pods and all(p["spec"]["nodeName"] == node["metadata"]["name"] for p in pods)
    running_there = [p for p in cluster.of_kind("Pod") if p["spec"].get("nodeName") == node["metadata"]["name"]
                     and p["status"]["phase"] == "Running"
                     and cluster.now - parse_time(p["metadata"]["creationTimestamp"]) < timedelta(minutes=7)]
    assert not running_there          # nothing new scheduled onto the tainted node
    assert any(e["reason"] == "EvictionThresholdMet" for e in events_of(cluster, node))


def test_failed_jobs_clutter_builds_fast():
    started = time.perf_counter()
    cluster = build("cluster-failed-jobs")
    elapsed = time.perf_counter() - started
    assert elapsed < 3, f"built in {elapsed:.2f}s"
    failed = build_jobs(cluster, failed=True)
    assert len(failed) == 300
    pods = [p for p in cluster.of_kind("Pod", "nasiko-agents") if p["metadata"]["labels"].get("job-name")]
    by_job: dict[str, list[dict]] = {}
    for pod in pods:
        by_job.setdefault(pod["metadata"]["labels"]["job-name"], []).append(pod)
    for job in failed:
        assert [p["status"]["phase"] for p in by_job[job["metadata"]["name"]]] == ["Failed", "Failed"]
    without_ttl = [j for j in failed if "ttlSecondsAfterFinished" not in j["spec"]]
    assert 0 < len(without_ttl) < len(failed)
    for job in failed:                # a Job with a TTL that finished over an hour ago would have been reaped
        if "ttlSecondsAfterFinished" in job["spec"]:
            finished = parse_time(next(c for c in job["status"]["conditions"] if c["type"] == "Failed")["lastTransitionTime"])
            assert cluster.now - finished < timedelta(seconds=job["spec"]["ttlSecondsAfterFinished"])
    old_complete = [j for j in build_jobs(cluster, failed=False) if j["status"].get("succeeded")
                    and cluster.now - parse_time(j["status"]["completionTime"]) > timedelta(days=1)]
    assert old_complete and all("ttlSecondsAfterFinished" not in j["spec"] for j in old_complete)
    job_names = {j["metadata"]["name"] for j in cluster.of_kind("Job", "nasiko-agents")}
    orphans = [c for c in cluster.of_kind("ConfigMap", "nasiko-agents") if c["metadata"]["name"].startswith("agent-files-")]
    assert len(orphans) == 20
    assert not {"job-" + c["metadata"]["name"].removeprefix("agent-files-") for c in orphans} & job_names


def test_failed_jobs_store_builds_fast():
    started = time.perf_counter()
    store = build_store("cluster-failed-jobs")
    assert time.perf_counter() - started < 3
    assert len(store.list("batch/v1", "Job", "nasiko-agents")) >= 312


# ---- the debug pod: nc -zv host port -------------------------------------------------------------------

@pytest.fixture
def served(request, tmp_path):
    server = start_server(build_store(request.param))
    api = config.new_client_from_config(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    yield server, client.CoreV1Api(api)
    api.close()
    server.stop()


def debug_pod(name: str, command: list[str], *, args: list[str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"run": name}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": name, "image": "nicolaka/netshoot", "command": command,
                                     **({"args": args} if args else {})}]}}


def run_debug(core, namespace: str, name: str, command: list[str], **kwargs) -> tuple[str, int, str]:
    core.create_namespaced_pod(namespace, debug_pod(name, command, **kwargs))
    pod = core.read_namespaced_pod(name, namespace)
    terminated = pod.status.container_statuses[0].state.terminated
    return pod.status.phase, terminated.exit_code, core.read_namespaced_pod_log(name, namespace)


@pytest.mark.parametrize("served", ["healthy"], indirect=True)
def test_debug_pod_nc_open_and_bad_address(served):
    server, core = served
    ip = core.read_namespaced_service("buildkitd", "buildkit").spec.cluster_ip
    phase, code, log = run_debug(core, "default", "debug", ["nc", "-zv", "buildkitd.buildkit.svc.cluster.local", "1234"])
    assert (phase, code, log) == ("Succeeded", 0, f"buildkitd.buildkit.svc.cluster.local ({ip}:1234) open\n")
    phase, code, log = run_debug(core, "default", "debug-wrong", ["sh", "-c", "nc -zv buildkit.buildkit.svc.cluster.local 1234"])
    assert (phase, code, log) == ("Failed", 1, "nc: bad address 'buildkit.buildkit.svc.cluster.local'\n")
    # short forms through the pod's DNS search path; args without command (kubectl run ... -- nc -zv host port)
    phase, _, log = run_debug(core, "buildkit", "debug-short", [], args=["nc", "-zv", "buildkitd", "1234"])
    assert phase == "Succeeded" and log == f"buildkitd ({ip}:1234) open\n"
    assert run_debug(core, "default", "debug-ns", ["nc", "-zv", "-w", "3", "buildkitd.buildkit", "1234"])[0] == "Succeeded"
    phase, _, log = run_debug(core, "default", "debug-port", ["nc", "-zv", "buildkitd.buildkit.svc.cluster.local", "9999"])
    assert phase == "Failed" and log.endswith(f"({ip}:9999): Connection timed out\n")
    assert run_debug(core, "default", "debug-short-elsewhere", ["nc", "-zv", "buildkitd", "1234"])[2] == \
        "nc: bad address 'buildkitd'\n"


@pytest.mark.parametrize("served", ["buildkit-down"], indirect=True)
def test_debug_pod_nc_connection_refused(served):
    server, core = served
    ip = core.read_namespaced_service("buildkitd", "buildkit").spec.cluster_ip
    phase, code, log = run_debug(core, "nasiko", "nc-buildkit", ["/bin/sh", "-c", "nc -zv buildkitd.buildkit.svc.cluster.local 1234"])
    assert (phase, code) == ("Failed", 1)
    assert log == f"nc: buildkitd.buildkit.svc.cluster.local ({ip}:1234): Connection refused\n"
    pod = core.read_namespaced_pod("nc-buildkit", "nasiko")
    assert pod.spec.node_name and pod.status.pod_ip
    assert pod.status.container_statuses[0].state.terminated.reason == "Error"


@pytest.mark.parametrize("served", ["buildkit-service-missing"], indirect=True)
def test_debug_pod_nc_service_missing(served):
    _, core = served
    _, code, log = run_debug(core, "default", "nc", ["nc", "-zv", "buildkitd.buildkit.svc.cluster.local", "1234"])
    assert code == 1 and log == "nc: bad address 'buildkitd.buildkit.svc.cluster.local'\n"


def test_nc_target_parsing():
    def spec(command=None, args=None):
        return {"containers": [{"name": "d", "image": "busybox", **({"command": command} if command else {}),
                                **({"args": args} if args else {})}]}
    assert nc_target(spec(["nc", "-zv", "h", "1"])) == ("d", ("h", 1))
    assert nc_target(spec(["sh", "-c", "nc -z -v -w 2 h.ns 80"])) == ("d", ("h.ns", 80))
    assert nc_target(spec(["sleep", "3600"])) is None
    assert nc_target(spec(["nc", "-zv", "h"])) is None
