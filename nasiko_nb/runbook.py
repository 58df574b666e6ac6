"""The frame every runbook shares: validate and connect, collect findings and changes, emit the record.

A notebook calls :func:`begin` in its first cell after the parameters and :meth:`Run.finish` in its
last. The run's record is one ``application/vnd.nasiko.record+json`` output shown by ``begin`` and
updated in place (a display id) whenever findings or changes are added, so a run that stops half-way
(a refused fix, a lost connection) still leaves its findings and applied changes in the notebook. The
archive (``nasiko_nb.records``) lifts it into ``metadata.nasiko`` and the findings JSON; a notebook
saved from JupyterLab keeps it too.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
from IPython.display import display

from nasiko_nb import fixes
from nasiko_nb.cluster import Cluster, ClusterError, connect
from nasiko_nb.findings import Finding, Report
from nasiko_nb.redact import scrub_obj
from nasiko_nb.snapshot import PLATFORM_NAMESPACES, Snapshot, take_snapshot

RECORD_MIME = "application/vnd.nasiko.record+json"


class RunbookInputError(ValueError):
    """Bad input to a runbook, explained in one sentence; the run stops before anything is changed."""

    def _render_traceback_(self):
        return [f"RunbookInputError: {self}"]


@dataclass
class Run:
    """One execution of a runbook: its parameters, its cluster, what it found and what it changed."""

    runbook: str
    params: dict
    cluster: Cluster
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    findings: list[Finding] = field(default_factory=list)
    _clock: float = field(default_factory=time.monotonic)
    _display_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _shown: bool = False

    def snapshot(self, namespaces=PLATFORM_NAMESPACES, **kinds) -> Snapshot:
        """Take a snapshot; permission problems join the run's findings instead of stopping it."""
        snap = take_snapshot(self.cluster, namespaces=namespaces, **kinds)
        self.add(snap.problems)
        return snap

    def require_namespace(self, snap: Snapshot, namespace: str) -> None:
        if ("Namespace", "") not in snap.unreadable and namespace not in snap.namespaces:
            raise RunbookInputError(f"namespace {namespace!r} does not exist in context {self.cluster.context!r}; "
                                    f"it has: {', '.join(sorted(snap.namespaces))}")

    def require_namespaces(self, snap: Snapshot, namespaces: str) -> list[str]:
        """A comma-separated namespace parameter as a list, each one checked to exist."""
        names = [name.strip() for name in namespaces.split(",") if name.strip()]
        if not names:
            raise RunbookInputError("namespaces is empty: name at least one namespace")
        for name in names:
            self.require_namespace(snap, name)
        return names

    def require_deployment(self, snap: Snapshot, namespace: str, name: str) -> dict:
        """The Deployment, or one sentence naming the Deployments that do exist there."""
        self.require_namespace(snap, namespace)
        found = snap.get("Deployment", namespace, name)
        if found is None and ("Deployment", namespace) in snap.unreadable:
            raise RunbookInputError(f"deployment {name!r} cannot be looked at: the Deployments of {namespace!r} "
                                    f"could not be read (the findings above say why)")
        if found is None:
            known = sorted(d["metadata"]["name"] for d in snap.deployments if d["metadata"].get("namespace") == namespace)
            raise RunbookInputError(f"deployment {name!r} not found in namespace {namespace!r}; "
                                    f"it has: {', '.join(known) or 'none'}")
        return found

    def require_agent(self, snap: Snapshot, agent: str) -> None:
        known = snap.agents()
        if agent and agent not in known and snap.unreadable:
            raise RunbookInputError(f"agent {agent!r} cannot be looked for: part of the cluster could not be read "
                                    f"(the findings above say why)")
        if agent and agent not in known:
            raise RunbookInputError(f"agent {agent!r} not found (no Deployment, Pod or Job of it); "
                                    f"known agents: {', '.join(sorted(known)) or 'none'}")

    def add(self, findings) -> Report:
        for finding in findings:
            if finding not in self.findings:
                self.findings.append(finding)
        self.publish()
        return self.report

    @property
    def report(self) -> Report:
        return Report(list(self.findings))

    def record(self) -> dict:
        """The run's record: JSON-ready, secrets scrubbed."""
        changes = fixes.journal_records()
        report = self.report
        return scrub_obj({
            "runbook": self.runbook,
            "context": self.cluster.context,
            "parameters": self.params,
            "findings": [f.to_dict() for f in report.findings],
            "changes": changes,
            "outcome": ("changed" if any(not c.get("diagnostic") for c in changes) else report.outcome),
            "started": self.started.isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - self._clock, 2),
            "api_calls": self.cluster.calls,
        })

    def publish(self) -> str:
        """Show the record, or update it where it is already shown; returns its one-line summary."""
        from IPython.display import update_display

        record = self.record()
        summary = (f"{self.runbook}: outcome {record['outcome']}, {len(record['findings'])} finding(s), "
                   f"{len(record['changes'])} change(s), {record['api_calls']} API call(s)")
        bundle = {RECORD_MIME: record, "text/plain": summary}
        if self._shown:
            update_display(bundle, raw=True, display_id=self._display_id)
        else:
            display(bundle, raw=True, display_id=self._display_id)
            self._shown = True
        return summary

    def finish(self) -> None:
        """Bring the record up to date and say in one line how the run ended."""
        print(self.publish())


SECRET_PARAMETER_WORDS = ("password", "token", "secret_value", "api_key", "dockerconfigjson")


def begin(runbook: str, *, kubeconfig: str = "", context: str = "", api_timeout_s: float | None = None, **params) -> Run:
    """Validate the parameters and connect; any problem ends here with one clear sentence.

    ``params`` are the runbook's own (recorded); ``api_timeout_s`` bounds each API request (default:
    ``$NASIKO_API_TIMEOUT_S`` or 10 s), apart from any wait a runbook parameter sets.
    """
    for name in params:
        if any(word in name.lower() for word in SECRET_PARAMETER_WORDS):
            raise RunbookInputError(f"parameter {name!r} looks like a secret: pass it through the environment or a file")
    fixes.JOURNAL.clear()
    # evidence, plans and verify answers are sentences: show them whole in tables, not cut at 50 characters
    pd.set_option("display.max_colwidth", 400)
    pd.set_option("display.width", 250)
    try:
        cluster = connect(kubeconfig or None, context or None, timeout_s=api_timeout_s, check=False)
    except ClusterError as exc:
        raise RunbookInputError(str(exc)) from None
    run = Run(runbook=runbook, params={"context": context, **params}, cluster=cluster)
    try:
        cluster.check()
    except ClusterError as exc:
        # the cluster is the problem, not the input: the record says so with a finding (a fleet's table shows it)
        display(run.add([exc.finding(cluster.context)]))
        raise RunbookInputError(str(exc)) from None
    run.publish()
    return run
