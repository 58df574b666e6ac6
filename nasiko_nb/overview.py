"""Summaries a triage shows before and after its findings: what is running, and where to go next."""
from __future__ import annotations

from collections import Counter

import pandas as pd

from nasiko_nb.codes import lookup
from nasiko_nb.findings import Report
from nasiko_nb.snapshot import Snapshot


def platform_overview(snap: Snapshot) -> pd.DataFrame:
    """Per namespace: deployments available/total, pods by phase, jobs, and warning events."""
    rows = []
    for namespace in sorted({p["metadata"]["namespace"] for p in snap.pods} | {
            d["metadata"]["namespace"] for d in snap.deployments}):
        deployments = [d for d in snap.deployments if d["metadata"]["namespace"] == namespace]
        available = sum(1 for d in deployments
                        if (d.get("status") or {}).get("availableReplicas", 0) >= (d.get("spec") or {}).get("replicas", 1))
        phases = Counter((p.get("status") or {}).get("phase", "Unknown") for p in snap.pods_in(namespace))
        warnings = sum(1 for e in snap.events if e.get("type") == "Warning"
                       and e["metadata"].get("namespace") == namespace)
        rows.append({"namespace": namespace, "deployments available": f"{available}/{len(deployments)}",
                     "pods": ", ".join(f"{n} {phase}" for phase, n in sorted(phases.items())) or "none",
                     "jobs": sum(1 for j in snap.jobs if j["metadata"]["namespace"] == namespace),
                     "warning events": warnings})
    return pd.DataFrame(rows, columns=["namespace", "deployments available", "pods", "jobs", "warning events"])


def next_steps(report: Report) -> pd.DataFrame:
    """One row per cause code found: how many, the runbook or fix to use, and the guide's advice."""
    counts = Counter(f.code for f in report.findings if f.severity != "ok")
    rows = [{"code": code, "findings": n, "next": lookup(code).next, "runbook": lookup(code).runbook,
             "advice": lookup(code).advice} for code, n in counts.items()]
    return pd.DataFrame(rows, columns=["code", "findings", "next", "runbook", "advice"])
