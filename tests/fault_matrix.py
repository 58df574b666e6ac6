"""The fault matrix: every runbook against an emulator that answers each kind of fault on every Kubernetes API
path the runbook reads; every run must end with findings or one clear line, never a traceback wall, and a
transient fault must leave no trace (it is retried).

    .venv/bin/python -m tests.fault_matrix [RUNBOOK ...] [--workers N] [--writes]

prints the runbook x fault table (``--writes``: the fix runbooks apply their fix while every write fails) (tests/test_fault_matrix.py asserts it). Each cell is a fresh emulator and a
``nasiko-nb run`` subprocess, so cells run in parallel without sharing faults, environment or output.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

from nasiko_nb import sim
from nasiko_nb.sim.server import Fault

ALL_API_PATHS = r"^/apis?/"          # every resource path (/version, which connecting checks, is left alone)
TIMEOUT_S = 1.0                      # the run's --timeout, below the "slow" fault's delay
FORBIDDEN = ('{resource} is forbidden: User "system:serviceaccount:nasiko-runbooks:runbook" cannot list '
             'resource in the namespace')

#: runbook -> (scenario that exercises it, parameters of its dry run)
RUNBOOKS = {
    "00-triage": ("image-pull-missing-secret", {}),
    "01-registry-name-mismatch": ("registry-name-mismatch", {}),
    "02-registry-401-unauthorized": ("registry-401-wrong-user", {}),
    "03-buildkit-job-pending": ("job-pending-insufficient-cpu", {}),
    "04-build-job-failed": ("build-missing-dockerfile", {}),
    "05-image-pull-backoff": ("image-pull-missing-secret", {}),
    "06-secret-management": ("registry-secrets-inconsistent", {}),
    "07-agent-chat-404": ("agent-chat-no-route", {}),
    "08-buildkit-unreachable": ("buildkit-down", {}),
    "09-cluster-out-of-resources": ("cluster-failed-jobs", {}),
    "10-cluster-health": ("cluster-evicted-pods", {}),
    "11-reset-registry-credentials": ("registry-401-expired-token", {}),
    "12-restart-deployment": ("healthy", {}),
    "13-clean-slate-reset": ("healthy", {}),
    "14-digitalocean-registry": ("registry-name-mismatch", {}),
    "15-aws-ecr": ("ecr-agent-secret-stale", {}),
}

#: fault name -> (the faults, whether the run must come out as if nothing happened: retried away)
FAULTS = {
    "403": (lambda: [Fault(403, ALL_API_PATHS, message=FORBIDDEN.format(resource="pods"))], False),
    "404": (lambda: [Fault(404, ALL_API_PATHS, message="the server could not find the requested resource")], False),
    "429": (lambda: [Fault(429, ALL_API_PATHS, message="too many requests", retry_after=0)], False),
    "429 x2": (lambda: [Fault(429, ALL_API_PATHS, times=2, retry_after=0)], True),
    "500 x2": (lambda: [Fault(500, ALL_API_PATHS, times=2)], True),
    "503": (lambda: [Fault(503, ALL_API_PATHS, message="the server is shutting down", retry_after=0)], False),
    "slow": (lambda: [Fault(0, ALL_API_PATHS, delay_s=TIMEOUT_S * 2)], False),
    "dropped x2": (lambda: [Fault(0, ALL_API_PATHS, times=2, drop=True)], True),
    "dropped": (lambda: [Fault(0, ALL_API_PATHS, drop=True)], False),
}

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def _deployment_without_pull_secret(server) -> str:
    return next(d["metadata"]["name"] for d in server.store.list("apps/v1", "Deployment", "nasiko-agents")
                if not d["spec"]["template"]["spec"].get("imagePullSecrets"))


#: fix runbook -> (scenario, parameters of its applied fix, from the started emulator)
FIXES = {
    "05-image-pull-backoff": ("image-pull-missing-secret",
                              lambda server: {"dry_run": False, "confirm": _deployment_without_pull_secret(server),
                                              "wait_s": 5}),
    "09-cluster-out-of-resources": ("cluster-failed-jobs",
                                    lambda server: {"dry_run": False, "confirm": "delete-failed-jobs/nasiko-agents"}),
    "11-reset-registry-credentials": ("registry-401-revoked-token",
                                      lambda server: {"dry_run": False, "confirm": "nasiko-images"}),
    "12-restart-deployment": ("healthy", lambda server: {"dry_run": False, "confirm": "nasiko-backend",
                                                         "timeout_s": 10}),
    "13-clean-slate-reset": ("healthy", lambda server: {"dry_run": False, "confirm": "clean-slate",
                                                        "timeout_s": 10}),
}


def _on_writes(status: int = 0, **options) -> list[Fault]:
    return [Fault(status, ALL_API_PATHS, method, **options) for method in WRITES]


#: fault on every write -> (the faults, whether the fix must still be applied: retried away)
WRITE_FAULTS = {
    "403": (lambda: _on_writes(403, message="deployments.apps is forbidden: cannot patch resource"), False),
    "404": (lambda: _on_writes(404, message="not found"), False),
    "409": (lambda: _on_writes(409, message="the object has been modified; please apply your changes to the latest "
                                            "version and try again"), False),
    "429": (lambda: _on_writes(429, retry_after=0), False),
    "429 x1": (lambda: _on_writes(429, times=1, retry_after=0), True),
    "500": (lambda: _on_writes(500, message="etcdserver: request timed out"), False),
    "slow": (lambda: _on_writes(0, delay_s=TIMEOUT_S * 2), False),
    "dropped": (lambda: _on_writes(0, drop=True), False),
}
#: moto keeps its state per process: two ECR scenarios served at once would reset each other's repositories
_AWS_STATE = threading.Lock()
UNANSWERED = ("slow", "dropped")   # write faults after which the object's state is unknown, and the run must say so


@dataclass(frozen=True)
class Cell:
    runbook: str
    fault: str
    outcome: str        # "ok", "findings: <cluster codes>", "stopped: <one line>"
    problems: tuple     # why the cell fails the matrix; empty: it passes

    @property
    def passed(self) -> bool:
        return not self.problems


def run_cell(runbook: str, fault: str, writes: bool = False) -> Cell:
    """One runbook against a fresh emulator of its scenario with ``fault`` injected; judged at once.

    ``writes``: the runbook applies its fix (FIXES) and the fault hits every write; else a dry run, faults on reads.
    """
    scenario, parameters = FIXES[runbook] if writes else RUNBOOKS[runbook]
    faults, transparent = (WRITE_FAULTS if writes else FAULTS)[fault]

    def prepare(server) -> dict:
        for injected in faults():
            server.inject(injected)
        return parameters(server) if writes else parameters

    with emulated_run(runbook, scenario, prepare) as (_, done, records):
        return judge(runbook, fault, transparent, done, records, writes)


@contextlib.contextmanager
def emulated_run(runbook: str, scenario: str, prepare, token: str = "nasiko-sim-token", timeout_s: float = TIMEOUT_S):
    """``nasiko-nb run RUNBOOK`` in a subprocess against a fresh emulator of ``scenario``; ``prepare(server)``
    readies the emulator and returns the run's parameters; yields (server, finished process, records folder)."""
    one_at_a_time = _AWS_STATE if scenario.startswith("ecr-") else contextlib.nullcontext()
    with one_at_a_time, tempfile.TemporaryDirectory(prefix="nasiko-run-") as scratch, sim.start(scenario) as server:
        kubeconfig = server.write_kubeconfig(Path(scratch) / "kubeconfig", context=f"sim-{scenario}", token=token)
        parameters = prepare(server)
        records = Path(scratch) / "records"
        command = [str(Path(sys.executable).parent / "nasiko-nb"), "run", runbook, "--kubeconfig", str(kubeconfig),
                   "--timeout", str(timeout_s), "--output", str(records)]
        for name, value in parameters.items():
            command += ["-p", name, str(value)]
        environment = {**os.environ, **server.environment()}
        yield server, subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300), records


