"""Container logs of a Job's pods, read once into the snapshot so the pure checks can classify them.

A Job has at most ``backoffLimit + 1`` pods (two for build Jobs), so this costs two calls per pod and
container (current and previous instance) and never depends on the size of the cluster.
"""
from __future__ import annotations

from dataclasses import dataclass

from kubernetes.client.rest import ApiException

from nasiko_nb.cluster import Cluster
from nasiko_nb.snapshot import Snapshot

CONTEXT_LINES = 3


def read_job_logs(cluster: Cluster, snap: Snapshot, namespace: str, job: str, containers) -> None:
    """Read the logs of ``containers`` in every pod of ``job`` into ``snap.logs`` (missing ones are skipped)."""
    for pod in snap.pods_of_job(namespace, job):
        name = pod["metadata"]["name"]
        for container in containers:
            for previous in (False, True):
                try:
                    snap.logs[(namespace, name, container, previous)] = cluster.get_text(
                        f"/api/v1/namespaces/{namespace}/pods/{name}/log", container=container,
                        previous="true" if previous else None)
                except ApiException:
                    continue


def job_container_logs(snap: Snapshot, namespace: str, job: str, container: str) -> dict[str, str]:
    """``"<pod>"`` / ``"<pod> (previous)"`` -> log text, oldest pod first."""
    logs = {}
    for pod in snap.pods_of_job(namespace, job):
        name = pod["metadata"]["name"]
        for previous in (False, True):
            text = snap.log(namespace, name, container, previous)
            if text is not None:
                logs[f"{name}{' (previous)' if previous else ''}"] = text
    return logs


@dataclass
class JobLogs:
    """The logs of one container across a Job's pods, and the push error they end with (if any)."""

    job: str
    container: str
    logs: dict[str, str]
    push_error: object | None = None

    def excerpt(self) -> str:
        """The lines around each error, not the whole log."""
        parts = []
        for source, text in self.logs.items():
            lines = text.splitlines()
            hits = [i for i, line in enumerate(lines) if "error" in line.lower()]
            if not hits:
                continue
            keep = sorted({j for i in hits for j in range(max(0, i - CONTEXT_LINES), min(len(lines), i + 2))})
            parts.append(f"--- {source}\n" + "\n".join(lines[i] for i in keep))
        return "\n".join(parts) or "(no error lines in the logs)"


def unfinished_build_jobs(snap: Snapshot, namespace: str, limit: int = 3) -> list[str]:
    """The newest build Jobs that have not completed, at most ``limit`` (their logs are read)."""
    from nasiko_nb.checks.build import build_jobs, job_condition

    jobs = [j for j in build_jobs(snap, namespace)
            if not (j.get("status") or {}).get("succeeded") and not job_condition(j, "Complete")]
    jobs.sort(key=lambda j: j["metadata"].get("creationTimestamp", ""), reverse=True)
    return [j["metadata"]["name"] for j in jobs[:limit]]


def failure_excerpt(snap: Snapshot, namespace: str, job: str) -> str:
    """For each pod of ``job``: the classified error lines of its init and build containers, with context."""
    from nasiko_nb.checks.build import classify_build_log, log_excerpt

    parts = []
    for container in ("download-agent", "buildkit-client"):
        for source, text in job_container_logs(snap, namespace, job, container).items():
            errors = classify_build_log(text)
            if errors:
                parts.append(f"--- {source} [{container}]\n{log_excerpt(text, errors)}")
    return "\n".join(parts) or f"(no classified error in the logs of {job or 'any Job'})"
