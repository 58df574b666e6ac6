"""Connectivity tested from inside the cluster: a short-lived debug pod, or a direct connection in-cluster.

The pod (``nc -zv -w 5 host port``) is created, waited for (bounded), its log read, and deleted whatever
happens; its creation and deletion are journaled like any other change.
"""
from __future__ import annotations

import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, replace

import pandas as pd
from kubernetes.client.rest import ApiException

from nasiko_nb import fixes
from nasiko_nb.cluster import ApiFailure, Cluster
from nasiko_nb.fixes import Change, Plan

PROBE_LABEL = {"app.kubernetes.io/managed-by": "nasiko-nb", "nasiko-nb/probe": "connectivity"}


@dataclass(frozen=True)
class ProbeResult:
    address: str
    reachable: bool
    how: str          # "debug pod <name>" or "direct from this pod"
    output: str       # the probe's own words (nc's log, or the socket error)


def split_address(address: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``) -> (host, port)."""
    match = re.fullmatch(r"(?:tcp://)?(?P<host>[^:/]+):(?P<port>\d+)/?", address.strip())
    if not match:
        raise ValueError(f"not a host:port address: {address!r}")
    return match["host"], int(match["port"])


def running_in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def probe(cluster: Cluster, address: str, namespace: str, image: str, wait_s: float = 60.0) -> ProbeResult:
    """Test a TCP address from inside the cluster: directly when this runs in a pod, else with a debug pod."""
    host, port = split_address(address)
    if running_in_cluster():
        try:
            with socket.create_connection((host, port), timeout=5):
                return ProbeResult(address, True, "direct from this pod", f"{host}:{port} open")
        except OSError as exc:
            return ProbeResult(address, False, "direct from this pod", f"{host}:{port}: {exc}")
    return _debug_pod(cluster, host, port, address, namespace, image, wait_s)


def _debug_pod(cluster: Cluster, host: str, port: int, address: str, namespace: str, image: str,
               wait_s: float) -> ProbeResult:
    name = f"nasiko-nb-probe-{uuid.uuid4().hex[:6]}"
    path = f"/api/v1/namespaces/{namespace}/pods"
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": PROBE_LABEL},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "probe", "image": image, "command": ["nc", "-zv", "-w", "5", host, str(port)],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}
    plan = Plan(fix="connectivity-probe", target=name, changes=[], diagnostic=True)
    create = Change(verb="create", path=path, resource=f"Pod {namespace}/{name}", body=None,
                    description=f"debug pod running nc -zv {host} {port} ({image})")
    try:
        cluster.send_json("POST", path, body)
    except ApiException as exc:
        failure = ApiFailure.from_exception(exc)
        return ProbeResult(address, False, "debug pod not created", f"{failure.status} {failure.reason}: {failure.message}")
    fixes.record(plan, create)
    try:
        result = _observe(cluster, f"{path}/{name}", address, name, wait_s)
    finally:
        left_over = _remove(cluster, plan, create, f"{path}/{name}")
    if left_over:
        return replace(result, output=f"{result.output}; the debug pod was not deleted ({left_over}): "
                                      f"kubectl delete pod -n {namespace} {name}")
    return result


def _observe(cluster: Cluster, path: str, address: str, name: str, wait_s: float) -> ProbeResult:
    """Wait for the debug pod to finish and read its log; an API refusal is the probe's answer, not a crash."""
    try:
        phase = _wait(cluster, path, wait_s)
    except ApiException as exc:
        failure = ApiFailure.from_exception(exc)
        return ProbeResult(address, False, f"debug pod {name}",
                           f"could not read the debug pod: {failure.status} {failure.reason}: {failure.message}")
    try:
        output = cluster.get_text(f"{path}/log", container="probe").strip()
    except ApiException:
        output = ""
    return ProbeResult(address, phase == "Succeeded", f"debug pod {name}", output or f"pod {phase or 'did not finish'}")


def _remove(cluster: Cluster, plan: Plan, create: Change, path: str) -> str:
    """Delete the debug pod and journal it; "" when it is gone, else why it is not."""
    try:
        cluster.send_json("DELETE", path, {"gracePeriodSeconds": 0})
    except ApiException as exc:
        failure = ApiFailure.from_exception(exc)
        if failure.status == 404:
            return ""
        return f"{failure.status} {failure.reason}"
    fixes.record(plan, Change(verb="delete", path=path, resource=create.resource, description="debug pod removed"))
    return ""


def _wait(cluster: Cluster, path: str, wait_s: float) -> str:
    deadline = time.monotonic() + wait_s
    while True:
        phase = (cluster.get_json(path).get("status") or {}).get("phase", "")
        if phase in ("Succeeded", "Failed") or time.monotonic() >= deadline:
            return phase
        time.sleep(1.0)


def probe_frame(results: list[ProbeResult]) -> pd.DataFrame:
    return pd.DataFrame([r.__dict__ for r in results], columns=["address", "reachable", "how", "output"])
