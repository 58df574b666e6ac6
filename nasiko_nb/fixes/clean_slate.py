"""The guide's pattern 3, clean slate reset, as one plan: what goes, what restarts, then wait for it.

``kubectl delete jobs -n nasiko-agents --all`` (one delete-collection: running builds go too, and the
plan names them), ``kubectl delete pods --field-selector=status.phase==Failed`` (one delete-collection),
``kubectl rollout restart`` of nasiko-backend and the build worker (``nasiko-k8s-build-worker`` in the
platform's code, ``k8s-build-worker`` in the guide: whichever exists), then the wait for every platform
Deployment to be available again (the guide waits for nasiko-backend only; a reset that leaves the web
UI down is not done).
"""
from __future__ import annotations

import time

from kubernetes.client.rest import ApiException

from nasiko_nb import fixes
from nasiko_nb.checks.build import job_status, name_of, namespace_of
from nasiko_nb.cluster import Cluster
from nasiko_nb.fixes import Change, Plan
from nasiko_nb.fixes.cleanup import BACKGROUND
from nasiko_nb.fixes.workloads import restart_change
from nasiko_nb.rollouts import POLL_S, rollout_status
from nasiko_nb.snapshot import Snapshot

TARGET = "clean-slate"
RESTARTED = ("nasiko-backend", ("nasiko-k8s-build-worker", "k8s-build-worker"))


def deployments_to_restart(snap: Snapshot, namespace: str) -> list[str]:
    names = {name_of(d) for d in snap.deployments if namespace_of(d) == namespace}
    chosen = []
    for wanted in RESTARTED:
        options = (wanted,) if isinstance(wanted, str) else wanted
        chosen += [name for name in options if name in names][:1]
    return chosen


def plan_clean_slate(snap: Snapshot, agents_namespace: str, platform_namespace: str, timeout_s: float) -> Plan:
    jobs = [j for j in snap.jobs if namespace_of(j) == agents_namespace]
    running = [name_of(j) for j in jobs if job_status(j) in ("Active", "Pending")]
    job_names = {name_of(j) for j in jobs}
    failed_pods = [p for p in snap.pods_in(agents_namespace) if (p.get("status") or {}).get("phase") == "Failed"
                   and snap.job_name_of(p) not in job_names]     # a Job's pods already go with the Job
    restart = deployments_to_restart(snap, platform_namespace)
    platform = sorted(name_of(d) for d in snap.deployments if namespace_of(d) == platform_namespace)
    changes = []
    if jobs:
        changes.append(Change(verb="delete-collection", path=f"/apis/batch/v1/namespaces/{agents_namespace}/jobs",
                              resource=f"{len(jobs)} Jobs in {agents_namespace}", body=BACKGROUND, objects=len(jobs),
                              description=f"delete every Job ({len(running)} still running) and their pods"))
    if failed_pods:
        changes.append(Change(verb="delete-collection",
                              path=f"/api/v1/namespaces/{agents_namespace}/pods?fieldSelector=status.phase%3DFailed",
                              resource=f"{len(failed_pods)} failed pods in {agents_namespace}", objects=len(failed_pods),
                              description="delete the pods in phase Failed that no deleted Job owns"))
    changes += [restart_change(platform_namespace, name, "rolling restart") for name in restart]
    notes = [f"then wait up to {timeout_s:g} s for the {len(platform)} Deployments of {platform_namespace} to be "
             f"available: {', '.join(platform)}"]
    if running:
        notes.insert(0, f"running builds are deleted too: {', '.join(running[:10])}"
                        + (f" and {len(running) - 10} more" if len(running) > 10 else ""))
    blocked = "" if restart else (f"neither nasiko-backend nor a build worker Deployment is in {platform_namespace}: "
                                  f"is this the Nasiko platform's namespace?")
    return Plan(fix="clean-slate-reset", target=TARGET, changes=changes, notes=notes, blocked=blocked,
                executor=lambda cluster, plan, progress: _execute(cluster, plan, progress, platform_namespace,
                                                                   platform, timeout_s))


def _execute(cluster: Cluster, plan: Plan, progress: fixes.Progress, namespace: str, platform: list[str],
             timeout_s: float) -> fixes.Outcome:
    entries = fixes.send_in_order(cluster, plan)
    waiting = _wait_available(cluster, namespace, platform, timeout_s, progress)
    if waiting:
        raise fixes.FixFailed(f"the reset was applied ({len(entries)} change(s)) but after {timeout_s:g} s these "
                              f"Deployments are not available: {'; '.join(waiting)}")
    return fixes.Outcome(plan, True, f"applied {len(entries)} change(s); all {len(platform)} Deployments of {namespace} "
                                     f"are available", entries)


def _wait_available(cluster: Cluster, namespace: str, names: list[str], timeout_s: float,
                    progress: fixes.Progress) -> list[str]:
    """One list per poll until every named Deployment's rollout is done; returns the ones still waiting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            items = cluster.get_json(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
        except ApiException as exc:
            return [f"listing Deployments failed ({exc.status} {exc.reason})"]
        by_name = {name_of(d): d for d in items}
        waiting = [f"{name}: " + (rollout_status(by_name[name]).message if name in by_name else "gone")
                   for name in names if name not in by_name or not rollout_status(by_name[name]).done]
        progress(len(names) - len(waiting), len(names))
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(POLL_S)
