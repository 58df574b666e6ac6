"""The guide's general debugging commands as tables over one snapshot (runbook 10-cluster-health).

``kubectl get nodes`` / ``get all`` / ``describe pod`` / ``get events`` answers, computed from the
snapshot instead of one request per object; the only reads that depend on what is found are the
previous logs of the most-restarted not-ready pods, capped at :data:`PREVIOUS_LOGS_AT_MOST`.
"""
from __future__ import annotations

from collections import defaultdict

import pandas as pd
from kubernetes.client.rest import ApiException

from nasiko_nb.checks.build import name_of, namespace_of, object_age
from nasiko_nb.checks.resources import node_ready
from nasiko_nb.checks.scheduling import format_cpu, format_memory, parse_quantity
from nasiko_nb.cluster import Cluster
from nasiko_nb.snapshot import Snapshot, event_message, event_time

PREVIOUS_LOGS_AT_MOST = 5
LOG_TAIL_LINES = 20


def cluster_info(cluster: Cluster, snap: Snapshot) -> pd.DataFrame:
    """kubectl cluster-info and version, with counts of what the snapshot read."""
    rows = [("context", cluster.context), ("API server", cluster.server), ("server version", cluster.server_version()),
            ("nodes", f"{sum(node_ready(n) for n in snap.nodes)} Ready of {len(snap.nodes)}"),
            ("namespaces read", ", ".join(sorted({namespace_of(p) for p in snap.pods} | set(snap.namespaces))))]
    return pd.DataFrame(rows, columns=["", "value"])


def nodes_frame(snap: Snapshot) -> pd.DataFrame:
    """kubectl get nodes -o wide, plus the conditions that are not as they should be."""
    pods_on: dict[str, int] = defaultdict(int)
    for pod in snap.pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            pods_on[node] += 1
    rows = []
    for node in snap.nodes:
        status, spec = node.get("status") or {}, node.get("spec") or {}
        labels = (node.get("metadata") or {}).get("labels") or {}
        bad = [f"{c['type']}={c.get('status')}" for c in status.get("conditions") or []
               if (c.get("type") == "Ready") != (str(c.get("status")) == "True")]
        allocatable = status.get("allocatable") or {}
        rows.append({"node": name_of(node), "status": ("Ready" if node_ready(node) else "NotReady")
                     + (",SchedulingDisabled" if spec.get("unschedulable") else ""),
                     "roles": ",".join(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
                     or "<none>", "age": object_age(snap, node), "version": (status.get("nodeInfo") or {}).get("kubeletVersion", ""),
                     "cpu": format_cpu(parse_quantity(allocatable.get("cpu", 0))),
                     "memory": format_memory(parse_quantity(allocatable.get("memory", 0))),
                     "pods": f"{pods_on[name_of(node)]}/{allocatable.get('pods', '?')}",
                     "problems": ", ".join(bad) or "none",
                     "taints": ", ".join(f"{t.get('key')}:{t.get('effect')}" for t in spec.get("taints") or [])})
    return pd.DataFrame(rows, columns=["node", "status", "roles", "age", "version", "cpu", "memory", "pods", "problems",
                                       "taints"])


def _containers_ready(pod: dict) -> tuple[int, int, int]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or []) or len(statuses)
    return sum(1 for s in statuses if s.get("ready")), total, sum(s.get("restartCount", 0) for s in statuses)


def pod_status_text(pod: dict) -> str:
    """The STATUS column of kubectl get pods: a waiting or terminated reason before the phase."""
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    if status.get("reason"):
        return status["reason"]
    for init in status.get("initContainerStatuses") or []:
        state = init.get("state") or {}
        if state.get("waiting") and state["waiting"].get("reason") not in (None, "PodInitializing"):
            return f"Init:{state['waiting']['reason']}"
        if state.get("terminated") and state["terminated"].get("exitCode"):
            return f"Init:{state['terminated'].get('reason') or 'Error'}"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if state.get("waiting") and state["waiting"].get("reason"):
            return state["waiting"]["reason"]
        if state.get("terminated") and state["terminated"].get("reason"):
            return state["terminated"]["reason"]
    return status.get("phase", "Unknown")


