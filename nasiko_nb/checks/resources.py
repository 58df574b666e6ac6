"""Capacity, pressure and left-overs: resources/* findings and the tables of the resource runbook.

Evicted pods and failed Jobs (condition ``Failed=True`` only) per namespace, finished Jobs kept forever
(no ``ttlSecondsAfterFinished``, in the build namespace by default; Jobs of CronJobs are pruned by the
CronJob's history limits and left out), nodes reporting Memory/Disk/PID pressure, requests close to
what the schedulable nodes can hold, and ``agent-files-<agent>-<ts>`` ConfigMaps that no active build
Job uses any more. Succeeded pods are never flagged; a Job is failed only when its condition says so.
"""
from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal

import pandas as pd

from nasiko_nb.checks import detector
from nasiko_nb.checks.build import (BUILD_JOB, DEFAULT_NAMESPACE, human_age, job_condition, job_status, name_of,
                                    namespace_of, object_age, parse_time)
from nasiko_nb.checks.scheduling import format_cpu, format_memory, node_resources, parse_quantity
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.redact import scrub
from nasiko_nb.snapshot import ALL_NAMESPACES, Snapshot

#: What the resource runbook reads: each kind once across the cluster (a node's requests include every
#: namespace's pods), metrics-server's node usage, and no Secrets.
RESOURCE_SNAPSHOT = {"namespaces": ALL_NAMESPACES, "kinds": ("pods", "events", "jobs", "configmaps"),
                     "cluster_kinds": ("namespaces", "nodes", "nodemetrics")}
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")
CAPACITY_LOW_PCT = 90        # requests above this share of the schedulable nodes' allocatable: new pods wait
GIB = 2 ** 30
AGENT_FILES = re.compile(r"^agent-files-(?P<agent>.+)-(?P<ts>\d{9,})$")
_LIST_AT_MOST = 10


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_AT_MOST])
    return shown + (f" and {len(items) - _LIST_AT_MOST} more" if len(items) > _LIST_AT_MOST else "")


def evicted_pods(snapshot: Snapshot) -> dict[str, list[dict]]:
    by_ns: dict[str, list[dict]] = defaultdict(list)
    for pod in snapshot.pods:
        status = pod.get("status") or {}
        if status.get("reason") == "Evicted" and status.get("phase") != "Succeeded":
            by_ns[namespace_of(pod)].append(pod)
    return dict(by_ns)


def evicted_pods_frame(snapshot: Snapshot) -> pd.DataFrame:
    rows = [{"namespace": namespace_of(pod), "pod": name_of(pod), "node": (pod.get("spec") or {}).get("nodeName", ""),
             "age": object_age(snapshot, pod), "message": (pod.get("status") or {}).get("message", "")}
            for pods in evicted_pods(snapshot).values() for pod in pods]
    return pd.DataFrame(rows, columns=["namespace", "pod", "node", "age", "message"])


def finished_at(job: dict):
    """When the Job finished: completionTime, else its Complete/Failed condition's transition time."""
    status = job.get("status") or {}
    condition = job_condition(job, "Complete") or job_condition(job, "Failed") or {}
    return parse_time(status.get("completionTime") or condition.get("lastTransitionTime"))


def owned_by_cronjob(job: dict) -> bool:
    return any(ref.get("kind") == "CronJob" for ref in (job.get("metadata") or {}).get("ownerReferences") or [])


