"""How triage scales with the number of pods: the healthy platform vs. the same with 5,000 extra pods.

For each cluster, side by side:
  (a) the API requests of one snapshot as the triage runbook takes it (client-side ``cluster.calls`` and
      the emulator's ``store.request_count`` delta),
  (b) take_snapshot + run_checks wall time (median of --repeats),
  (c) one whole headless run of 00-triage through nasiko_nb.records.execute (papermill, fresh kernel).

The extra pods are spread by the emulator over nasiko-agents and nasiko; the table shows both the pods
in the cluster and the pods the snapshot read (triage reads nasiko, nasiko-agents and buildkit).

    .venv/bin/python benchmarks/triage_scale.py [--repeats 5] [--extra-pods 5000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nasiko_nb import checks, records, sim
from nasiko_nb.cluster import connect
from nasiko_nb.snapshot import PLATFORM_NAMESPACES, take_snapshot


def measure(label: str, extra_pods: int, repeats: int, workdir: Path) -> dict:
    built = time.perf_counter()
    server = sim.start("healthy", extra_pods=extra_pods)
    built = time.perf_counter() - built
    try:
        kubeconfig = server.write_kubeconfig(workdir / label / "kubeconfig", context=f"sim-{label}")
        cluster = connect(str(kubeconfig))
        all_pods = server.store.list("v1", "Pod", None)
        platform_pods = sum(1 for p in all_pods if p["metadata"].get("namespace") in PLATFORM_NAMESPACES)

        # (a) one snapshot's API requests, counted on both sides of the wire
        client_before, server_before = cluster.calls, server.store.request_count
        snap = take_snapshot(cluster)
        client_calls = cluster.calls - client_before
        server_calls = server.store.request_count - server_before
        assert len(snap.pods) == platform_pods, (len(snap.pods), platform_pods)

        # (b) snapshot + checks, median of the repeats (the first, cold call is the one above)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            findings = checks.run_checks(take_snapshot(cluster))
            times.append(time.perf_counter() - started)

        # (c) one whole headless triage run: papermill, a fresh kernel, the record files
        info = records.resolve("00-triage")
        started = time.perf_counter()
        result = records.execute(info, workdir / label / "incidents", {}, kubeconfig=str(kubeconfig),
                                 context=f"sim-{label}")
        headless = time.perf_counter() - started
        if result.error:
            raise SystemExit(f"headless triage on {label} failed: {result.error}")
        return {
            "label": label, "extra": extra_pods, "pods": len(all_pods), "read": len(snap.pods),
            "client": client_calls, "server": server_calls, "run_calls": result.record.get("api_calls"),
            "snap": statistics.median(times), "snap_min": min(times), "headless": headless,
            "findings": len([f for f in findings if f.severity != "ok"]), "outcome": result.record["outcome"],
            "build": built,
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats of snapshot+checks (median reported)")
    parser.add_argument("--extra-pods", type=int, default=5000, help="healthy pods added to the big cluster")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nasiko-bench-") as tmp:
        small = measure("healthy", 0, args.repeats, Path(tmp))
        big = measure(f"healthy+{args.extra_pods}", args.extra_pods, args.repeats, Path(tmp))

    rows = [
        ("pods in the cluster", "{pods}", "{:.1f}x"),
        ("pods triage reads (nasiko, nasiko-agents, buildkit)", "{read}", "{:.1f}x"),
        ("API calls of one snapshot, client (cluster.calls)", "{client}", "{:.2f}x"),
        ("API calls of one snapshot, server (store.request_count)", "{server}", "{:.2f}x"),
        ("API calls of the headless run (record api_calls)", "{run_calls}", "{:.2f}x"),
        (f"snapshot+checks s (median of {args.repeats})", "{snap:.3f}", "{:.2f}x"),
        ("headless triage run s (papermill)", "{headless:.2f}", "{:.2f}x"),
    ]
    keys = ["pods", "read", "client", "server", "run_calls", "snap", "headless"]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {small['label']:>10}  {big['label']:>12}  {'ratio':>7}")
    for (name, fmt, ratio_fmt), key in zip(rows, keys):
        ratio = big[key] / small[key] if small[key] else float("nan")
        print(f"{name:{width}}  {fmt.format(**small):>10}  {fmt.format(**big):>12}  {ratio_fmt.format(ratio):>7}")
    print(f"(findings other than ok: {small['findings']} / {big['findings']}; outcome {small['outcome']} / "
          f"{big['outcome']}; emulator start {small['build']:.1f}s / {big['build']:.1f}s; total {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