def workloads_frame(snap: Snapshot) -> pd.DataFrame:
    """kubectl get all for the snapshot's namespaces: one row per pod, Service, Deployment, ReplicaSet, Job, CronJob."""
    rows = []
    for pod in snap.pods:
        ready, total, restarts = _containers_ready(pod)
        rows.append(("Pod", pod, f"{ready}/{total}", pod_status_text(pod), f"restarts {restarts}"))
    for svc in snap.services:
        spec = svc.get("spec") or {}
        ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
        rows.append(("Service", svc, "", spec.get("type", "ClusterIP"), f"{spec.get('clusterIP', '')} {ports}".strip()))
    for deploy in snap.deployments:
        status, desired = deploy.get("status") or {}, (deploy.get("spec") or {}).get("replicas", 1)
        rows.append(("Deployment", deploy, f"{status.get('readyReplicas', 0)}/{desired}",
                     "Available" if status.get("availableReplicas", 0) >= desired else "Unavailable",
                     f"up-to-date {status.get('updatedReplicas', 0)}"))
    for rs in snap.replicasets:
        status, desired = rs.get("status") or {}, (rs.get("spec") or {}).get("replicas", 0)
        if desired or status.get("replicas"):
            rows.append(("ReplicaSet", rs, f"{status.get('readyReplicas', 0)}/{desired}", "", ""))
    for job in snap.jobs:
        status, spec = job.get("status") or {}, job.get("spec") or {}
        condition = next((c.get("type") for c in status.get("conditions") or []
                          if c.get("type") in ("Complete", "Failed") and str(c.get("status")) == "True"), "Running")
        rows.append(("Job", job, f"{status.get('succeeded', 0)}/{spec.get('completions', 1)}", condition,
                     f"failed {status.get('failed', 0)}"))
    for cronjob in snap.of_kind("CronJob"):
        spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
        rows.append(("CronJob", cronjob, "", "Suspended" if spec.get("suspend") else "Active",
                     f"{spec.get('schedule', '')} last {status.get('lastScheduleTime', 'never')}"))
    return pd.DataFrame([{"kind": kind, "namespace": namespace_of(obj), "name": name_of(obj), "ready": ready,
                          "status": status, "detail": detail, "age": object_age(snap, obj)}
                         for kind, obj, ready, status, detail in rows],
                        columns=["kind", "namespace", "name", "ready", "status", "detail", "age"])


def _last_state(pod: dict) -> str:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("lastState") or {}).get("terminated")
        if terminated:
            return (f"{container.get('name')}: {terminated.get('reason', 'Terminated')} exit {terminated.get('exitCode')} "
                    f"at {terminated.get('finishedAt', '?')}")
    return ""


def not_ready_pods(snap: Snapshot) -> list[dict]:
    """Pods meant to run that do not (Pending, or containers not ready); finished pods are left out, evicted
    ones included. Most restarts first."""
    def finished(pod: dict) -> bool:
        status = pod.get("status") or {}
        return status.get("phase") in ("Succeeded", "Failed") and status.get("reason") != "Evicted"

    def unready(pod: dict) -> bool:
        ready, total, _ = _containers_ready(pod)
        return (pod.get("status") or {}).get("phase") != "Running" or ready < total

    found = [p for p in snap.pods if not finished(p) and unready(p)]
    return sorted(found, key=lambda p: (-_containers_ready(p)[2], namespace_of(p), name_of(p)))


def not_ready_pods_frame(snap: Snapshot) -> pd.DataFrame:
    rows = []
    for pod in not_ready_pods(snap):
        ready, total, restarts = _containers_ready(pod)
        waiting = next(((s.get("state") or {}).get("waiting") or {} for s in (pod.get("status") or {}).get(
            "containerStatuses") or [] if (s.get("state") or {}).get("waiting")), {})
        rows.append({"namespace": namespace_of(pod), "pod": name_of(pod), "ready": f"{ready}/{total}",
                     "status": pod_status_text(pod), "restarts": restarts, "last state": _last_state(pod),
                     "message": waiting.get("message") or (pod.get("status") or {}).get("message", ""),
                     "node": (pod.get("spec") or {}).get("nodeName", ""), "age": object_age(snap, pod)})
    return pd.DataFrame(rows, columns=["namespace", "pod", "ready", "status", "restarts", "last state", "message",
                                       "node", "age"])


def read_previous_logs(cluster: Cluster, snap: Snapshot, at_most: int = PREVIOUS_LOGS_AT_MOST) -> list[tuple[str, str, str]]:
    """The previous instance's log tail of the most-restarted not-ready pods: (pod, container, text).

    At most ``at_most`` reads whatever the cluster size; a log that is gone is reported as such.
    """
    found = []
    for pod in [p for p in not_ready_pods(snap) if _containers_ready(p)[2] > 0][:at_most]:
        container = max((pod.get("status") or {}).get("containerStatuses") or [], key=lambda s: s.get("restartCount", 0))
        where = f"/api/v1/namespaces/{namespace_of(pod)}/pods/{name_of(pod)}/log"
        try:
            text = cluster.get_text(where, container=container.get("name"), previous="true", tailLines=LOG_TAIL_LINES)
        except ApiException as exc:
            text = f"(no previous log: {exc.status} {exc.reason})"
        found.append((f"{namespace_of(pod)}/{name_of(pod)}", container.get("name", ""), text))
    return found