@detector("resources")
def detect(snapshot: Snapshot, params: dict) -> list[Finding]:
    findings: list[Finding] = []
    for namespace, pods in sorted(evicted_pods(snapshot).items()):
        example = pods[0]
        status = example.get("status") or {}
        evidence = (f"{len(pods)} pods with status.reason Evicted: {_names([name_of(p) for p in pods])}; "
                    f"e.g. {name_of(example)} on node {(example.get('spec') or {}).get('nodeName') or '?'}: "
                    f"{status.get('message') or '(no message)'}")
        findings.append(make_finding("resources/evicted-pods", f"Namespace {namespace}", scrub(evidence),
                                     count=len(pods), namespace=namespace))

    # Jobs kept forever matter where Jobs are created all the time: the build namespace (one-off install
    # Jobs of the platform's charts are kept on purpose); params["ttl_namespaces"] widens it.
    ttl_namespaces = set(params.get("ttl_namespaces") or [params.get("namespace") or DEFAULT_NAMESPACE])
    failed, finished = defaultdict(list), defaultdict(list)
    for job in snapshot.jobs:
        condition = job_condition(job, "Failed")
        if condition:
            failed[namespace_of(job)].append(f"{name_of(job)} ({condition.get('reason') or 'Failed'})")
        if namespace_of(job) in ttl_namespaces and job_status(job) in ("Failed", "Complete") \
                and (job.get("spec") or {}).get("ttlSecondsAfterFinished") is None and not owned_by_cronjob(job):
            finished[namespace_of(job)].append(f"{name_of(job)} ({job_status(job)})")
    for namespace, jobs in sorted(failed.items()):
        findings.append(make_finding("resources/failed-jobs", f"Namespace {namespace}",
                                     f"Jobs with condition Failed=True: {_names(jobs)}",
                                     count=len(jobs), namespace=namespace))
    for namespace, jobs in sorted(finished.items()):
        findings.append(make_finding("resources/finished-jobs-without-ttl", f"Namespace {namespace}",
                                     f"finished Jobs without spec.ttlSecondsAfterFinished: {_names(jobs)}",
                                     count=len(jobs), namespace=namespace))

    for node in snapshot.nodes:
        for condition in (node.get("status") or {}).get("conditions") or []:
            if condition.get("type") in PRESSURE_CONDITIONS and str(condition.get("status")) == "True":
                evidence = (f"condition {condition['type']}=True since {condition.get('lastTransitionTime') or '?'}: "
                            f"{condition.get('reason') or ''} {condition.get('message') or ''}".strip())
                findings.append(make_finding("resources/node-pressure", f"Node {name_of(node)}", evidence,
                                             node=name_of(node), condition=condition["type"]))

    findings += _capacity_low(snapshot)
    findings += [make_finding("resources/orphaned-configmaps", f"Namespace {namespace}",
                              "agent-files ConfigMaps without an active build Job: "
                              + _names([f"{name_of(cm)} ({why})" for cm, why in items]),
                              count=len(items), namespace=namespace)
                 for namespace, items in sorted(orphaned_configmaps(snapshot).items())]
    return findings


def _capacity_low(snapshot: Snapshot) -> list[Finding]:
    """Requests of the running pods near the allocatable of the Ready, schedulable nodes, per resource."""
    nodes = {n.node: n for n in node_resources(snapshot)}
    usable = [nodes[name_of(node)] for node in snapshot.nodes
              if name_of(node) in nodes and not nodes[name_of(node)].unschedulable and node_ready(node)]
    findings = []
    for resource, fmt in (("cpu", format_cpu), ("memory", format_memory)):
        allocatable = sum((n.allocatable[resource] for n in usable), Decimal(0))
        requested = sum((n.requested[resource] for n in usable), Decimal(0))
        if not allocatable or requested * 100 < allocatable * CAPACITY_LOW_PCT:
            continue
        roomiest = max(usable, key=lambda n: n.free[resource])
        percent = int(requested * 100 / allocatable)
        evidence = (f"pods request {fmt(requested)} of {fmt(allocatable)} {resource} allocatable on {len(usable)} "
                    f"Ready schedulable node(s) ({percent}%); the most free on one node: {fmt(roomiest.free[resource])} "
                    f"on {roomiest.node}")
        findings.append(make_finding("resources/capacity-low", f"Cluster {snapshot.context}", evidence,
                                     resource=resource, percent=percent, nodes=len(usable)))
    return findings


def node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and str(c.get("status")) == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def orphaned_configmaps(snapshot: Snapshot) -> dict[str, list[tuple[dict, str]]]:
    """Per namespace: (ConfigMap, what became of its build Job) for agent-files ConfigMaps no active Job uses."""
    active: set[tuple[str, str, str]] = set()     # (namespace, agent, ts) of build Jobs still running
    finished: dict[tuple[str, str, str], str] = {}
    for job in snapshot.jobs:
        match = BUILD_JOB.match(name_of(job))
        if not match:
            continue
        key = (namespace_of(job), match["agent"], match["ts"])
        if job_status(job) in ("Failed", "Complete"):
            finished[key] = f"{name_of(job)} {job_status(job).lower()}"
        else:
            active.add(key)
    by_ns: dict[str, list[tuple[dict, str]]] = defaultdict(list)
    for cm in snapshot.configmaps:
        match = AGENT_FILES.match(name_of(cm))
        if not match:
            continue
        key = (namespace_of(cm), match["agent"], match["ts"])
        if key in active:
            continue
        by_ns[key[0]].append((cm, finished.get(key, "no Job")))
    return dict(by_ns)


def orphaned_configmaps_frame(snapshot: Snapshot) -> pd.DataFrame:
    rows = [{"namespace": namespace_of(cm), "configmap": name_of(cm), "age": object_age(snapshot, cm), "build job": why}
            for items in orphaned_configmaps(snapshot).values() for cm, why in items]
    return pd.DataFrame(rows, columns=["namespace", "configmap", "age", "build job"])


