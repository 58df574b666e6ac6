"""Fixes: plan -> confirm -> apply -> verify, and a journal of every change applied.

A fix never writes during planning. :func:`apply_plan` writes only when ``dry_run`` is False and
``confirm`` names the plan's target, and every write it makes is appended to :data:`JOURNAL`, which the
run's record carries (redacted) into the incident archive.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import pandas as pd
from kubernetes.client.rest import ApiException

from nasiko_nb.cluster import ApiFailure, Cluster, ClusterError

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


class ConfirmationError(ValueError):
    """The confirm value does not name the plan's target: nothing was changed."""

    def _render_traceback_(self):
        return [f"ConfirmationError: {self}"]


class FixFailed(RuntimeError):
    """The API refused a change; the message says which change and why, in one line."""

    def _render_traceback_(self):
        return [f"FixFailed: {self}"]


@dataclass(frozen=True)
class Change:
    """One API write, described well enough to show in a plan and to record after it is applied."""

    verb: str               # patch, delete, replace, create
    path: str               # API path of the object
    resource: str           # "Deployment nasiko-agents/agent-x"
    description: str        # one sentence for people
    body: dict | list | None = None
    patch_type: str = ""    # merge, strategic or json for patches
    objects: int = 1        # objects it changes (a delete-collection: every one its selector matches)

    def summary(self) -> dict:
        return {"verb": self.verb, "resource": self.resource, "change": self.description,
                "body": json.dumps(self.body, sort_keys=True) if self.body is not None else ""}


@dataclass
class Plan:
    """What a fix would do to one target; ``blocked`` explains why it cannot be applied as it stands.

    ``executor`` replaces the plain one-request-per-change application, after the same dry-run and
    confirm checks, for fixes that must read, write and roll back together.
    """

    fix: str
    target: str
    changes: list[Change]
    blocked: str = ""
    notes: list[str] = field(default_factory=list)
    executor: Callable[[Cluster, "Plan", "Progress"], "Outcome"] | None = field(default=None, repr=False)
    diagnostic: bool = False   # a write made only to look (a probe pod): recorded, but not a fix
    verify: Callable[[Cluster], object] | None = field(default=None, repr=False)   # what is left after applying

    @property
    def objects(self) -> int:
        return sum(change.objects for change in self.changes)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([c.summary() for c in self.changes], columns=["verb", "resource", "change", "body"])


Progress = Callable[[int, int], None]   # (done, total) objects, called as a fix goes


def no_progress(done: int, total: int) -> None:
    """The progress reporter of callers that show none."""


@dataclass
class Outcome:
    plan: Plan
    applied: bool
    message: str
    results: list[dict] = field(default_factory=list)


JOURNAL: list[dict] = []


def apply_plan(cluster: Cluster, plan: Plan, *, dry_run: bool, confirm: str, progress: Progress = no_progress) -> Outcome:
    """Apply ``plan`` if the caller opted in; raises ConfirmationError when confirm names another target."""
    if dry_run:
        return Outcome(plan, False, f"dry run: nothing changed (set dry_run=False and confirm={plan.target!r} to apply)")
    require_confirmation(plan, confirm)
    if plan.blocked:
        raise FixFailed(f"fix {plan.fix} on {plan.target} cannot be applied: {plan.blocked}; nothing was changed")
    if plan.executor is not None:   # fixes whose writes need more than one request each (e.g. all-or-nothing)
        return plan.executor(cluster, plan, progress)
    results = send_in_order(cluster, plan, progress)
    return Outcome(plan, True, f"applied {len(results)} change(s) to {plan.target}", results)


def send_in_order(cluster: Cluster, plan: Plan, progress: Progress = no_progress) -> list[dict]:
    """Send every change of the plan in order, journaling each; a refusal stops with what was and was not applied."""
    results = []
    for change in plan.changes:
        before = (f"; applied before it: {', '.join(r['resource'] for r in results)}" if results else
                  "; nothing was changed before it")
        try:
            response = send(cluster, change)
        except ApiException as exc:
            failure = ApiFailure.from_exception(exc)
            raise FixFailed(f"{change.verb} {change.resource} was refused: {failure.status} {failure.reason}: "
                            f"{failure.message}{before}; not applied: the rest") from None
        except ClusterError as exc:
            raise FixFailed(f"{exc}{before}; not sent: the rest") from None
        results.append(record(plan, change, response))
        progress(sum(c.objects for c in plan.changes[:len(results)]), plan.objects)
    return results


def require_confirmation(plan: Plan, confirm: str) -> None:
    if confirm != plan.target:
        raise ConfirmationError(
            f"confirm={confirm!r} does not name the target {plan.target!r} of fix {plan.fix}; nothing was changed")


def record(plan: Plan, change: Change, response: dict | None = None) -> dict:
    """Journal one applied change (its summary is redacted by construction) and return the entry."""
    entry = {"fix": plan.fix, "target": plan.target, **change.summary(),
             "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "resourceVersion": (response or {}).get("metadata", {}).get("resourceVersion", "")}
    if plan.diagnostic:
        entry["diagnostic"] = True
    JOURNAL.append(entry)
    return entry


def send(cluster: Cluster, change: Change) -> dict:
    """Send one change as its API request; raises ApiException when refused, and a ClusterError saying the change
    may have been applied when the API server did not answer (a write is not retried then)."""
    method = {"patch": "PATCH", "delete": "DELETE", "delete-collection": "DELETE", "replace": "PUT",
              "create": "POST"}[change.verb]
    try:
        if change.verb == "patch":
            return cluster.send_json(method, change.path, change.body, PATCH_TYPES[change.patch_type])
        return cluster.send_json(method, change.path, change.body)
    except ClusterError as exc:
        raise ClusterError(f"{change.verb} {change.resource} got no answer ({exc}); it may or may not have been "
                           f"applied: look at {change.resource} before trying again", exc.code) from None


def journal_records() -> list[dict]:
    return [dict(entry) for entry in JOURNAL]
