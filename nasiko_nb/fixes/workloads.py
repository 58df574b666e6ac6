"""Fixes on workloads: rolling restart, scale, delete Jobs so they can be retried.

Each returns a Plan applied through ``fixes.apply_plan`` (dry run, confirm, journal).
"""
from __future__ import annotations

from datetime import datetime, timezone

from nasiko_nb.fixes import Change, Plan

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def restart_change(namespace: str, name: str, why: str = "rolling restart") -> Change:
    """What `kubectl rollout restart` sends: a new restartedAt annotation on the pod template."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Change(verb="patch", patch_type="strategic", path=f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                  resource=f"Deployment {namespace}/{name}", description=why,
                  body={"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}})


def plan_restart(namespace: str, name: str) -> Plan:
    return Plan(fix="restart-deployment", target=name, changes=[restart_change(namespace, name)])


def plan_scale(deployment: dict, replicas: int) -> Plan:
    """Set a Deployment's replicas through its scale subresource (what `kubectl scale` does)."""
    meta = deployment["metadata"]
    current = (deployment.get("spec") or {}).get("replicas", 1)
    change = Change(verb="patch", patch_type="merge",
                    path=f"/apis/apps/v1/namespaces/{meta['namespace']}/deployments/{meta['name']}/scale",
                    resource=f"Deployment {meta['namespace']}/{meta['name']}",
                    description=f"scale from {current} to {replicas} replicas", body={"spec": {"replicas": replicas}})
    return Plan(fix="scale-deployment", target=meta["name"], changes=[change])


def delete_job_change(namespace: str, name: str, why: str = "delete the Job and its pods so it can be retried") -> Change:
    """What `kubectl delete job` sends: the pods go with the Job (background propagation)."""
    return Change(verb="delete", path=f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                  resource=f"Job {namespace}/{name}", body={"propagationPolicy": "Background"}, description=why)


def plan_delete_job(namespace: str, name: str) -> Plan:
    return Plan(fix="delete-job", target=name, changes=[delete_job_change(namespace, name)])
