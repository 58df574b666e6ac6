"""metrics.k8s.io/v1beta1 as metrics-server serves it, computed on every read from the pods and nodes in the Store.

Nothing is stored, so the usage always matches what runs now: a rolled-out Deployment, an evicted pod or a
node that just joined shows at the next read. Each running container uses a share of its requests that a
hash of its pod and name fixes (cpu 35-70 %, memory 50-90 %); a node's usage is its pods' plus its system
daemons', except that a node under MemoryPressure uses 96 % of its allocatable memory, which is what put it
past the kubelet's eviction threshold. A replayed snapshot that captured metrics of a kind is served those
instead: they are what the real cluster measured.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from nasiko_nb.sim.kubelet import iso, parse_cpu, parse_memory
from nasiko_nb.sim.store import ApiError, ResourceType, Store, fast_copy, selector_matcher

GROUP = "metrics.k8s.io"
API_VERSION = f"{GROUP}/v1beta1"
WINDOW = "20.035s"
SCRAPE_INTERVAL = timedelta(seconds=15)
PRESSURE_MEMORY_SHARE = 0.962            # kubectl top shows 96 %
UNREQUESTED_CPU_M = 5                   # what a container without requests is taken to idle at
UNREQUESTED_MEMORY = 16 * 2**20


def _share(seed: str, low: float, high: float) -> float:
    """A fraction in [low, high), fixed by ``seed``."""
    return low + (high - low) * int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16) / 2**32


def container_usage(namespace: str, pod: str, container: dict) -> tuple[int, int]:
    """(nanocores, bytes) a running container uses, from its requests."""
    requests = (container.get("resources") or {}).get("requests") or {}
    cpu_m = parse_cpu(requests.get("cpu", "0")) or UNREQUESTED_CPU_M
    memory = parse_memory(requests.get("memory", "0")) or UNREQUESTED_MEMORY
    seed = f"{namespace}/{pod}/{container['name']}"
    return int(cpu_m * 1_000_000 * _share(f"{seed} cpu", 0.35, 0.70)), int(memory * _share(f"{seed} memory", 0.5, 0.9))


def _usage(nanocores: int, memory: int) -> dict:
    return {"cpu": f"{nanocores}n", "memory": f"{memory // 1024}Ki"}


def _running_containers(pod: dict) -> list[dict]:
    """The pod's containers that run now (metrics-server has no sample of the others)."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return []
    running = {status["name"] for status in pod["status"].get("containerStatuses") or []
               if "running" in (status.get("state") or {})}
    return [c for c in (pod.get("spec") or {}).get("containers") or [] if c["name"] in running]


def _scraped(now: datetime) -> datetime:
    """When metrics-server last scraped the kubelets: the latest whole interval."""
    return now - timedelta(seconds=now.timestamp() % SCRAPE_INTERVAL.total_seconds())


def pod_metrics(pod: dict, now: datetime) -> dict | None:
    """The PodMetrics of ``pod``, or None when no container of it runs."""
    metadata = pod["metadata"]
    containers = [{"name": c["name"], "usage": _usage(*container_usage(metadata["namespace"], metadata["name"], c))}
                  for c in _running_containers(pod)]
    if not containers:
        return None
    return {"kind": "PodMetrics", "apiVersion": API_VERSION,
            "metadata": {"name": metadata["name"], "namespace": metadata["namespace"], "creationTimestamp": iso(now),
                         "labels": dict(metadata.get("labels") or {})},
            "timestamp": iso(_scraped(now)), "window": WINDOW, "containers": containers}


def _under_memory_pressure(node: dict) -> bool:
    return any(c.get("type") == "MemoryPressure" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def node_metrics(node: dict, pods: list[dict], now: datetime) -> dict:
    """The NodeMetrics of ``node`` running ``pods``: theirs plus the system daemons' usage."""
    name = node["metadata"]["name"]
    cpu = int(1_000_000 * 1000 * _share(f"{name} system cpu", 0.09, 0.14))
    memory = int(2**20 * 1000 * _share(f"{name} system memory", 0.85, 1.1))
    for pod in pods:
        for container in _running_containers(pod):
            used_cpu, used_memory = container_usage(pod["metadata"]["namespace"], pod["metadata"]["name"], container)
            cpu, memory = cpu + used_cpu, memory + used_memory
    if _under_memory_pressure(node):
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        memory = int(parse_memory(allocatable.get("memory", "0")) * PRESSURE_MEMORY_SHARE)
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION,
            "metadata": {"name": name, "creationTimestamp": iso(now),
                         "labels": dict(node["metadata"].get("labels") or {})},
            "timestamp": iso(_scraped(now)), "window": WINDOW, "usage": _usage(cpu, memory)}


def _all_metrics(store: Store, kind: str, namespace: str | None, now: datetime) -> list[dict]:
    registry = store.registry
    with store.lock:
        captured = store.select(registry.for_kind(API_VERSION, kind), namespace)
        if captured:
            return [fast_copy(item) for item in captured]
        pods = store.select(registry.for_kind("v1", "Pod"), namespace if kind == "PodMetrics" else None)
        if kind == "PodMetrics":
            return [m for m in (pod_metrics(pod, now) for pod in pods) if m is not None]
        by_node: dict[str, list[dict]] = {}
        for pod in pods:
            by_node.setdefault((pod.get("spec") or {}).get("nodeName") or "", []).append(pod)
        return [node_metrics(node, by_node.get(node["metadata"]["name"], []), now)
                for node in store.select(registry.for_kind("v1", "Node")) if _ready(node)]


def list_metrics(store: Store, resource: ResourceType, namespace: str | None, label_selector: str = "",
                 field_selector: str = "") -> list[dict]:
    """What GET on the collection lists, selectors applied to the metrics' labels and metadata."""
    matches_selectors = selector_matcher(resource, label_selector, field_selector)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return [m for m in _all_metrics(store, resource.kind, namespace, now) if matches_selectors(m)]


def get_metrics(store: Store, resource: ResourceType, namespace: str | None, name: str) -> dict:
    """One node's or pod's metrics; 404 in metrics-server's words when it has none."""
    for item in list_metrics(store, resource, namespace, field_selector=f"metadata.name={name}"):
        return item
    missing = f"{namespace}/{name}" if resource.namespaced else name
    kind = "podmetrics" if resource.namespaced else "nodemetrics"
    raise ApiError(404, "NotFound", f'{kind}.{GROUP} "{missing}" not found',
                   {"name": missing, "group": GROUP, "kind": kind})