def warning_events_frame(snap: Snapshot) -> pd.DataFrame:
    """Warning events grouped by reason and object, newest first, with how often they happened."""
    groups: dict[tuple, dict] = {}
    for event in snap.events:
        if event.get("type") != "Warning":
            continue
        target = event.get("involvedObject") or event.get("regarding") or {}
        key = (event.get("reason", ""), target.get("kind", ""), namespace_of(event), target.get("name", ""))
        entry = groups.setdefault(key, {"count": 0, "last seen": "", "message": ""})
        entry["count"] += int(event.get("count") or (event.get("series") or {}).get("count") or 1)
        if event_time(event) >= entry["last seen"]:
            entry["last seen"], entry["message"] = event_time(event), event_message(event)
    rows = [{"reason": reason, "object": f"{kind}/{name}", "namespace": namespace, **entry}
            for (reason, kind, namespace, name), entry in groups.items()]
    frame = pd.DataFrame(rows, columns=["reason", "object", "namespace", "count", "last seen", "message"])
    return frame.sort_values("last seen", ascending=False).reset_index(drop=True)


def services_without_endpoints_frame(snap: Snapshot) -> pd.DataFrame:
    """Services with a selector whose Endpoints list no ready address (traffic to them fails)."""
    rows = []
    for svc in snap.services:
        if not (svc.get("spec") or {}).get("selector"):
            continue
        endpoints = snap.get("Endpoints", namespace_of(svc), name_of(svc))
        subsets = (endpoints or {}).get("subsets") or []
        if not any(subset.get("addresses") for subset in subsets):
            not_ready = sum(len(subset.get("notReadyAddresses") or []) for subset in subsets)
            rows.append({"namespace": namespace_of(svc), "service": name_of(svc),
                         "selector": ",".join(f"{k}={v}" for k, v in svc["spec"]["selector"].items()),
                         "matching pods": sum(1 for p in snap.pods_in(namespace_of(svc)) if all(
                             ((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                             for k, v in svc["spec"]["selector"].items())),
                         "not-ready addresses": not_ready})
    return pd.DataFrame(rows, columns=["namespace", "service", "selector", "matching pods", "not-ready addresses"])


def pod_to_describe(snap: Snapshot, chosen: str) -> str:
    """``chosen`` ("namespace/name") when given, else the most-restarted not-ready pod, else the first pod."""
    if chosen:
        return chosen
    troubled = not_ready_pods(snap)
    first = troubled[0] if troubled else next(iter(sorted(snap.pods, key=lambda p: (namespace_of(p), name_of(p)))), None)
    return f"{namespace_of(first)}/{name_of(first)}" if first else ""


def describe_pod(snap: Snapshot, namespace: str, name: str) -> str:
    """kubectl describe pod, from the snapshot: where it runs, its containers' states, conditions and events."""
    pod = snap.get("Pod", namespace, name)
    if pod is None:
        return f"pod {namespace}/{name} is not in the snapshot"
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    owner = (meta.get("ownerReferences") or [{}])[0]
    lines = [f"Name:         {name}", f"Namespace:    {namespace}", f"Node:         {spec.get('nodeName', '<none>')}",
             f"Start Time:   {status.get('startTime', '<unknown>')}",
             f"Labels:       {', '.join(f'{k}={v}' for k, v in (meta.get('labels') or {}).items()) or '<none>'}",
             f"Status:       {pod_status_text(pod)}", f"IP:           {status.get('podIP', '<none>')}",
             f"Controlled By:  {owner.get('kind', '')}/{owner.get('name', '')}" if owner else "Controlled By:  <none>"]
    statuses = {s.get("name"): s for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])}
    for title, containers in (("Init Containers", spec.get("initContainers") or []), ("Containers", spec.get("containers") or [])):
        if containers:
            lines.append(f"{title}:")
        for container in containers:
            state = statuses.get(container.get("name"), {})
            current = state.get("state") or {}
            kind = next(iter(current), "unknown")
            detail = current.get(kind) or {}
            lines += [f"  {container.get('name')}:", f"    Image:          {container.get('image')}",
                      f"    State:          {kind.capitalize()}" + (f" ({detail.get('reason')})" if detail.get("reason") else ""),
                      *([f"      Message:      {detail['message']}"] if detail.get("message") else []),
                      *([f"      Exit Code:    {detail['exitCode']}"] if "exitCode" in detail else []),
                      f"    Ready:          {state.get('ready', False)}",
                      f"    Restart Count:  {state.get('restartCount', 0)}",
                      f"    Requests:       {(container.get('resources') or {}).get('requests') or '<none>'}"]
            if _last_state({"status": {"containerStatuses": [state]}}):
                lines.append(f"    Last State:     {_last_state({'status': {'containerStatuses': [state]}})}")
    lines.append("Conditions:")
    lines += [f"  {c.get('type'):<18}{c.get('status')}" for c in status.get("conditions") or []]
    events = snap.events_for(pod)
    lines.append("Events:" + ("  <none>" if not events else ""))
    lines += [f"  {e.get('type', ''):<8}{e.get('reason', ''):<20}{event_time(e):<22}{event_message(e)}" for e in events[:15]]
    return "\n".join(lines)
