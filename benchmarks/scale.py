"""The collection's speed, measured side by side in one run: the demo platform at 3 nodes / 50 pods against the
same grown to 50 nodes / 5,000 pods / 2,000 Jobs / 20,000 more events.

  (1) API requests of one triage snapshot (client and emulator counts) and of one headless run of every runbook
      (the record's api_calls), at both sizes: they must be equal;
  (2) at the big size, median of --repeats: the triage's snapshot + checks; ``kubectl get pods,jobs,events,nodes,
      deployments,services -A -o json`` against the same emulator; this package's client fetching those six lists
      (raw JSON, parsed); and json.loads of the same response bytes alone (the floor of parsing);
  (3) peak memory (max RSS) of a fresh process that takes the triage's snapshot and runs the checks, big size;
  (4) headless runs of every runbook (dry run) on the small demo cluster: the median per runbook of --repeats
      passes run one after another, a kernel start alone (papermill on a one-cell notebook) apart; then the whole
      collection run --workers at a time against one after another.

    .venv/bin/python benchmarks/scale.py [--repeats 3] [--workers 4]

Prints markdown tables (as in the README) and the machine they were measured on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from nasiko_nb import checks, records, sim
from nasiko_nb.cluster import connect
from nasiko_nb.snapshot import take_snapshot

SCENARIO = "image-pull-missing-secret"          # the demo's
BASE_NODES = 2                                   # the platform's own nodes
SMALL = {"nodes": 3, "pods": 50, "jobs": 5, "events": 0}   # a few failed builds: logs are read of at most 3 Jobs
BIG = {"nodes": 50, "pods": 5000, "jobs": 2000, "events": 20000}
KUBECTL_KINDS = "pods,jobs,events,nodes,deployments,services"
SIX_LISTS = ("/api/v1/pods", "/apis/batch/v1/jobs", "/api/v1/events", "/api/v1/nodes", "/apis/apps/v1/deployments",
             "/api/v1/services")
# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's (Linux keeps it across fork and exec), and the
# parent here holds two emulators
MEMORY_PROBE = """
import re, sys
from nasiko_nb import checks
from nasiko_nb.cluster import connect
from nasiko_nb.snapshot import take_snapshot
def high_water():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1])
before = high_water()
findings = checks.run_checks(take_snapshot(connect(sys.argv[1])))
print(before, high_water(), len(findings))
"""


def start(size: dict) -> sim.SimServer:
    base_pods = len(sim.build_store(SCENARIO).list("v1", "Pod", None))
    return sim.start(SCENARIO, extra_nodes=size["nodes"] - BASE_NODES, extra_jobs=size["jobs"],
                     extra_pods=max(0, size["pods"] - base_pods - size["jobs"]), extra_events=size["events"])


def counts(server) -> dict:
    store = server.store
    return {"nodes": len(store.list("v1", "Node", None)), "pods": len(store.list("v1", "Pod", None)),
            "jobs": len(store.list("batch/v1", "Job", None)), "events": len(store.list("v1", "Event", None))}


def median_time(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def snapshot_calls(server, kubeconfig: str) -> tuple[int, int]:
    cluster = connect(kubeconfig)
    client, emulator = cluster.calls, server.store.request_count
    take_snapshot(cluster)
    return cluster.calls - client, server.store.request_count - emulator


def run_all(kubeconfig: str, context: str, workdir: Path, workers: int = 1) -> tuple[dict, float]:
    """Every runbook once (dry run), ``workers`` at a time: per runbook (seconds, api_calls, error), and the wall."""
    def one(info):
        started = time.perf_counter()
        result = records.execute(info, workdir, {}, kubeconfig=kubeconfig, context=context)
        return info.id, (time.perf_counter() - started, result.record.get("api_calls"), result.error)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(pool.map(one, records.runbooks()))
    return results, time.perf_counter() - started


def kernel_start(workdir: Path, repeats: int) -> float:
    """papermill on a one-cell notebook: the cost every headless run pays before its first cell."""
    import papermill

    empty = workdir / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass")],
                                            metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                     "display_name": "Python 3"}}), empty)
    return median_time(lambda: papermill.execute_notebook(str(empty), str(workdir / "empty-out.ipynb"),
                                                          kernel_name="python3", progress_bar=False,
                                                          extra_arguments=["--IPKernelApp.log_level=CRITICAL"]),
                       repeats)


def big_wall_times(server, kubeconfig: str, repeats: int) -> dict:
    cluster = connect(kubeconfig)
    kubectl = shutil.which("kubectl")
    bodies = [cluster.api.call_api(path, "GET", header_params={"Accept": "application/json"},
                                   auth_settings=["BearerToken"], _preload_content=False)[0].data for path in SIX_LISTS]
    timed = {
        "triage": median_time(lambda: checks.run_checks(take_snapshot(cluster)), repeats),
        "lists": median_time(lambda: [cluster.get_json(path) for path in SIX_LISTS], repeats),
        "loads": median_time(lambda: [json.loads(body) for body in bodies], repeats),
        "bytes": sum(len(body) for body in bodies),
    }
    if kubectl:
        timed["kubectl"] = median_time(lambda: subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "get", KUBECTL_KINDS, "-A", "-o", "json"], check=True,
            stdout=subprocess.DEVNULL), repeats)
    return timed


def peak_memory(kubeconfig: str) -> tuple[float, float]:
    """(MiB after the imports, MiB at the peak) of a fresh process taking the snapshot and running the checks."""
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, kubeconfig], check=True, capture_output=True,
                          text=True)
    before, peak, _ = (int(word) for word in done.stdout.split())
    return before / 1024, peak / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each timing (the median is reported)")
    parser.add_argument("--workers", type=int, default=4, help="runbooks at once in the parallel collection run")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="nasiko-scale-") as tmp:
        workdir = Path(tmp)
        small = start(SMALL)
        try:
            os.environ.update(small.environment())      # the runbooks' DigitalOcean and Kong: the small demo's
            kubeconfigs = {"small": str(small.write_kubeconfig(workdir / "small.kubeconfig", context="sim-small"))}
            big = start(BIG)
            try:   # the big cluster's measurements first: its controllers' threads share this process's CPU
                kubeconfigs["big"] = str(big.write_kubeconfig(workdir / "big.kubeconfig", context="sim-big"))
                sizes = {"small": counts(small), "big": counts(big)}
                snap_calls = {"small": snapshot_calls(small, kubeconfigs["small"]),
                              "big": snapshot_calls(big, kubeconfigs["big"])}
                walls = big_wall_times(big, kubeconfigs["big"], args.repeats)
                memory = peak_memory(kubeconfigs["big"])
                at_scale, _ = run_all(kubeconfigs["big"], "sim-big", workdir / "big")
            finally:
                big.stop()
            kernel = kernel_start(workdir, args.repeats)
            passes = [run_all(kubeconfigs["small"], "sim-small", workdir / f"pass-{n}") for n in range(args.repeats)]
            parallel = run_all(kubeconfigs["small"], "sim-small", workdir / "parallel", workers=args.workers)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            small.stop()
    report(args, sizes, snap_calls, walls, memory, kernel, passes, parallel, at_scale, time.perf_counter() - began)
    return 0


def report(args, sizes, snap_calls, walls, memory, kernel, passes, parallel, at_scale, total) -> None:
    def size(name):
        s = sizes[name]
        return f"{s['nodes']} nodes / {s['pods']} pods / {s['jobs']} Jobs / {s['events']} events"

    print(f"small: {size('small')}; big: {size('big')}\n")
    print("| API requests | small | big |\n|---|---:|---:|")
    print(f"| triage snapshot (client / emulator) | {snap_calls['small'][0]} / {snap_calls['small'][1]} | "
          f"{snap_calls['big'][0]} / {snap_calls['big'][1]} |")
    for runbook in sorted(at_scale):
        small_calls, big_calls = passes[0][0][runbook][1], at_scale[runbook][1]
        note = "" if small_calls == big_calls else " (differs)"
        print(f"| {runbook} | {small_calls} | {big_calls}{note} |")
    mib = walls["bytes"] / 2 ** 20
    print(f"\n| big cluster, median of {args.repeats} | seconds | ratio |\n|---|---:|---:|")
    reference = walls.get("kubectl")
    if reference:
        print(f"| `kubectl get {KUBECTL_KINDS} -A -o json` | {reference:.2f} | 1.00 |")
    for key, label in (("lists", "the same six lists through nasiko_nb (raw JSON, parsed)"),
                       ("triage", "triage snapshot (3 namespaces x 10 kinds + nodes, namespaces) + every detector"),
                       ("loads", f"json.loads of the six lists' {mib:.1f} MiB alone")):
        ratio = f"{walls[key] / reference:.2f}" if reference else "-"
        print(f"| {label} | {walls[key]:.2f} | {ratio} |")
    print(f"| six lists / json.loads floor | | {walls['lists'] / walls['loads']:.2f} |")
    print(f"\npeak memory of snapshot + checks at the big size: {memory[1]:.0f} MiB "
          f"({memory[0]:.0f} MiB after the imports)\n")
    print(f"| headless dry run on the small demo, median of {args.repeats} | seconds | API calls |\n|---|---:|---:|")
    print(f"| kernel start alone (papermill, one-cell notebook) | {kernel:.2f} | |")
    for runbook in sorted(passes[0][0]):
        seconds = statistics.median(p[0][runbook][0] for p in passes)
        error = passes[0][0][runbook][2]
        print(f"| {runbook} | {seconds:.2f} | {passes[0][0][runbook][1]}{' (stopped: ' + error + ')' if error else ''} |")
    sequential = statistics.median(p[1] for p in passes)
    print(f"| all {len(passes[0][0])}, one after another | {sequential:.1f} | |")
    print(f"| all {len(passes[0][0])}, {args.workers} at a time | {parallel[1]:.1f} | ratio {parallel[1] / sequential:.2f} |")
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"benchmark took {total:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
