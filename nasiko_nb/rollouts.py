"""Deployment rollouts the way kubectl does them: restart, status, history and undo.

``kubectl rollout restart`` patches a ``restartedAt`` annotation into the pod template; ``rollout undo``
sends a JSON patch that replaces the template with the chosen ReplicaSet's (its ``pod-template-hash``
label removed) and the Deployment's annotations with the ReplicaSet's; ``rollout status`` reads the
Deployment's status until the new ReplicaSet is fully available. The same requests are sent here, so
the Deployment controller (real or emulated) treats them exactly as it treats kubectl's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
from kubernetes.client.rest import ApiException

from nasiko_nb import fixes
from nasiko_nb.checks.build import name_of, object_age
from nasiko_nb.cluster import ApiFailure, Cluster
from nasiko_nb.fixes import Change, Plan
from nasiko_nb.fixes.workloads import RESTARTED_AT, restart_change
from nasiko_nb.snapshot import Snapshot, take_snapshot

REVISION = "deployment.kubernetes.io/revision"
# annotations kubectl keeps from the Deployment instead of copying them from the ReplicaSet on undo
_UNDO_KEEPS = ("kubectl.kubernetes.io/last-applied-configuration", REVISION, "deployment.kubernetes.io/revision-history",
               "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
               "deprecated.deployment.rollback.to")
POLL_S = 1.0


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str
    updated: int
    desired: int


def rollout_status(deployment: dict) -> RolloutStatus:
    """kubectl rollout status's reading of one Deployment."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    name, desired = meta.get("name", "?"), spec.get("replicas", 1)
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return RolloutStatus(False, False, f"waiting for deployment {name!r} spec update to be observed", updated, desired)
    progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return RolloutStatus(False, True, f"deployment {name!r} exceeded its progress deadline", updated, desired)
    if updated < desired:
        message = f"{updated} out of {desired} new replicas have been updated"
    elif status.get("replicas", 0) > updated:
        message = f"{status['replicas'] - updated} old replicas are pending termination"
    elif available < updated:
        message = f"{available} of {updated} updated replicas are available"
    else:
        return RolloutStatus(True, False, f"deployment {name!r} successfully rolled out", updated, desired)
    return RolloutStatus(False, False, f"waiting for rollout to finish: {message}", updated, desired)


