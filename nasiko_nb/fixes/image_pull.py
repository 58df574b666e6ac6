"""Fix for ``image-pull/missing-pull-secret``: add the registry secret to the owning Deployment.

The guide's ``kubectl patch deployment ... imagePullSecrets`` as a plan: a strategic-merge patch (so
other pull secrets stay), one plan per Deployment, blocked while the secret itself is missing (that is
``06-secret-management`` / ``11-reset-registry-credentials``). Verification reads the Deployment and
its pods back and waits, bounded, for the new rollout.
"""
from __future__ import annotations

import time

import pandas as pd

from nasiko_nb.cluster import Cluster
from nasiko_nb.findings import Finding
from nasiko_nb.fixes import Change, Plan
from nasiko_nb.images import parse_image
from nasiko_nb.snapshot import Snapshot

FIX = "add-image-pull-secret"
FIXABLE_CODES = {"image-pull/missing-pull-secret"}
PULL_ERRORS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}


def plan_add_pull_secret(snap: Snapshot, findings: list[Finding], secret: str) -> list[Plan]:
    """One plan per Deployment whose pods lack ``secret`` as imagePullSecret."""
    plans: dict[str, Plan] = {}
    for finding in findings:
        if finding.code not in FIXABLE_CODES:
            continue
        namespace, pod_name = finding.resource.split(" ", 1)[1].split("/", 1)
        pod = next((p for p in snap.pods_in(namespace) if p["metadata"]["name"] == pod_name), None)
        deployment = snap.deployment_of(pod) if pod else None
        if deployment is None or deployment["metadata"]["name"] in plans:
            continue
        name = deployment["metadata"]["name"]
        plans[name] = _plan_for(snap, deployment, secret)
    return list(plans.values())


def _plan_for(snap: Snapshot, deployment: dict, secret: str) -> Plan:
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    pod_spec = deployment["spec"]["template"]["spec"]
    patch = {"spec": {"template": {"spec": {"imagePullSecrets": [{"name": secret}]}}}}
    change = Change(
        verb="patch", patch_type="strategic", body=patch,
        path=f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        resource=f"Deployment {namespace}/{name}",
        description=f"add imagePullSecret {secret} to the pod template (starts a new rollout)")
    plan = Plan(fix=FIX, target=name, changes=[change])
    summary = snap.secret(namespace, secret)
    if summary is None:
        plan.blocked = (f"secret {secret} does not exist in {namespace}: create it first "
                        f"(06-secret-management, 11-reset-registry-credentials)")
        return plan
    hosts = {auth.host for auth in summary.docker_auths}
    for container in pod_spec.get("initContainers", []) + pod_spec.get("containers", []):
        host = parse_image(container.get("image", "")).registry
        if host not in hosts:
            plan.notes.append(f"secret {secret} has no credentials for {host} (it has: {', '.join(sorted(hosts)) or 'none'}); "
                              f"pulls of {container.get('image')} would still fail: see 06-secret-management")
    current = [ref.get("name") for ref in pod_spec.get("imagePullSecrets") or []]
    plan.notes.append(f"current imagePullSecrets: {', '.join(current) or 'none'}")
    return plan


def verify_pull_secret(cluster: Cluster, namespace: str, deployment: str, secret: str,
                       wait_s: float = 60.0, poll_s: float = 2.0) -> pd.DataFrame:
    """Read the Deployment and its pods back until the rollout settles or ``wait_s`` passes."""
    deadline = time.monotonic() + wait_s
    while True:
        checks = _rollout_checks(cluster, namespace, deployment, secret)
        if all(checks["ok"]) or time.monotonic() >= deadline:
            return checks
        time.sleep(poll_s)


def _rollout_checks(cluster: Cluster, namespace: str, deployment: str, secret: str) -> pd.DataFrame:
    obj = cluster.get_json(f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}")
    spec, status = obj["spec"], obj.get("status", {})
    selector = ",".join(f"{k}={v}" for k, v in spec["selector"].get("matchLabels", {}).items())
    pods = cluster.get_json(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector).get("items", [])
    secrets = [ref.get("name") for ref in spec["template"]["spec"].get("imagePullSecrets") or []]
    pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    stuck = [p["metadata"]["name"] for p in pods if _pull_error(p)]
    revision = obj["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", "?")
    rows = [
        ("pull secret in pod template", secret in secrets, ", ".join(secrets) or "none"),
        ("rollout observed", status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0),
         f"generation {obj['metadata'].get('generation')}, observed {status.get('observedGeneration')}, revision {revision}"),
        ("all replicas updated", status.get("updatedReplicas", 0) >= spec.get("replicas", 1),
         f"{status.get('updatedReplicas', 0)}/{spec.get('replicas', 1)} updated, {status.get('readyReplicas', 0)} ready"),
        ("no pod stuck pulling", not stuck, ", ".join(stuck) or f"{len(pods)} pod(s) fine"),
    ]
    return pd.DataFrame(rows, columns=["check", "ok", "detail"])


def _pull_error(pod: dict) -> bool:
    statuses = pod.get("status", {}).get("initContainerStatuses", []) + pod.get("status", {}).get("containerStatuses", [])
    return any((s.get("state", {}).get("waiting") or {}).get("reason") in PULL_ERRORS for s in statuses)
