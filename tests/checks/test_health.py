"""The general-debugging tables of 10-cluster-health on hand-made snapshots."""
from __future__ import annotations

from datetime import datetime, timezone

from nasiko_nb.health import (describe_pod, nodes_frame, not_ready_pods_frame, pod_status_text, pod_to_describe,
                              services_without_endpoints_frame, warning_events_frame, workloads_frame)
from nasiko_nb.rollouts import rollout_status
from nasiko_nb.snapshot import Snapshot

NOW = datetime(2026, 4, 20, 10, 30, tzinfo=timezone.utc)


def pod(name, phase="Running", ready=True, restarts=0, waiting=None, labels=None, **status):
    state = {"waiting": waiting} if waiting else {"running": {}}
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "nasiko", "labels": labels or {},
                                        "creationTimestamp": "2026-04-20T09:30:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "x:1"}]},
            "status": {"phase": phase, **status, "containerStatuses": [
                {"name": "app", "ready": ready, "restartCount": restarts, "state": state,
                 "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": "2026-04-20T10:29:00Z"}}
                 if restarts else {}}]}}


def snap(*objects):
    return Snapshot.from_objects(objects, taken_at=NOW)


def test_pod_status_reads_like_kubectl():
    assert pod_status_text(pod("a", waiting={"reason": "CrashLoopBackOff"})) == "CrashLoopBackOff"
    assert pod_status_text(pod("b", phase="Failed", reason="Evicted")) == "Evicted"
    init = pod("c", phase="Pending")
    init["status"]["initContainerStatuses"] = [{"name": "download-agent", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]
    assert pod_status_text(init) == "Init:ImagePullBackOff"
    assert pod_status_text(pod("d")) == "Running"


def test_not_ready_pods_most_restarts_first_without_finished_ones():
    frame = not_ready_pods_frame(snap(pod("fine"), pod("crashing", ready=False, restarts=7, waiting={
        "reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}),
        pod("pulling", phase="Pending", ready=False, waiting={"reason": "ImagePullBackOff"}),
        pod("done", phase="Succeeded", ready=False), pod("job-failed", phase="Failed", ready=False)))
    assert list(frame["pod"]) == ["crashing", "pulling"]
    assert frame.loc[0, "restarts"] == 7 and frame.loc[0, "last state"].startswith("app: Error exit 1")
    assert frame.loc[0, "message"] == "back-off 5m0s restarting failed container"
    assert pod_to_describe(snap(pod("fine"), pod("crashing", ready=False, restarts=2)), "") == "nasiko/crashing"


def test_warning_events_are_grouped_and_counted():
    def event(reason, name, count, when, message):
        return {"kind": "Event", "type": "Warning", "reason": reason, "count": count, "lastTimestamp": when,
                "message": message, "metadata": {"name": f"{name}.{when}", "namespace": "nasiko"},
                "involvedObject": {"kind": "Pod", "name": name, "namespace": "nasiko"}}
    frame = warning_events_frame(snap(event("BackOff", "a", 3, "2026-04-20T10:00:00Z", "old"),
                                      event("BackOff", "a", 2, "2026-04-20T10:20:00Z", "new"),
                                      event("Failed", "b", 1, "2026-04-20T10:10:00Z", "pull failed"),
                                      {**event("Pulled", "a", 1, "2026-04-20T10:25:00Z", "ok"), "type": "Normal"}))
    assert frame.to_dict("records")[0] == {"reason": "BackOff", "object": "Pod/a", "namespace": "nasiko", "count": 5,
                                           "last seen": "2026-04-20T10:20:00Z", "message": "new"}
    assert list(frame["reason"]) == ["BackOff", "Failed"]


def test_services_without_ready_endpoints():
    service = {"kind": "Service", "metadata": {"name": "web", "namespace": "nasiko"}, "spec": {"selector": {"app": "web"}}}
    headless = {"kind": "Service", "metadata": {"name": "ext", "namespace": "nasiko"}, "spec": {}}
    endpoints = {"kind": "Endpoints", "metadata": {"name": "web", "namespace": "nasiko"},
                 "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}]}]}
    frame = services_without_endpoints_frame(snap(service, headless, endpoints, pod("w", ready=False, labels={"app": "web"})))
    assert frame.to_dict("records") == [{"namespace": "nasiko", "service": "web", "selector": "app=web",
                                         "matching pods": 1, "not-ready addresses": 1}]


def test_nodes_and_workloads_tables():
    node = {"kind": "Node", "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": True, "taints": [{"key": "dedicated", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "3900m", "memory": "6694Mi", "pods": "110"}, "nodeInfo": {"kubeletVersion": "v1.34.1"},
                       "conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "True"}]}}
    row = nodes_frame(snap(node, pod("a"))).to_dict("records")[0]
    assert row["status"] == "Ready,SchedulingDisabled" and row["problems"] == "MemoryPressure=True"
    assert row["pods"] == "1/110" and row["roles"] == "worker" and row["taints"] == "dedicated:NoSchedule"
    deploy = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "nasiko"}, "spec": {"replicas": 2},
              "status": {"readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 2}}
    kinds = workloads_frame(snap(deploy, pod("a"))).set_index("kind")
    assert kinds.loc["Deployment", "ready"] == "1/2" and kinds.loc["Deployment", "status"] == "Unavailable"


def test_describe_pod_shows_state_conditions_and_events():
    crashing = pod("crashing", ready=False, restarts=3, waiting={"reason": "CrashLoopBackOff", "message": "back-off"})
    crashing["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    event = {"kind": "Event", "type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container",
             "lastTimestamp": "2026-04-20T10:29:00Z", "metadata": {"name": "e1", "namespace": "nasiko"},
             "involvedObject": {"kind": "Pod", "name": "crashing", "namespace": "nasiko"}}
    text = describe_pod(snap(crashing, event), "nasiko", "crashing")
    assert "State:          Waiting (CrashLoopBackOff)" in text and "Restart Count:  3" in text
    assert "Last State:     app: Error exit 1" in text and "Ready             False" in text
    assert "Warning BackOff" in text and "Back-off restarting failed container" in text
    assert describe_pod(snap(), "nasiko", "x") == "pod nasiko/x is not in the snapshot"


def test_rollout_status_like_kubectl():
    def deploy(generation=2, observed=2, updated=2, replicas=2, available=2, reason="NewReplicaSetAvailable"):
        return {"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": 2},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": replicas,
                           "availableReplicas": available, "conditions": [{"type": "Progressing", "reason": reason}]}}
    assert rollout_status(deploy()).done
    assert "spec update to be observed" in rollout_status(deploy(observed=1)).message
    assert "1 out of 2 new replicas have been updated" in rollout_status(deploy(updated=1)).message
    assert "1 old replicas are pending termination" in rollout_status(deploy(replicas=3)).message
    assert "1 of 2 updated replicas are available" in rollout_status(deploy(available=1)).message
    assert rollout_status(deploy(available=1, reason="ProgressDeadlineExceeded")).failed
