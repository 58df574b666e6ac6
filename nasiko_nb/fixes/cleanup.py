"""Clean-up fixes of the resource runbook: failed Jobs, old completed build Jobs, evicted pods, orphaned ConfigMaps.

Completed Jobs are cleaned only when they are build Jobs (``job-<agent>-<ts>``): the platform's one-off
install Jobs are kept on purpose, and Jobs of CronJobs are pruned by their history limits.

Each is one plan per namespace, with the count in its description. Where a field selector selects exactly
the planned objects in the snapshot (every Job with ``status.successful=0`` is failed; every pod with
``status.phase=Failed`` was evicted), the plan is one delete-collection request, as
``kubectl delete jobs --field-selector status.successful=0`` sends; otherwise one delete per object.

Build Jobs keep being created while the plan is on screen, and a running Job also has no success yet.
So before a delete-collection is sent, the executor lists the selector again (one request) and sends it
only if that list still holds nothing but planned objects in the planned state; otherwise it deletes
the planned objects one by one. An object already gone (404) counts as deleted. A refusal stops the
fix with what was deleted and what is left, in one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable
from urllib.parse import quote

from kubernetes.client.rest import ApiException

from nasiko_nb import fixes
from nasiko_nb.checks.build import BUILD_JOB, job_condition, job_status, name_of, namespace_of
from nasiko_nb.checks.resources import evicted_pods, finished_at, orphaned_configmaps, owned_by_cronjob
from nasiko_nb.cluster import ApiFailure, Cluster
from nasiko_nb.fixes import Change, Plan
from nasiko_nb.snapshot import Snapshot

BACKGROUND = {"propagationPolicy": "Background"}   # the Job's pods go with it, as with kubectl delete


@dataclass(frozen=True)
class Collection:
    """Where objects of one kind live in the API, and how to tell the ones a clean-up may delete."""

    kind: str
    path: str                          # collection path with {namespace}
    selector: str                      # field selector that covers the planned objects, "" for none
    selected: Callable[[dict], bool]   # what the selector matches, evaluated on a snapshot object
    deletable: Callable[[dict], bool]  # what the clean-up means to delete

    def collection_path(self, namespace: str) -> str:
        return self.path.format(namespace=namespace)


def _succeeded(job: dict) -> int:
    return int((job.get("status") or {}).get("succeeded") or 0)


def _cleanable_failed_job(job: dict) -> bool:
    """Failed, and not kept by a CronJob's history (the refresher's last failure is evidence)."""
    return job_condition(job, "Failed") is not None and not owned_by_cronjob(job)


def _evicted(pod: dict) -> bool:
    status = pod.get("status") or {}
    return status.get("reason") == "Evicted" and status.get("phase") == "Failed"


FAILED_JOBS = Collection("Job", "/apis/batch/v1/namespaces/{namespace}/jobs", "status.successful=0",
                         lambda job: _succeeded(job) == 0, _cleanable_failed_job)
EVICTED_PODS = Collection("Pod", "/api/v1/namespaces/{namespace}/pods", "status.phase=Failed",
                          lambda pod: (pod.get("status") or {}).get("phase") == "Failed", _evicted)


def _completed_before(cutoff) -> Callable[[dict], bool]:
    def old_enough(job: dict) -> bool:
        done = finished_at(job)
        return (job_status(job) == "Complete" and BUILD_JOB.match(name_of(job)) is not None
                and not owned_by_cronjob(job) and done is not None and done <= cutoff)
    return old_enough


def _completed_jobs(cutoff) -> Collection:
    return Collection("Job", "/apis/batch/v1/namespaces/{namespace}/jobs", "status.successful=1",
                      lambda job: _succeeded(job) == 1, _completed_before(cutoff))


CONFIGMAPS = Collection("ConfigMap", "/api/v1/namespaces/{namespace}/configmaps", "", lambda cm: False,
                        lambda cm: True)


def _objects(snap: Snapshot, kind: str, namespace: str) -> list[dict]:
    return [obj for obj in snap.of_kind(kind) if namespace_of(obj) == namespace]


def plan_deletion(fix: str, namespace: str, what: str, targets: list[dict], collection: Collection,
                  candidates: list[dict], notes: list[str] = ()) -> Plan | None:
    """One delete-collection when ``collection.selector`` selects exactly ``targets`` among ``candidates``,
    else one delete per target; None when there is nothing to delete."""
    if not targets:
        return None
    names = sorted(name_of(obj) for obj in targets)
    selected = {name_of(obj) for obj in candidates if collection.selected(obj)}
    base = collection.collection_path(namespace)
    body = BACKGROUND if collection.kind == "Job" else None
    if collection.selector and selected == set(names):
        changes = [Change(verb="delete-collection", path=f"{base}?fieldSelector={quote(collection.selector)}",
                          resource=f"{len(names)} {collection.kind}s in {namespace}", body=body, objects=len(names),
                          description=f"delete the {len(names)} {what} in one request: every {collection.kind} "
                                      f"with {collection.selector} (checked again just before)")]
        notes = [*notes, f"`kubectl delete {collection.kind.lower()}s -n {namespace} "
                         f"--field-selector {collection.selector}` does the same."]
    else:
        if collection.selector:
            notes = [*notes, f"{len(selected - set(names))} other {collection.kind}(s) match {collection.selector}, "
                             f"so the {what} are deleted one by one."]
        changes = [Change(verb="delete", path=f"{base}/{name}", resource=f"{collection.kind} {namespace}/{name}",
                          body=body, description=f"delete ({what})") for name in names]
    return Plan(fix=fix, target=f"{fix}/{namespace}", changes=changes, notes=list(notes),
                executor=lambda cluster, plan, progress: _execute(cluster, plan, collection, namespace, names,
                                                                   progress),
                verify=lambda cluster: _left_over(cluster, collection, namespace, what, set(names)))


def plan_failed_jobs(snap: Snapshot, namespace: str) -> Plan | None:
    jobs = _objects(snap, "Job", namespace)
    kept = [name_of(j) for j in jobs if job_condition(j, "Failed") and owned_by_cronjob(j)]
    notes = [f"Kept: {len(kept)} failed Job(s) of CronJobs ({', '.join(kept[:5])}); their history limit prunes "
             f"them and the last failure explains the CronJob."] if kept else []
    return plan_deletion("delete-failed-jobs", namespace, "failed Jobs",
                         [j for j in jobs if _cleanable_failed_job(j)], FAILED_JOBS, jobs, notes)


def plan_completed_jobs(snap: Snapshot, namespace: str, older_than_h: float) -> Plan | None:
    cutoff = snap.taken_at - timedelta(hours=older_than_h)
    jobs = _objects(snap, "Job", namespace)
    collection = _completed_jobs(cutoff)
    return plan_deletion("delete-completed-jobs", namespace, f"build Jobs completed more than {older_than_h:g} h ago",
                         [j for j in jobs if collection.deletable(j)], collection, jobs)


def plan_evicted_pods(snap: Snapshot, namespace: str) -> Plan | None:
    pods = _objects(snap, "Pod", namespace)
    return plan_deletion("delete-evicted-pods", namespace, "evicted pods", evicted_pods(snap).get(namespace, []),
                         EVICTED_PODS, pods)


def plan_orphaned_configmaps(snap: Snapshot, namespace: str) -> Plan | None:
    orphans = [cm for cm, _ in orphaned_configmaps(snap).get(namespace, [])]
    return plan_deletion("delete-orphaned-configmaps", namespace, "orphaned agent-files ConfigMaps", orphans,
                         CONFIGMAPS, orphans)


def cleanup_plans(snap: Snapshot, namespaces: list[str], completed_older_than_h: float) -> list[Plan]:
    """Every clean-up with something to delete, per namespace."""
    plans = []
    for namespace in namespaces:
        plans += [plan_failed_jobs(snap, namespace), plan_completed_jobs(snap, namespace, completed_older_than_h),
                  plan_evicted_pods(snap, namespace), plan_orphaned_configmaps(snap, namespace)]
    return [plan for plan in plans if plan is not None]


def _execute(cluster: Cluster, plan: Plan, collection: Collection, namespace: str, names: list[str],
             progress: fixes.Progress) -> fixes.Outcome:
    total = len(names)
    progress(0, total)
    [first] = plan.changes[:1]
    if first.verb == "delete-collection":
        unexpected = _unplanned_matches(cluster, collection, namespace, set(names))
        if not unexpected:
            response = _send(cluster, first, deleted=[], total=total)
            deleted = len(response.get("items") or [])
            entry = fixes.record(plan, first, response)
            entry["deleted"] = deleted
            progress(total, total)
            return fixes.Outcome(plan, True, f"deleted {deleted} {collection.kind}(s) in {namespace} with one "
                                             f"delete-collection ({collection.selector})", [entry])
        changes = [Change(verb="delete", path=f"{collection.collection_path(namespace)}/{name}",
                          resource=f"{collection.kind} {namespace}/{name}", body=first.body,
                          description="delete one by one: " + unexpected) for name in names]
    else:
        changes = plan.changes
    results, gone = [], 0
    deleted: list[str] = []
    for change in changes:
        try:
            response = _send(cluster, change, deleted=deleted, total=total)
        except _AlreadyGone:
            gone += 1
        else:
            results.append(fixes.record(plan, change, response))
        deleted.append(change.resource.rsplit("/", 1)[1])
        progress(len(deleted), total)
    already = f" ({gone} were already gone)" if gone else ""
    return fixes.Outcome(plan, True, f"deleted {len(results)} {collection.kind}(s) in {namespace} one by one{already}",
                         results)


def _left_over(cluster: Cluster, collection: Collection, namespace: str, what: str, planned: set[str]) -> str:
    """One list request: how many planned objects are still there, and how many new ones qualify."""
    try:
        items = cluster.get_json(collection.collection_path(namespace), fieldSelector=collection.selector)["items"]
    except ApiException as exc:
        failure = ApiFailure.from_exception(exc)
        return f"verify: listing {collection.kind}s in {namespace} failed ({failure.status} {failure.reason})"
    names = {name_of(obj) for obj in items if collection.deletable(obj)}
    left, new = len(names & planned), len(names - planned)
    return (f"verify: {left} of the {len(planned)} planned {what} still in {namespace}"
            + (f"; {new} more appeared since the plan" if new else ""))


class _AlreadyGone(Exception):
    """The object was deleted by someone else between plan and apply."""


def _unplanned_matches(cluster: Cluster, collection: Collection, namespace: str, planned: set[str]) -> str:
    """Why the delete-collection may not be sent now ("" when it may): what the selector matches besides the plan."""
    try:
        items = cluster.get_json(collection.collection_path(namespace), fieldSelector=collection.selector)["items"]
    except ApiException as exc:
        failure = ApiFailure.from_exception(exc)
        return f"listing {collection.selector} again failed ({failure.status} {failure.reason})"
    extra = sorted(name_of(obj) for obj in items if name_of(obj) not in planned or not collection.deletable(obj))
    if extra:
        return f"{collection.selector} now also matches {', '.join(extra[:5])}" + (
            f" and {len(extra) - 5} more" if len(extra) > 5 else "")
    return ""


def _send(cluster: Cluster, change: Change, *, deleted: list[str], total: int) -> dict:
    try:
        return fixes.send(cluster, change)
    except ApiException as exc:
        failure = ApiFailure.from_exception(exc)
        if failure.status == 404 and change.verb == "delete":
            raise _AlreadyGone() from None
        raise fixes.FixFailed(
            f"{change.verb} {change.resource} was refused: {failure.status} {failure.reason}: {failure.message}; "
            f"{len(deleted)} of {total} were deleted before it, the rest are untouched: rerun the runbook "
            f"to plan what is left") from None