def finished_jobs_frame(snapshot: Snapshot, namespace: str | None = None) -> pd.DataFrame:
    """Failed and completed Jobs, oldest first: what the clean-up fixes choose from."""
    rows = []
    for job in snapshot.jobs:
        status = job_status(job)
        if status not in ("Failed", "Complete") or (namespace and namespace_of(job) != namespace):
            continue
        done = finished_at(job)
        condition = job_condition(job, "Failed") or {}
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        rows.append({"namespace": namespace_of(job), "job": name_of(job), "status": status,
                     "reason": condition.get("reason", ""),
                     "finished": human_age(snapshot.taken_at - done) + " ago" if done else "",
                     "ttl": "" if ttl is None else f"{ttl}s", "owner": "CronJob" if owned_by_cronjob(job) else "",
                     "_finished": done})
    frame = pd.DataFrame(rows, columns=["namespace", "job", "status", "reason", "finished", "ttl", "owner", "_finished"])
    return frame.sort_values("_finished", na_position="first").drop(columns="_finished").reset_index(drop=True)


def jobs_by_status_frame(snapshot: Snapshot) -> pd.DataFrame:
    """Jobs per namespace and status, with how many of the finished ones have no TTL."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for job in snapshot.jobs:
        status = job_status(job)
        entry = counts[(namespace_of(job), status)]
        entry[0] += 1
        if status in ("Failed", "Complete") and (job.get("spec") or {}).get("ttlSecondsAfterFinished") is None:
            entry[1] += 1
    rows = [{"namespace": ns, "status": status, "jobs": n, "finished without ttl": no_ttl}
            for (ns, status), (n, no_ttl) in sorted(counts.items())]
    return pd.DataFrame(rows, columns=["namespace", "status", "jobs", "finished without ttl"])


# --- node capacity ----------------------------------------------------------------------------------------

POOL_LABELS = ("doks.digitalocean.com/node-pool", "eks.amazonaws.com/nodegroup",
               "cloud.google.com/gke-nodepool", "kubernetes.azure.com/agentpool")


def node_pool_of(node: dict) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return next((labels[key] for key in POOL_LABELS if labels.get(key)), "")


def node_usage(snapshot: Snapshot) -> dict[str, dict[str, Decimal]]:
    """metrics-server's usage per node (empty when the metrics API is absent)."""
    usage = {}
    for item in snapshot.of_kind("NodeMetrics"):
        values = item.get("usage") or {}
        try:
            usage[name_of(item)] = {k: parse_quantity(values[k]) for k in ("cpu", "memory") if k in values}
        except ValueError:
            continue
    return usage


CAPACITY_COLUMNS = ["node", "pool", "ready", "schedulable", "pods"] + [
    f"{resource}_{column}{unit}" for resource, unit in (("cpu", ""), ("memory", "_gib"))
    for column in ("capacity", "allocatable", "requested", "used")] + [
    f"{resource}_{column}_pct" for resource in ("cpu", "memory") for column in ("requested", "used")]


def node_capacity_frame(snapshot: Snapshot) -> pd.DataFrame:
    """Per node: cpu in cores and memory in GiB, allocatable / requested / used, with percentages.

    "used" comes from metrics-server and is empty without it; percentages are of allocatable.
    """
    usage = node_usage(snapshot)
    by_name = {name_of(node): node for node in snapshot.nodes}
    rows = []
    for item in node_resources(snapshot):
        node = by_name.get(item.node, {})
        row = {"node": item.node, "pool": node_pool_of(node), "ready": node_ready(node),
               "schedulable": not item.unschedulable, "pods": item.pods}
        for resource, scale in (("cpu", Decimal(1)), ("memory", Decimal(GIB))):
            unit = "" if resource == "cpu" else "_gib"
            allocatable = item.allocatable[resource]
            used = usage.get(item.node, {}).get(resource)
            row[f"{resource}_capacity{unit}"] = round(float(item.capacity[resource] / scale), 2)
            row[f"{resource}_allocatable{unit}"] = round(float(allocatable / scale), 2)
            row[f"{resource}_requested{unit}"] = round(float(item.requested[resource] / scale), 2)
            row[f"{resource}_used{unit}"] = None if used is None else round(float(used / scale), 2)
            row[f"{resource}_requested_pct"] = _percent(item.requested[resource], allocatable)
            row[f"{resource}_used_pct"] = None if used is None else _percent(used, allocatable)
        rows.append(row)
    return pd.DataFrame(rows, columns=CAPACITY_COLUMNS)


def _percent(part: Decimal, whole: Decimal) -> float | None:
    return round(float(part * 100 / whole), 1) if whole else None
