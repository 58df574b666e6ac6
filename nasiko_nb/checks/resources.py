"""Left-overs and pressure: resources/* findings.

Evicted pods and failed Jobs (condition ``Failed=True`` only) per namespace, finished Jobs kept forever
(no ``ttlSecondsAfterFinished``, in the build namespace by default; Jobs of CronJobs are pruned by the
CronJob's history limits and left out),
nodes reporting Memory/Disk/PID pressure, and ``agent-files-<agent>-<ts>`` ConfigMaps that no active build
Job uses any more. Succeeded pods are never flagged; a Job is failed only when its condition says so.
"""
from __future__ import annotations

import re
from collections import defaultdict

from nasiko_nb.checks import detector
from nasiko_nb.checks.build import BUILD_JOB, DEFAULT_NAMESPACE, job_condition, job_status, name_of, namespace_of
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.redact import scrub
from nasiko_nb.snapshot import Snapshot

PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")
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


def _owned_by_cronjob(job: dict) -> bool:
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
                and (job.get("spec") or {}).get("ttlSecondsAfterFinished") is None and not _owned_by_cronjob(job):
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

    findings += _orphaned_configmaps(snapshot)
    return findings


def _orphaned_configmaps(snapshot: Snapshot) -> list[Finding]:
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
    by_ns: dict[str, list[str]] = defaultdict(list)
    for cm in snapshot.configmaps:
        match = AGENT_FILES.match(name_of(cm))
        if not match:
            continue
        key = (namespace_of(cm), match["agent"], match["ts"])
        if key in active:
            continue
        by_ns[key[0]].append(f"{name_of(cm)} ({finished.get(key, 'no Job')})")
    return [make_finding("resources/orphaned-configmaps", f"Namespace {namespace}",
                         f"agent-files ConfigMaps without an active build Job: {_names(items)}",
                         count=len(items), namespace=namespace)
            for namespace, items in sorted(by_ns.items())]
