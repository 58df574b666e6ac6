"""How the cluster-wide runbooks scale: a 3-node cluster vs. 50 nodes / 5,000 pods / 2,000 failed Jobs.

Side by side, in one run:
  (a) API requests of one headless run of 09-cluster-out-of-resources and of 10-cluster-health (the run's
      own count and the emulator's request counter), and its wall time (papermill, fresh kernel);
  (b) deleting every failed Job of nasiko-agents through the clean-up fix: one delete-collection with the
      field selector status.successful=0 (plus the check list), against deleting the same Jobs one request
      each, on two identical clusters; requests and wall time of each.

    .venv/bin/python benchmarks/runbooks_scale.py [--nodes 50] [--pods 5000] [--jobs 2000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from nasiko_nb import fixes, records, sim
from nasiko_nb.checks.resources import RESOURCE_SNAPSHOT
from nasiko_nb.cluster import connect
from nasiko_nb.fixes.cleanup import plan_failed_jobs
from nasiko_nb.snapshot import take_snapshot

NS = "nasiko-agents"
RUNBOOKS = ("09-cluster-out-of-resources", "10-cluster-health")
BASE_NODES = 2          # the baseline platform's nodes


def start(nodes: int, pods: int, jobs: int) -> tuple[sim.SimServer, float]:
    """A healthy platform grown to ``nodes`` nodes, about ``pods`` pods and ``jobs`` failed Jobs (one pod each)."""
    started = time.perf_counter()
    base_pods = len(sim.build_store("healthy").list("v1", "Pod", None))
    server = sim.start("healthy", extra_nodes=nodes - BASE_NODES, extra_jobs=jobs,
                       extra_pods=max(0, pods - base_pods - jobs))
    return server, time.perf_counter() - started


def headless_run(server, workdir: Path, label: str, runbook: str) -> dict:
    kubeconfig = server.write_kubeconfig(workdir / label / "kubeconfig", context=f"sim-{label}")
    before = server.store.request_count
    started = time.perf_counter()
    result = records.execute(records.resolve(runbook), workdir / label / "incidents", {}, kubeconfig=str(kubeconfig),
                             context=f"sim-{label}")
    wall = time.perf_counter() - started
    if result.error:
        raise SystemExit(f"{runbook} on {label} failed: {result.error}")
    return {"calls": result.record["api_calls"], "server": server.store.request_count - before, "wall": wall,
            "nodes": len(server.store.list("v1", "Node", None)), "pods": len(server.store.list("v1", "Pod", None)),
            "jobs": len(server.store.list("batch/v1", "Job", None))}


def delete_failed_jobs(server, workdir: Path, label: str, one_by_one: bool) -> dict:
    cluster = connect(str(server.write_kubeconfig(workdir / label / "kubeconfig")))
    plan = plan_failed_jobs(take_snapshot(cluster, **RESOURCE_SNAPSHOT), NS)
    if one_by_one:      # the same Jobs, as a client without delete-collection would delete them
        plan = replace(plan, executor=None, changes=[
            fixes.Change(verb="delete", path=f"/apis/batch/v1/namespaces/{NS}/jobs/{name}", resource=f"Job {NS}/{name}",
                         description="delete", body={"propagationPolicy": "Background"})
            for name in sorted(j["metadata"]["name"] for j in server.store.list("batch/v1", "Job", NS)
                               if j["status"].get("failed") and not j["status"].get("succeeded"))])
    before, started = cluster.calls, time.perf_counter()
    fixes.apply_plan(cluster, plan, dry_run=False, confirm=plan.target)
    wall = time.perf_counter() - started
    left = sum(1 for j in server.store.list("batch/v1", "Job", NS) if j["status"].get("failed"))
    return {"objects": plan.objects, "calls": cluster.calls - before, "wall": wall, "left": left,
            "verbs": sorted({c.verb for c in plan.changes})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="nasiko-bench-"))

    small, small_build = start(3, 0, 0)
    big, big_build = start(args.nodes, args.pods, args.jobs)
    runs = {}
    try:
        for runbook in RUNBOOKS:
            runs[runbook] = {"3 nodes": headless_run(small, workdir, f"small-{runbook}", runbook),
                             f"{args.nodes} nodes": headless_run(big, workdir, f"big-{runbook}", runbook)}
    finally:
        small.stop()
        big.stop()
    print(f"clusters built in {small_build:.1f} s and {big_build:.1f} s")
    print(f"{'runbook':<30}{'cluster':<10}{'nodes':>7}{'pods':>7}{'jobs':>7}{'API calls (run)':>17}{'(server)':>10}"
          f"{'wall s':>9}")
    equal = True
    for runbook, sizes in runs.items():
        for label, run in sizes.items():
            print(f"{runbook:<30}{label:<10}{run['nodes']:>7}{run['pods']:>7}{run['jobs']:>7}{run['calls']:>17}"
                  f"{run['server']:>10}{run['wall']:>9.2f}")
        small_run, big_run = sizes.values()
        equal &= small_run["calls"] == big_run["calls"] and small_run["server"] == big_run["server"]
        print(f"{'':<30}API calls big/small: {big_run['calls'] / small_run['calls']:.2f}; "
              f"wall big/small: {big_run['wall'] / small_run['wall']:.2f}")

    deletions = {}
    for mode, one_by_one in (("delete-collection", False), ("one request per Job", True)):
        server, _ = start(3, 0, args.jobs)
        try:
            deletions[mode] = delete_failed_jobs(server, workdir, mode.replace(" ", "-"), one_by_one)
        finally:
            server.stop()
    print(f"\ndeleting {args.jobs} failed Jobs (and their pods) in {NS}")
    print(f"{'how':<22}{'objects':>9}{'requests':>10}{'wall s':>9}{'left':>6}  verbs")
    for mode, result in deletions.items():
        print(f"{mode:<22}{result['objects']:>9}{result['calls']:>10}{result['wall']:>9.2f}{result['left']:>6}  "
              f"{', '.join(result['verbs'])}")
    ratio = deletions["one request per Job"]["wall"] / deletions["delete-collection"]["wall"]
    print(f"one-by-one / delete-collection wall ratio: {ratio:.1f}")
    collection_used = deletions["delete-collection"]["verbs"] == ["delete-collection"]
    return 0 if equal and collection_used and not any(r["left"] for r in deletions.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