def status_frame(deployment: dict) -> pd.DataFrame:
    """kubectl get deployment plus rollout status, as one row."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    state = rollout_status(deployment)
    return pd.DataFrame([{"deployment": name_of(deployment), "revision": _revision(deployment),
                          "desired": spec.get("replicas", 1), "updated": status.get("updatedReplicas", 0),
                          "ready": status.get("readyReplicas", 0), "available": status.get("availableReplicas", 0),
                          "rollout": state.message}])


def wait_for_rollout(cluster: Cluster, namespace: str, name: str, timeout_s: float,
                     progress: fixes.Progress = fixes.no_progress) -> RolloutStatus:
    """Poll the Deployment until its rollout is done, failed, or ``timeout_s`` passed (one GET per poll)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            deployment = cluster.get_json(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        except ApiException as exc:
            failure = ApiFailure.from_exception(exc)
            return RolloutStatus(False, True, f"reading deployment {name!r} failed: {failure.status} {failure.reason}",
                                 0, 0)
        state = rollout_status(deployment)
        progress(min(state.updated, state.desired) if not state.done else state.desired, max(state.desired, 1))
        if state.done or state.failed:
            return state
        if time.monotonic() >= deadline:
            return RolloutStatus(False, True, f"{state.message} (timed out after {timeout_s:g} s)", state.updated,
                                 state.desired)
        time.sleep(POLL_S)


def owned_replicasets(snap: Snapshot, deployment: dict) -> list[dict]:
    uid = (deployment.get("metadata") or {}).get("uid")
    return [rs for rs in snap.replicasets if any(ref.get("uid") == uid for ref in
                                                 (rs.get("metadata") or {}).get("ownerReferences") or [])]


def _revision(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def revisions_frame(snap: Snapshot, deployment: dict) -> pd.DataFrame:
    """kubectl rollout history, with what each revision runs: images, restartedAt, replicas, age."""
    current = _revision(deployment)
    rows = []
    for rs in sorted(owned_replicasets(snap, deployment), key=_revision):
        template = (rs.get("spec") or {}).get("template") or {}
        containers = (template.get("spec") or {}).get("containers") or []
        rows.append({"revision": _revision(rs), "replicaset": name_of(rs),
                     "current": _revision(rs) == current,
                     "replicas": f"{(rs.get('status') or {}).get('readyReplicas', 0)}/{(rs.get('spec') or {}).get('replicas', 0)}",
                     "images": ", ".join(c.get("image", "") for c in containers),
                     "restartedAt": ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT, ""),
                     "age": object_age(snap, rs)})
    return pd.DataFrame(rows, columns=["revision", "replicaset", "current", "replicas", "images", "restartedAt", "age"])


def fresh_revisions(cluster: Cluster, namespace: str, name: str) -> pd.DataFrame:
    """The revisions as they are now (two requests: the Deployment and the namespace's ReplicaSets)."""
    deployment = cluster.get_json(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    snap = take_snapshot(cluster, namespaces=[namespace], kinds=("replicasets",), cluster_kinds=())
    return revisions_frame(snap, deployment)


def _executor(namespace: str, names: list[str], timeout_s: float):
    """Send the plan's changes, then watch each Deployment's rollout; one that does not finish fails the fix."""
    def execute(cluster: Cluster, plan: Plan, progress: fixes.Progress) -> fixes.Outcome:
        entries = fixes.send_in_order(cluster, plan)
        messages = []
        for name in names:
            state = wait_for_rollout(cluster, namespace, name, timeout_s, progress)
            if not state.done:
                raise fixes.FixFailed(f"Deployment {namespace}/{name}: the change was applied but {state.message}; "
                                      f"see its pods, or roll back")
            messages.append(state.message)
        return fixes.Outcome(plan, True, "; ".join(messages), entries)
    return execute


def plan_rollout_restart(namespace: str, name: str, timeout_s: float) -> Plan:
    """``kubectl rollout restart`` + ``rollout status --timeout``."""
    return plan_restarts(namespace, [name], timeout_s, target=name)


def plan_restarts(namespace: str, names: list[str], timeout_s: float, target: str) -> Plan:
    """Restart several Deployments together, then wait for each rollout (the guide restarts in pairs)."""
    return Plan(fix="rollout-restart", target=target, changes=[restart_change(namespace, name) for name in names],
                notes=[f"then wait up to {timeout_s:g} s for the new pods of each to be available"],
                executor=_executor(namespace, names, timeout_s))


def plan_undo(snap: Snapshot, deployment: dict, to_revision: int, timeout_s: float) -> Plan:
    """``kubectl rollout undo [--to-revision N]``: 0 means the revision before the current one."""
    meta = deployment["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    history = sorted(owned_replicasets(snap, deployment), key=_revision)
    current = _revision(deployment)
    if to_revision:
        chosen = next((rs for rs in history if _revision(rs) == to_revision), None)
        missing = f"revision {to_revision} not found (revisions: {', '.join(str(_revision(r)) for r in history)})"
    else:
        older = [rs for rs in history if _revision(rs) < current]
        chosen = older[-1] if older else None
        missing = "no previous revision to roll back to"
    target = f"{name}@{_revision(chosen) if chosen else to_revision or 'previous'}"
    if chosen is None:
        return Plan(fix="rollout-undo", target=target, changes=[], blocked=missing)
    if (deployment.get("spec") or {}).get("paused"):
        return Plan(fix="rollout-undo", target=target, changes=[],
                    blocked="the Deployment is paused: resume it (kubectl rollout resume) before rolling back")
    template = _template_of(chosen)
    if _revision(chosen) == current:
        return Plan(fix="rollout-undo", target=target, changes=[],
                    blocked=f"revision {current} is the current one: nothing to roll back")
    annotations = {key: value for key, value in (meta.get("annotations") or {}).items() if key in _UNDO_KEEPS}
    annotations.update({key: value for key, value in ((chosen.get("metadata") or {}).get("annotations") or {}).items()
                        if key not in _UNDO_KEEPS})
    change = Change(verb="patch", patch_type="json", path=f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                    resource=f"Deployment {namespace}/{name}",
                    description=f"roll back from revision {current} to revision {_revision(chosen)} "
                                f"({name_of(chosen)})",
                    body=[{"op": "replace", "path": "/spec/template", "value": template},
                          {"op": "replace", "path": "/metadata/annotations", "value": annotations}])
    return Plan(fix="rollout-undo", target=target, changes=[change],
                notes=[f"the same JSON patch as kubectl rollout undo --to-revision={_revision(chosen)}; then wait up "
                       f"to {timeout_s:g} s for the rollout"],
                executor=_executor(namespace, [name], timeout_s))


def _template_of(replicaset: dict) -> dict:
    """The ReplicaSet's pod template as the Deployment had it: without the controller's pod-template-hash label."""
    template = dict((replicaset.get("spec") or {}).get("template") or {})
    metadata = dict(template.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != "pod-template-hash"}
    template["metadata"] = {**metadata, "labels": labels}
    return template
