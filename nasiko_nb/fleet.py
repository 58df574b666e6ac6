"""Fleet runs: one read-only runbook against several clusters in parallel, one record each, one table for all.

The contexts come from one kubeconfig (named with ``--context``, or all of them); every name is checked
before any run starts. Each cluster's run is an ordinary archived run (:func:`records.execute`) with its own
kernel; a bounded pool of threads drives them, which is enough because the kernels are processes. A cluster
that cannot be reached still gets its record, whose finding is ``cluster/unreachable``, and a row in the table:
one dead cluster does not fail the fleet.
"""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable

import pandas as pd
from nasiko_nb import records
from nasiko_nb.archive import Archive
from nasiko_nb.cluster import ClusterError, kubeconfig_contexts
from nasiko_nb.codes import SEVERITIES
from nasiko_nb.records import RecordError

MAX_WORKERS = 4      # kernels at once: each is a process of its own; more only queue for the same cores
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class ClusterRun:
    """One cluster's run: its stored record, or why there is none."""

    context: str
    result: records.RunResult | None = None
    not_stored: str = ""      # why there is no record (the archive refused it, or the run could not start)
    seconds: float = 0.0

    @property
    def error(self) -> str:
        return self.result.error if self.result else self.not_stored

    @property
    def record(self) -> dict:
        return self.result.record if self.result else {}

    @property
    def outcome(self) -> str:
        return self.record.get("outcome", "error")

    @property
    def unreachable(self) -> bool:
        return any(f["code"] in ("cluster/unreachable", "cluster/unauthorized") for f in self.findings)

    @property
    def findings(self) -> list[dict]:
        return [f for f in self.record.get("findings", []) if f.get("severity") != "ok"]

    @property
    def failed(self) -> bool:
        """The run itself went wrong (not the cluster): no record stored, or a runbook error other than the
        cluster being unreachable."""
        return self.result is None or (bool(self.result.error) and not self.unreachable)


def fleet_contexts(kubeconfig: str, contexts: list[str], all_contexts: bool) -> list[str]:
    """The contexts to run against, in the order given (``all_contexts``: the kubeconfig's order).

    Unknown or repeated names are refused before anything runs, naming the contexts the kubeconfig has.
    """
    path, known, _ = kubeconfig_contexts(kubeconfig or None)
    if all_contexts:
        if contexts:
            raise RecordError("give --context names or --all-contexts, not both")
        if not known:
            raise ClusterError(f"kubeconfig {path} has no contexts")
        return known
    unknown = [name for name in contexts if name not in known]
    if unknown:
        raise ClusterError(f"context {', '.join(map(repr, unknown))} is not in {path}; "
                           f"known contexts: {', '.join(known) or 'none'}")
    repeated = sorted(name for name, n in Counter(contexts).items() if n > 1)
    if repeated:
        raise RecordError(f"context {', '.join(map(repr, repeated))} is named twice")
    return list(contexts)


def check_read_only(info: records.RunbookInfo, parameters: dict) -> None:
    """A fleet run diagnoses; a fix is applied to one cluster at a time, where the confirm names its target."""
    if parameters.get("dry_run") is False:
        raise RecordError(f"a fleet run applies no fix: run {info.id} with dry_run=False against one --context")


def run_fleet(info: records.RunbookInfo, contexts: list[str], archive: Archive, parameters: dict, *,
              kubeconfig: str = "", workers: int = MAX_WORKERS,
              on_done: Callable[[ClusterRun], None] | None = None) -> list[ClusterRun]:
    """Run ``info`` against every context, at most ``workers`` at once; results in the order of ``contexts``.

    ``on_done`` is called in the calling thread as each cluster finishes (for a progress bar, a notification).
    """
    check_read_only(info, parameters)

    def one(context: str) -> ClusterRun:
        started = time.monotonic()
        try:
            result = records.execute(info, archive, parameters, kubeconfig=kubeconfig, context=context, label=context)
        except (ValueError, OSError) as exc:   # RecordError and ArchiveError are ValueErrors
            return ClusterRun(context, not_stored=str(exc), seconds=time.monotonic() - started)
        return ClusterRun(context, result, seconds=time.monotonic() - started)

    finished: dict[str, ClusterRun] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(contexts)))) as pool:
        for future in as_completed([pool.submit(one, context) for context in contexts]):
            run = future.result()
            finished[run.context] = run
            if on_done is not None:
                on_done(run)
    return [finished[context] for context in contexts]


def fleet_table(runs: list[ClusterRun]) -> pd.DataFrame:
    """Cause code x cluster: how many findings of each code each cluster has, worst codes first, then each
    cluster's outcome. Clusters are columns because a fleet has fewer clusters than a triage has codes."""
    severity_of: dict[str, str] = {}
    counts: dict[str, Counter] = {}
    for run in runs:
        counts[run.context] = Counter()
        for finding in run.findings:
            severity_of[finding["code"]] = finding["severity"]
            counts[run.context][finding["code"]] += 1
    codes = sorted(severity_of, key=lambda code: (_RANK[severity_of[code]], code))
    rows = [[severity_of[code], code, *(counts[run.context][code] or "." for run in runs)] for code in codes]
    rows.append(["", "outcome", *(run.outcome for run in runs)])
    return pd.DataFrame(rows, columns=["severity", "code", *(run.context for run in runs)])


def summary_line(runbook: str, runs: list[ClusterRun], seconds: float) -> str:
    with_findings = sum(1 for run in runs if run.findings and not run.unreachable)
    unreachable = sum(1 for run in runs if run.unreachable)
    failed = sum(1 for run in runs if run.failed)
    return (f"{runbook} on {len(runs)} cluster(s): "
            f"{with_findings} with findings, {unreachable} unreachable, {failed} failed, {seconds:.1f}s")