def judge(runbook: str, fault: str, transparent: bool, done: subprocess.CompletedProcess, records: Path,
          writes: bool = False) -> Cell:
    problems = []
    if len(done.stderr.strip().splitlines()) > 1:
        problems.append(f"stderr is {len(done.stderr.strip().splitlines())} lines: {done.stderr.strip()[:300]}")
    notebooks = sorted(records.glob("*.ipynb"))
    if not notebooks:
        return Cell(runbook, fault, f"no record (exit {done.returncode})", (done.stderr.strip()[:300] or "no record",))
    record = json.loads(notebooks[0].with_suffix(".json").read_text())
    for wall in traceback_walls(nbformat.read(notebooks[0], as_version=4)):
        problems.append(f"traceback wall: {wall}")
    cluster_codes = sorted({f["code"] for f in record["findings"] if f["code"].startswith("cluster/")})
    applied = [c for c in record["changes"] if not c.get("diagnostic")]
    if record.get("error"):
        outcome = f"stopped: {record['error']}"
    elif writes:
        outcome = f"applied {len(applied)} change(s)" if applied else "nothing applied"
    else:
        outcome = f"findings: {', '.join(cluster_codes)}" if cluster_codes else "ok"
    if transparent and (cluster_codes or record.get("error") or (writes and not applied)):
        problems.append(f"a transient fault was not retried away: {outcome}")
    elif not transparent and (not record.get("error") if writes else outcome == "ok"):
        problems.append(f"the fault went unnoticed: {outcome}")   # a refused fix must stop the run and say so
    if writes and fault in UNANSWERED and " may " not in record.get("error", ""):
        problems.append("an unanswered write must say it may have been applied")
    return Cell(runbook, fault, outcome, tuple(problems))


