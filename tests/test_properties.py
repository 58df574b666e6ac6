"""Property-based tests: detectors and the tables the runbooks show, fed arbitrary but schema-valid pods, events,
Jobs, nodes and secrets (fields missing, unicode names, huge logs and messages, malformed docker configs), never
raise, name only catalogued codes, and never carry a secret value out."""
import base64
import json
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasiko_nb import checks, health
from nasiko_nb.checks import build, image_pull, registry, resources, scheduling
from nasiko_nb.codes import all_codes
from nasiko_nb.redact import summarize_secret
from nasiko_nb.snapshot import Snapshot

NAMESPACES = ("nasiko-agents", "buildkit", "nasiko", "default")   # the first ones are drawn most
SECRET_PASSWORD = "Pr0perty-Secret-Passw0rd/+="
CODES = set(all_codes())
PROPERTY_SETTINGS = settings(max_examples=int(os.environ.get("NASIKO_PROPERTY_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

dns = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
anything = st.text(max_size=40)                                       # unicode included
label_value = st.one_of(dns, st.text(alphabet=string.ascii_letters + "-_.", max_size=20))
timestamp = st.one_of(st.none(), st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")))
quantity_cpu = st.sampled_from(["100m", "1", "2500m", "0.5", "4"])
quantity_memory = st.sampled_from(["128Mi", "1Gi", "512M", "2G", "1000000", "64Ki"])
huge_text = st.one_of(anything, st.text(min_size=1, max_size=5).map(lambda s: s * 40_000))
waiting_reasons = st.sampled_from(["ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "InvalidImageName",
                                   "CreateContainerConfigError", "ContainerCreating", "PodInitializing"])
event_reasons = st.sampled_from(["Failed", "FailedScheduling", "BackOff", "Evicted", "FailedMount", "Pulling",
                                 "SuccessfulCreate", "FailedCreatePodSandBox", "Killing"])
pull_messages = st.sampled_from([
    'Failed to pull image "registry.digitalocean.com/nasiko/agent:1": failed to authorize: 401 Unauthorized',
    "Back-off pulling image \"x\"", "rpc error: code = NotFound desc = failed to pull and unpack image",
    "0/3 nodes are available: 3 Insufficient cpu.", "dial tcp: lookup buildkitd on 10.0.0.10:53: no such host",
    "x509: certificate signed by unknown authority"])


def maybe(strategy):
    return st.one_of(st.none(), strategy)


def without_nones(value):
    """Fields given as None are left out, as an API server leaves out empty fields."""
    if isinstance(value, dict):
        return {k: without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nones(v) for v in value]
    return value


@st.composite
def metadata(draw, kind_labels=()):
    labels = draw(st.dictionaries(st.sampled_from(["app", "agent-name", "job-name", "app.kubernetes.io/name",
                                                   "nasiko.io/agent", *kind_labels]), label_value, max_size=3))
    return {"name": draw(st.one_of(dns, anything)), "namespace": draw(st.sampled_from(NAMESPACES)),
            "uid": draw(maybe(st.uuids().map(str))), "labels": labels or None,
            "creationTimestamp": draw(timestamp),
            "ownerReferences": draw(maybe(st.lists(st.fixed_dictionaries(
                {"kind": st.sampled_from(["Job", "ReplicaSet", "CronJob", "Node"]), "name": dns,
                 "uid": st.uuids().map(str)}), max_size=1)))}


@st.composite
def container_status(draw, name):
    state = draw(st.sampled_from(["waiting", "running", "terminated", None]))
    detail = {"reason": draw(maybe(waiting_reasons)), "message": draw(maybe(st.one_of(pull_messages, huge_text)))}
    if state == "terminated":
        detail.update(exitCode=draw(st.integers(-1, 255)), finishedAt=draw(timestamp))
    return {"name": name, "ready": draw(st.booleans()), "restartCount": draw(st.integers(0, 10_000)),
            "image": draw(anything), "state": {state: detail} if state else None,
            "lastState": draw(maybe(st.just({"terminated": {"exitCode": 1, "reason": "Error"}})))}


@st.composite
def pods(draw):
    names = draw(st.lists(dns, min_size=1, max_size=3, unique=True))
    containers = [{"name": name, "image": draw(st.one_of(anything, st.just("registry.digitalocean.com/nasiko/a:1"))),
                   "resources": draw(maybe(st.fixed_dictionaries({"requests": st.fixed_dictionaries(
                       {"cpu": quantity_cpu, "memory": quantity_memory})})))} for name in names]
    return without_nones({
        "apiVersion": "v1", "kind": "Pod", "metadata": draw(metadata()),
        "spec": {"containers": containers, "nodeName": draw(maybe(dns)),
                 "imagePullSecrets": draw(maybe(st.lists(st.fixed_dictionaries({"name": dns}), max_size=2))),
                 "initContainers": draw(maybe(st.just([{"name": "fetch", "image": "busybox"}])))},
        "status": {"phase": draw(maybe(st.sampled_from(["Pending", "Running", "Failed", "Succeeded", "Unknown"]))),
                   "reason": draw(maybe(st.sampled_from(["Evicted", "NodeLost", "Unknown"]))),
                   "message": draw(maybe(huge_text)),
                   "conditions": draw(maybe(st.lists(st.fixed_dictionaries(
                       {"type": st.sampled_from(["PodScheduled", "Ready"]), "status": st.sampled_from(["True", "False"]),
                        "reason": maybe(st.sampled_from(["Unschedulable", "ContainersNotReady"])),
                        "message": maybe(pull_messages)}), max_size=2))),
                   "containerStatuses": [draw(container_status(name)) for name in names]
                   if draw(st.booleans()) else None}})


@st.composite
def events(draw):
    return without_nones({
        "apiVersion": "v1", "kind": "Event", "metadata": draw(metadata()),
        "involvedObject": draw(maybe(st.fixed_dictionaries({"kind": st.sampled_from(["Pod", "Job", "Node"]),
                                                            "name": st.one_of(dns, anything),
                                                            "namespace": st.sampled_from(NAMESPACES)}))),
        "reason": draw(maybe(event_reasons)), "message": draw(maybe(st.one_of(pull_messages, huge_text))),
        "type": draw(maybe(st.sampled_from(["Warning", "Normal"]))), "count": draw(maybe(st.integers(0, 10**6))),
        "lastTimestamp": draw(timestamp), "eventTime": draw(maybe(st.just("2026-11-26T10:00:00.000000Z")))})


@st.composite
def jobs(draw):
    return without_nones({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": draw(metadata()),
        "spec": {"backoffLimit": draw(maybe(st.integers(0, 6))),
                 "template": {"spec": {"containers": [{"name": "build", "image": draw(anything)}]}}},
        "status": {"active": draw(maybe(st.integers(0, 3))), "failed": draw(maybe(st.integers(0, 10))),
                   "succeeded": draw(maybe(st.integers(0, 1))), "startTime": draw(timestamp),
                   "completionTime": draw(timestamp),
                   "conditions": draw(maybe(st.lists(st.fixed_dictionaries(
                       {"type": st.sampled_from(["Failed", "Complete", "Suspended"]), "status": st.just("True"),
                        "reason": maybe(st.sampled_from(["BackoffLimitExceeded", "DeadlineExceeded"])),
                        "message": maybe(anything)}), max_size=2)))}})


@st.composite
def nodes(draw):
    resources_of = st.fixed_dictionaries({"cpu": quantity_cpu, "memory": quantity_memory,
                                          "pods": st.sampled_from(["110", "30"])})
    return without_nones({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": draw(dns), "labels": draw(maybe(st.dictionaries(
            st.sampled_from(["doks.digitalocean.com/node-pool", "eks.amazonaws.com/nodegroup",
                             "node-role.kubernetes.io/control-plane"]), dns, max_size=2)))},
        "spec": {"unschedulable": draw(maybe(st.booleans())), "taints": draw(maybe(st.lists(st.fixed_dictionaries(
            {"key": dns, "effect": st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"])}), max_size=2)))},
        "status": {"capacity": draw(maybe(resources_of)), "allocatable": draw(maybe(resources_of)),
                   "conditions": draw(maybe(st.lists(st.fixed_dictionaries(
                       {"type": st.sampled_from(["Ready", "MemoryPressure", "DiskPressure"]),
                        "status": st.sampled_from(["True", "False", "Unknown"])}), max_size=3)))}})


def docker_config_payloads():
    """What a .dockerconfigjson may hold: valid, auth only, not base64, not JSON, wrong shapes, huge."""
    auth = base64.b64encode(f"robot:{SECRET_PASSWORD}".encode()).decode()
    valid = {"auths": {"registry.digitalocean.com": {"username": "robot", "password": SECRET_PASSWORD, "auth": auth}}}
    return st.sampled_from([
        json.dumps(valid), json.dumps({"auths": {"registry.digitalocean.com": {"auth": auth}}}),
        json.dumps({"registry.digitalocean.com": {"auth": auth}}),           # the legacy .dockercfg shape
        json.dumps({"auths": {"r.example": {"auth": "not base64!!"}}}), json.dumps({"auths": {"r": {"auth": auth[:-3]}}}),
        json.dumps({"auths": []}), json.dumps({"auths": {"r": "string"}}), json.dumps([1, 2]), "null", "{",
        "not json at all " + SECRET_PASSWORD, json.dumps({"auths": {"ünïcødé.example": {"auth": auth}}}),
        json.dumps({"auths": {f"r{n}.example": {"auth": auth} for n in range(200)}}),
    ])


@st.composite
def secrets(draw):
    kind = draw(st.sampled_from(["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg", "Opaque", None]))
    payload = draw(docker_config_payloads())
    encoded = draw(st.sampled_from(["base64", "garbage", "missing"]))
    data = {".dockerconfigjson" if kind != "kubernetes.io/dockercfg" else ".dockercfg":
            base64.b64encode(payload.encode()).decode() if encoded == "base64" else "%%%not-base64"}
    return without_nones({"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": draw(metadata()),
                          "data": data if encoded != "missing" else None})


@st.composite
def snapshots(draw):
    """Objects that refer to each other as in a cluster (events about the pods, pods of the Jobs), so the
    detectors' deeper paths run, and sometimes dangle, as after a deletion."""
    pod_list, job_list = draw(st.lists(pods(), max_size=6)), draw(st.lists(jobs(), max_size=4))
    event_list = draw(st.lists(events(), max_size=8))
    for event in event_list:
        if pod_list and draw(st.booleans()):
            pod = draw(st.sampled_from(pod_list))["metadata"]
            event["involvedObject"] = {"kind": "Pod", "name": pod["name"], "namespace": pod["namespace"]}
            event["metadata"]["namespace"] = pod["namespace"]
    for pod in pod_list:
        if job_list and draw(st.booleans()):
            job = draw(st.sampled_from(job_list))["metadata"]
            pod["metadata"]["namespace"] = job["namespace"]
            pod["metadata"].setdefault("labels", {})["job-name"] = job["name"]
            if job.get("uid"):
                pod["metadata"]["ownerReferences"] = [{"kind": "Job", "name": job["name"], "uid": job["uid"]}]
    objects = (pod_list + event_list + job_list + draw(st.lists(nodes(), max_size=3))
               + draw(st.lists(secrets(), max_size=3)))
    objects += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}} for name in NAMESPACES]
    logs = {}
    for pod in objects:
        if pod.get("kind") == "Pod" and draw(st.booleans()):
            container = pod["spec"]["containers"][0]["name"]
            logs[(pod["metadata"]["namespace"], pod["metadata"]["name"], container, False)] = draw(st.one_of(
                huge_text, st.just("#12 ERROR: failed to solve: failed to read dockerfile: open Dockerfile: "
                                   "no such file or directory\n" * 3000)))
    return Snapshot.from_objects(objects, logs=logs)




def detector_families() -> list[str]:
    checks._load_detectors()
    return sorted(family for family in checks.DETECTORS if family != "routing")   # routing needs Kong's answer


@PROPERTY_SETTINGS
@given(snap=snapshots(), namespace=st.sampled_from([None, "nasiko-agents", "buildkit"]), agent=maybe(dns))
def test_detectors_never_raise_and_name_catalogued_codes(snap, namespace, agent):
    findings = checks.run_checks(snap, {"namespace": namespace, "agent": agent}, families=detector_families())
    for finding in findings:
        assert finding.code in CODES
        assert SECRET_PASSWORD not in finding.message + finding.evidence + finding.resource


@PROPERTY_SETTINGS
@given(snap=snapshots())
def test_the_tables_runbooks_show_never_raise(snap):
    frames = [health.nodes_frame(snap), health.workloads_frame(snap), health.not_ready_pods_frame(snap),
              health.warning_events_frame(snap), health.services_without_endpoints_frame(snap),
              image_pull.failure_table(snap, None), image_pull.failure_table(snap, "nasiko-agents", "x"),
              registry.secrets_table(snap, NAMESPACES), build.build_jobs_frame(snap),
              build.buildkit_clients_frame(snap), scheduling.node_resources_frame(snap),
              scheduling.pending_pods_frame(snap), resources.evicted_pods_frame(snap),
              resources.finished_jobs_frame(snap), resources.jobs_by_status_frame(snap),
              resources.node_capacity_frame(snap), resources.orphaned_configmaps_frame(snap)]
    for frame in frames:
        assert SECRET_PASSWORD not in frame.to_string()


@PROPERTY_SETTINGS
@given(secret=secrets())
def test_a_secret_summary_never_raises_and_never_holds_the_password(secret):
    summary = summarize_secret(secret)
    text = repr(summary)
    assert SECRET_PASSWORD not in text
    assert base64.b64encode(f"robot:{SECRET_PASSWORD}".encode()).decode() not in text


@pytest.mark.parametrize("family", ["image-pull", "registry-secrets", "registry-auth", "build", "buildkit",
                                    "scheduling", "resources", "ecr"])
def test_the_families_under_test_exist(family):
    assert family in detector_families()
