"""Fixes for builds that do not start: bring buildkitd back, delete Jobs stuck beyond repair."""
from __future__ import annotations

from nasiko_nb.findings import Report
from nasiko_nb.fixes import Plan
from nasiko_nb.fixes.workloads import plan_delete_job, plan_restart, plan_scale
from nasiko_nb.snapshot import Snapshot

BUILDKIT_NAMESPACE, BUILDKIT_DEPLOYMENT = "buildkit", "buildkitd"
DAEMON_CODES = {"buildkit/daemon-down", "buildkit/no-endpoints"}


def plans_for_buildkitd(snap: Snapshot, report: Report, replicas: int) -> list[Plan]:
    """Restart buildkitd when it is down or has no endpoints; scale it when ``replicas`` differs (0: leave as is)."""
    deployment = snap.get("Deployment", BUILDKIT_NAMESPACE, BUILDKIT_DEPLOYMENT)
    if deployment is None:
        return []
    plans = []
    if DAEMON_CODES & set(report.codes()):
        plans.append(plan_restart(BUILDKIT_NAMESPACE, BUILDKIT_DEPLOYMENT))
    if replicas and replicas != (deployment.get("spec") or {}).get("replicas", 1):
        plans.append(plan_scale(deployment, replicas))
    return plans


def plans_for_stuck_jobs(report: Report) -> list[Plan]:
    """A delete plan per pending build Job, so the build worker can retry it once the cause is fixed."""
    plans = []
    for finding in report.findings:
        if finding.code == "buildkit/job-pending":
            namespace, name = finding.resource.split(" ", 1)[1].split("/", 1)
            plans.append(plan_delete_job(namespace, name))
    return plans