def traceback_walls(nb) -> list[str]:
    """Error outputs longer than one line and tracebacks printed to a stream: what a person must not face."""
    walls = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and len(output.get("traceback", [])) > 1:
                walls.append(f"{output['ename']}: {output['evalue'][:120]}")
            if output.get("output_type") == "stream" and "Traceback (most recent call last)" in output.get("text", ""):
                walls.append(output["text"][:200])
    return walls


def run_matrix(runbooks, faults=None, workers: int = 2, writes: bool = False) -> list[Cell]:
    faults = faults or tuple(WRITE_FAULTS if writes else FAULTS)
    cells = [(runbook, fault) for runbook in runbooks for fault in faults]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda cell: run_cell(*cell, writes=writes), cells))


def table(cells: list[Cell]) -> str:
    """Markdown: one row per runbook, one column per fault; a failing cell is marked FAIL."""
    faults = list(dict.fromkeys(cell.fault for cell in cells))
    rows = {}
    for cell in cells:
        short = cell.outcome.replace("stopped: ClusterError: ", "stopped: ").replace("stopped: RunbookInputError: ",
                                                                                      "stopped: ")
        rows.setdefault(cell.runbook, {})[cell.fault] = ("FAIL " if not cell.passed else "") + short[:60]
    lines = ["| runbook | " + " | ".join(faults) + " |", "|---" * (len(faults) + 1) + "|"]
    lines += [f"| {runbook} | " + " | ".join(row.get(f, "") for f in faults) + " |" for runbook, row in rows.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runbooks", nargs="*")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--writes", action="store_true", help="apply the fix runbooks' fixes, faults on writes")
    args = parser.parse_args(argv)
    cells = run_matrix(args.runbooks or list(FIXES if args.writes else RUNBOOKS), workers=args.workers,
                       writes=args.writes)
    print(table(cells))
    for cell in cells:
        for problem in cell.problems:
            print(f"FAIL {cell.runbook} x {cell.fault}: {problem}")
    return 0 if all(cell.passed for cell in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
