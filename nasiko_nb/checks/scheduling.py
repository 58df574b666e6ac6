"""Pods the scheduler cannot place: scheduling/* findings.

The scheduler's reasons are read from the pod's newest ``FailedScheduling`` Warning event, or, when events
have expired, from the pod's ``PodScheduled=False`` condition, which carries the same message. One message
may name several causes ("2 Insufficient cpu, 1 node(s) had untolerated taint ..."): each becomes a finding.
For CPU and memory the evidence gives the exact shortfall: the pod's effective requests against the free
allocatable of the node with the most room, where free = allocatable minus the requests of the
non-terminated pods the snapshot sees on that node.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import pandas as pd

from nasiko_nb.checks import detector
from nasiko_nb.checks.build import name_of, namespace_of, object_age
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.snapshot import Snapshot, event_message, event_time

_SUFFIXES = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^\s*(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|"
                       r"[eE][+-]?\d+)?\s*$")


def parse_quantity(value) -> Decimal:
    """A Kubernetes resource quantity as a number of base units: "250m" -> 0.25, "1Gi" -> 1073741824, "1e3" -> 1000."""
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value or ""))
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from exc
    suffix = match["suffix"] or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIXES[suffix]


def format_cpu(cores: Decimal) -> str:
    return f"{int((cores * 1000).to_integral_value())}m"


def format_memory(value: Decimal) -> str:
    value = Decimal(value)
    for unit, size in (("Gi", 2 ** 30), ("Mi", 2 ** 20), ("Ki", 2 ** 10)):
        if abs(value) >= size:
            text = f"{value / size:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{int(value)}"


_FORMAT = {"cpu": format_cpu, "memory": format_memory}

# (code, pattern) searched in the part of a FailedScheduling message before "preemption:".
_CAUSES: list[tuple[str, re.Pattern]] = [(code, re.compile(pattern, re.IGNORECASE)) for code, pattern in [
    ("scheduling/insufficient-cpu", r"Insufficient cpu"),
    ("scheduling/insufficient-memory", r"Insufficient memory"),
    ("scheduling/too-many-pods", r"Too many pods"),
    ("scheduling/node-unschedulable", r"node\(s\) were unschedulable|taint \{node\.kubernetes\.io/unschedulable:"
                                      r"|nodes? (?:is|are) unschedulable"),
    ("scheduling/node-selector-mismatch", r"didn't match (?:Pod's )?node (?:affinity|selector)"
                                          r"|didn't match node selector|node affinity/selector"
                                          r"|MatchNodeSelector|didn't satisfy node affinity"),
    ("scheduling/unbound-pvc", r"unbound (?:immediate )?PersistentVolumeClaims|persistentvolumeclaim \"[^\"]+\" "
                               r"(?:not found|is being deleted)|didn't find available persistent volumes to bind"
                               r"|volume node affinity conflict"),
]]
_TAINT_ANY = re.compile(r"\{(?P<taint>[^}]*)\}(?:, that the pod didn't tolerate)?")


@dataclass(frozen=True)
class SchedulingCause:
    code: str
    detail: str = ""     # taint text for untolerated-taint


def classify_scheduling_message(message: str) -> list[SchedulingCause]:
    """Every scheduling/* cause a FailedScheduling message names, in catalog order."""
    text = re.split(r"\bpreemption:", message or "", maxsplit=1, flags=re.IGNORECASE)[0]
    causes = [SchedulingCause(code) for code, pattern in _CAUSES if pattern.search(text)]
    taints = []
    for part in re.split(r",\s*(?=\d+ )", text):
        if re.search(r"taint", part, re.IGNORECASE) and "node.kubernetes.io/unschedulable" not in part:
            found = _TAINT_ANY.search(part)
            taints.append(_taint_text(found["taint"]) if found else "unknown taint")
    if taints:
        causes.append(SchedulingCause("scheduling/untolerated-taint", ", ".join(dict.fromkeys(taints))))
    return causes


def _taint_text(raw: str) -> str:
    """"{node-role.kubernetes.io/control-plane: }" -> "node-role.kubernetes.io/control-plane"; "{a: b}" -> "a=b"."""
    key, _, value = raw.partition(":")
    return f"{key.strip()}={value.strip()}" if value.strip() else key.strip()


# --- requests and node capacity -------------------------------------------------------------------------

def _requests(container: dict) -> dict[str, Decimal]:
    resources = container.get("resources") or {}
    requests = dict(resources.get("limits") or {})      # a limit without a request defaults the request
    requests.update(resources.get("requests") or {})
    out = {}
    for name in ("cpu", "memory"):
        if name in requests:
            out[name] = parse_quantity(requests[name])
    return out


def pod_requests(pod: dict) -> dict[str, Decimal]:
    """The pod's effective requests as the scheduler counts them: max(sum of containers, largest init
    container) plus overhead; restartable (sidecar) init containers count towards the sum."""
    spec = pod.get("spec") or {}
    total = {"cpu": Decimal(0), "memory": Decimal(0)}
    for container in spec.get("containers") or []:
        for name, value in _requests(container).items():
            total[name] += value
    sidecars = {"cpu": Decimal(0), "memory": Decimal(0)}
    init_peak = {"cpu": Decimal(0), "memory": Decimal(0)}
    for container in spec.get("initContainers") or []:
        requests = _requests(container)
        for name in total:
            value = requests.get(name, Decimal(0))
            if container.get("restartPolicy") == "Always":
                sidecars[name] += value
            else:
                init_peak[name] = max(init_peak[name], sidecars[name] + value)
    for name in total:
        total[name] = max(total[name] + sidecars[name], init_peak[name])
        total[name] += parse_quantity((spec.get("overhead") or {}).get(name, 0))
    return total


def _is_terminated(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


@dataclass(frozen=True)
class NodeResources:
    node: str
    capacity: dict
    allocatable: dict
    requested: dict
    pods: int
    unschedulable: bool

    @property
    def free(self) -> dict:
        return {name: self.allocatable[name] - self.requested[name] for name in ("cpu", "memory")}


def node_resources(snapshot: Snapshot) -> list[NodeResources]:
    """Every node's allocatable, the requests of the snapshot's non-terminated pods on it, and what is free."""
    by_node: dict[str, list[dict]] = {}
    for pod in snapshot.pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and not _is_terminated(pod):
            by_node.setdefault(node, []).append(pod)
    result = []
    for node in snapshot.nodes:
        status = node.get("status") or {}
        name = name_of(node)
        capacity = {k: parse_quantity((status.get("capacity") or {}).get(k, 0)) for k in ("cpu", "memory")}
        allocatable = {k: parse_quantity((status.get("allocatable") or status.get("capacity") or {}).get(k, 0))
                       for k in ("cpu", "memory")}
        requested = {"cpu": Decimal(0), "memory": Decimal(0)}
        for pod in by_node.get(name, []):
            for key, value in pod_requests(pod).items():
                requested[key] += value
        result.append(NodeResources(name, capacity, allocatable, requested, len(by_node.get(name, [])),
                                    bool((node.get("spec") or {}).get("unschedulable"))))
    return result


def node_resources_frame(snapshot: Snapshot) -> pd.DataFrame:
    """One row per node; cpu in cores, memory in bytes (numbers, for sums and sorting)."""
    rows = []
    for item in node_resources(snapshot):
        row = {"node": item.node}
        for key in ("cpu", "memory"):
            convert = float if key == "cpu" else int
            row[f"{key}_capacity"] = convert(item.capacity[key])
            row[f"{key}_allocatable"] = convert(item.allocatable[key])
            row[f"{key}_requested"] = convert(item.requested[key])
            row[f"{key}_free"] = convert(item.free[key])
        row["pods"] = item.pods
        row["unschedulable"] = item.unschedulable
        rows.append(row)
    columns = ["node"] + [f"{k}_{c}" for k in ("cpu", "memory") for c in ("capacity", "allocatable", "requested",
                                                                          "free")] + ["pods", "unschedulable"]
    return pd.DataFrame(rows, columns=columns)


# --- pending pods ---------------------------------------------------------------------------------------

def scheduling_message(snapshot: Snapshot, pod: dict) -> str:
    """The newest FailedScheduling message for the pod (event, else its PodScheduled=False condition)."""
    events = [e for e in snapshot.events_for(pod) if e.get("reason") == "FailedScheduling"]
    if events:
        return event_message(max(events, key=event_time))
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return condition.get("message") or ""
    return ""


def pending_pods(snapshot: Snapshot, namespace: str | None = None) -> list[dict]:
    """Pods not placed on a node: phase Pending without nodeName."""
    return [p for p in snapshot.pods_in(namespace) if (p.get("status") or {}).get("phase", "Pending") == "Pending"
            and not (p.get("spec") or {}).get("nodeName")]


def pending_pods_frame(snapshot: Snapshot, namespace: str | None = None) -> pd.DataFrame:
    rows = []
    for pod in pending_pods(snapshot, namespace):
        message = scheduling_message(snapshot, pod)
        requests = pod_requests(pod)
        rows.append({"namespace": namespace_of(pod), "pod": name_of(pod),
                     "age": object_age(snapshot, pod),
                     "cpu_request": format_cpu(requests["cpu"]), "memory_request": format_memory(requests["memory"]),
                     "codes": ", ".join(c.code for c in classify_scheduling_message(message)),
                     "message": message})
    return pd.DataFrame(rows, columns=["namespace", "pod", "age", "cpu_request", "memory_request", "codes",
                                       "message"])


def shortfall(snapshot: Snapshot, pod: dict, resource: str) -> str:
    """"pod requests 2000m cpu; best node n1 has 1500m free (3900m allocatable - 2400m requested by 7 pods):
    short by 500m"."""
    need = pod_requests(pod)[resource]
    fmt = _FORMAT[resource]
    nodes = [n for n in node_resources(snapshot) if not n.unschedulable] or node_resources(snapshot)
    if not nodes:
        return f"pod requests {fmt(need)} {resource}; no nodes in the snapshot to compare with"
    best = max(nodes, key=lambda n: n.free[resource])
    free = best.free[resource]
    text = (f"pod requests {fmt(need)} {resource}; best node {best.node} has {fmt(free)} free "
            f"({fmt(best.allocatable[resource])} allocatable - {fmt(best.requested[resource])} requested by "
            f"{best.pods} pods seen in the snapshot)")
    if need > free:
        text += f": short by {fmt(need - free)}"
    else:
        text += ": enough by these numbers (pods of namespaces outside the snapshot also hold requests)"
    return text


@detector("scheduling")
def detect(snapshot: Snapshot, params: dict) -> list[Finding]:
    findings = []
    for pod in pending_pods(snapshot, params.get("scheduling_namespace")):
        message = scheduling_message(snapshot, pod)
        if not message:
            continue
        resource = f"Pod {namespace_of(pod)}/{name_of(pod)}"
        pod_name = name_of(pod)
        for cause in classify_scheduling_message(message):
            evidence = f"FailedScheduling: {message}"
            fields = {"pod": pod_name}
            if cause.code == "scheduling/insufficient-cpu":
                evidence += f"\n{shortfall(snapshot, pod, 'cpu')}"
            elif cause.code == "scheduling/insufficient-memory":
                evidence += f"\n{shortfall(snapshot, pod, 'memory')}"
            elif cause.code == "scheduling/untolerated-taint":
                fields["taint"] = cause.detail
                tolerations = [f"{t.get('key', '*')}:{t.get('effect', '*')}"
                               for t in (pod.get("spec") or {}).get("tolerations") or []]
                evidence += f"\npod tolerates: {', '.join(tolerations) or 'nothing'}"
            elif cause.code == "scheduling/unbound-pvc":
                claims = _unbound_claims(snapshot, pod, message)
                fields["claim"] = ", ".join(claims) or "(unknown)"
            elif cause.code == "scheduling/node-selector-mismatch":
                selector = (pod.get("spec") or {}).get("nodeSelector") or {}
                evidence += f"\npod nodeSelector: {selector or 'none'}" + (
                    "; pod has node affinity" if ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity")
                    else "")
            findings.append(make_finding(cause.code, resource, evidence, **fields))
    return findings


def _unbound_claims(snapshot: Snapshot, pod: dict, message: str) -> list[str]:
    named = re.findall(r"persistentvolumeclaim \"([^\"]+)\"", message, re.IGNORECASE)
    claims = named or [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
                       if (v.get("persistentVolumeClaim") or {}).get("claimName")]
    unbound = [c for c in claims
               if ((snapshot.get("PersistentVolumeClaim", namespace_of(pod), c) or {}).get("status") or {})
               .get("phase") != "Bound"]
    return unbound or claims
