"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for.

Cells follow the kube-apiserver printers (pkg/printers/internalversion/printers.go); the pod column
definitions are the exact ones a real server returns (data/table/pods-table-v1.json).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

_NAME_DESCRIPTION = ("Name must be unique within a namespace. Is required when creating resources, although some "
                     "resources may allow a client to request the generation of an appropriate name automatically. "
                     "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
                     "updated. More info: "
                     "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_AGE_DESCRIPTION = ("CreationTimestamp is a timestamp representing the server time when this object was created. "
                    "It is not guaranteed to be set in happens-before order across separate operations. Clients "
                    "may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
                    "system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/"
                    "sig-architecture/api-conventions.md#metadata")


def _column(name: str, description: str = "", priority: int = 0, format_: str = "", type_: str = "string") -> dict:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


_NAME = _column("Name", _NAME_DESCRIPTION, format_="name")
_AGE = _column("Age", _AGE_DESCRIPTION)


@lru_cache(maxsize=1)
def _pod_columns() -> list[dict]:
    text = (Path(__file__).with_name("data") / "table" / "pods-table-v1.json").read_text()
    return json.loads(text)["columnDefinitions"]


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    seconds = int(seconds)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def _since(value: str | None, now: datetime) -> str:
    moment = parse_time(value)
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())


def _age(obj: dict, now: datetime) -> str:
    return _since(obj.get("metadata", {}).get("creationTimestamp"), now)


def _has_condition(conditions, condition_type: str) -> bool:
    return any(c.get("type") == condition_type and c.get("status") == "True" for c in conditions or [])


def _pod_cells(pod: dict, now: datetime) -> list:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    restartable = {name for name, c in init_specs.items() if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(restartable)
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime | None = None
    sidecar_last_restart: datetime | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    def later(current: datetime | None, container: dict) -> datetime | None:
        finished = parse_time(((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished and (current is None or finished > current):
            return finished
        return current

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for index, container in enumerate(init_statuses):
        restarts += int(container.get("restartCount") or 0)
        last_restart = later(last_restart, container)
        is_sidecar = container.get("name") in restartable
        if is_sidecar:
            sidecar_restarts += int(container.get("restartCount") or 0)
            sidecar_last_restart = later(sidecar_last_restart, container)
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and int(terminated.get("exitCode") or 0) == 0:
            continue
        if is_sidecar and container.get("started"):
            if container.get("ready"):
                ready += 1
            continue
        if terminated:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _has_condition(status.get("conditions"), "Initialized"):
        restarts = sidecar_restarts
        last_restart = sidecar_last_restart
        has_running = False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += int(container.get("restartCount") or 0)
            last_restart = later(last_restart, container)
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                          else f"ExitCode:{terminated.get('exitCode', 0)}")
            elif container.get("ready") and "running" in state:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(status.get("conditions"), "Ready") else "NotReady"

    deleting = bool(pod.get("metadata", {}).get("deletionTimestamp"))
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else "") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true_conditions = 0
        for gate in gates:
            for condition in status.get("conditions") or []:
                if condition.get("type") == gate.get("conditionType"):
                    true_conditions += condition.get("status") == "True"
                    break
        gates_text = f"{true_conditions}/{len(gates)}"
    return [pod["metadata"].get("name", ""), f"{ready}/{total}", reason, restarts_text, _age(pod, now),
            pod_ip, spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_text]


def _containers_images(template_spec: dict) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _selector_text(selector: dict | None) -> str:
    if not selector:
        return "<none>"
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _deployment_cells(obj: dict, now: datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers, images = _containers_images(((spec.get("template") or {}).get("spec")) or {})
    return [obj["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(obj, now),
            containers, images, _selector_text(spec.get("selector"))]


def _replicaset_cells(obj: dict, now: datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers, images = _containers_images(((spec.get("template") or {}).get("spec")) or {})
    return [obj["metadata"]["name"], spec.get("replicas", 1), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(obj, now), containers, images, _selector_text(spec.get("selector"))]


def _job_cells(obj: dict, now: datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif spec.get("parallelism") is not None and spec["parallelism"] > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, finished = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = ""
    if started and finished:
        duration = human_duration((finished - started).total_seconds())
    elif started:
        duration = human_duration((now - started).total_seconds())
    conditions = status.get("conditions")
    if _has_condition(conditions, "Complete"):
        state = "Complete"
    elif _has_condition(conditions, "Failed"):
        state = "Failed"
    elif obj["metadata"].get("deletionTimestamp"):
        state = "Terminating"
    elif _has_condition(conditions, "Suspended"):
        state = "Suspended"
    elif _has_condition(conditions, "FailureTarget"):
        state = "FailureTarget"
    elif _has_condition(conditions, "SuccessCriteriaMet"):
        state = "SuccessCriteriaMet"
    else:
        state = "Running"
    containers, images = _containers_images(((spec.get("template") or {}).get("spec")) or {})
    return [obj["metadata"]["name"], state, completions, duration, _age(obj, now), containers, images,
            _selector_text(spec.get("selector"))]


def _node_cells(obj: dict, now: datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted({key.split("/", 1)[1] for key in labels
                    if key.startswith("node-role.kubernetes.io/") and key.split("/", 1)[1]}
                   | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()))
    addresses = status.get("addresses") or []
    internal = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), "<none>")
    external = next((a.get("address") for a in addresses if a.get("type") == "ExternalIP"), "<none>")
    info = status.get("nodeInfo") or {}
    return [obj["metadata"]["name"], state, ",".join(roles) or "<none>", _age(obj, now),
            info.get("kubeletVersion", ""), internal, external, info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


def _service_cells(obj: dict, now: datetime) -> list:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    service_type = spec.get("type") or "ClusterIP"
    external = ",".join(spec.get("externalIPs") or [])
    if service_type == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
        external = ",".join([ip for ip in ingress if ip] + (spec.get("externalIPs") or [])) or "<pending>"
    elif service_type == "ExternalName":
        external = spec.get("externalName", "")
    ports = []
    for port in spec.get("ports") or []:
        text = f"{port.get('port')}/{port.get('protocol', 'TCP')}"
        if port.get("nodePort"):
            text = f"{port.get('port')}:{port['nodePort']}/{port.get('protocol', 'TCP')}"
        ports.append(text)
    selector = spec.get("selector")
    selector_text = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) if selector else "<none>"
    return [obj["metadata"]["name"], service_type, spec.get("clusterIP") or "<none>", external or "<none>",
            ",".join(ports) or "<none>", _age(obj, now), selector_text]


def _event_cells(obj: dict, now: datetime) -> list:
    involved = obj.get("involvedObject") or {}
    first = obj.get("firstTimestamp") or obj.get("eventTime")
    last = obj.get("lastTimestamp") or obj.get("eventTime") or first
    count = obj.get("count") or ((obj.get("series") or {}).get("count")) or 1
    last_seen = _since(last, now)
    if count > 1 and first:
        last_seen = f"{last_seen} (x{count} over {_since(first, now)})"
    source = obj.get("source") or {}
    source_text = source.get("component") or obj.get("reportingComponent") or ""
    if source.get("host"):
        source_text = f"{source_text}, {source['host']}"
    kind = (involved.get("kind") or "").lower()
    return [last_seen, obj.get("type", ""), obj.get("reason", ""), f"{kind}/{involved.get('name', '')}",
            involved.get("fieldPath", ""), source_text, (obj.get("message") or "").strip(),
            _since(first, now), count, obj["metadata"]["name"]]


def _secret_cells(obj: dict, now: datetime) -> list:
    data_keys = len(obj.get("data") or {}) + len(obj.get("stringData") or {})
    return [obj["metadata"]["name"], obj.get("type", "Opaque"), data_keys, _age(obj, now)]


def _configmap_cells(obj: dict, now: datetime) -> list:
    return [obj["metadata"]["name"], len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _age(obj, now)]


def _namespace_cells(obj: dict, now: datetime) -> list:
    return [obj["metadata"]["name"], (obj.get("status") or {}).get("phase", "Active"), _age(obj, now)]


def _generic_cells(obj: dict, now: datetime) -> list:
    return [obj["metadata"].get("name", ""), _age(obj, now)]


def _quantity_sum(quantities: list[str], unit: str) -> str:
    return f"{sum(int(q[:-len(unit)]) for q in quantities if q.endswith(unit))}{unit}"


def _metrics_cells(obj: dict, now: datetime) -> list:
    """metrics-server's row: the usage (summed over a pod's containers) and the sampling window."""
    usages = [obj["usage"]] if "usage" in obj else [c.get("usage") or {} for c in obj.get("containers") or []]
    return [obj["metadata"]["name"], _quantity_sum([u.get("cpu", "0n") for u in usages], "n"),
            _quantity_sum([u.get("memory", "0Ki") for u in usages], "Ki"), obj.get("window", "")]


_METRICS_COLUMNS = [_column("Name", "Name of the resource", format_="name"), _column("cpu", format_="quantity"),
                    _column("memory", format_="quantity"), _column("Window", format_="duration")]

_TEMPLATE_COLUMNS = [_column("Containers", "Names of each container in the template.", 1),
                     _column("Images", "Images referenced by each container in the template.", 1),
                     _column("Selector", "Label selector of the objects this resource selects.", 1)]

_PRINTERS = {
    ("v1", "Pod"): (None, _pod_cells),
    ("apps/v1", "Deployment"): ([_NAME, _column("Ready", "Number of the pod with ready state"),
                                 _column("Up-to-date", "Total number of non-terminated pods targeted by this "
                                                       "deployment that have the desired template spec."),
                                 _column("Available", "Total number of available pods (ready for at least "
                                                      "minReadySeconds) targeted by this deployment."),
                                 _AGE, *_TEMPLATE_COLUMNS], _deployment_cells),
    ("apps/v1", "ReplicaSet"): ([_NAME, _column("Desired", "Number of desired pods.", type_="integer"),
                                 _column("Current", "Number of actual pods.", type_="integer"),
                                 _column("Ready", "Number of ready pods.", type_="integer"),
                                 _AGE, *_TEMPLATE_COLUMNS], _replicaset_cells),
    ("batch/v1", "Job"): ([_NAME, _column("Status", "Status of the job."),
                           _column("Completions", "The desired number of successfully finished pods the job "
                                                  "should be run with."),
                           _column("Duration", "Time required to complete the job."), _AGE, *_TEMPLATE_COLUMNS],
                          _job_cells),
    ("v1", "Node"): ([_NAME, _column("Status", "The status of the node"),
                      _column("Roles", "The roles of the node"), _AGE,
                      _column("Version", "Kubelet Version reported by the node."),
                      _column("Internal-IP", "List of internal IPs for the node.", 1),
                      _column("External-IP", "List of external IPs for the node.", 1),
                      _column("OS-Image", "OS image reported by the node.", 1),
                      _column("Kernel-Version", "Kernel version reported by the node.", 1),
                      _column("Container-Runtime", "Container runtime reported by the node.", 1)], _node_cells),
    ("v1", "Service"): ([_NAME, _column("Type", "The type of the service."),
                         _column("Cluster-IP", "The IP address of the service."),
                         _column("External-IP", "The external IP address of the service."),
                         _column("Port(s)", "The ports of the service."), _AGE,
                         _column("Selector", "The label selector of the service.", 1)], _service_cells),
    ("v1", "Event"): ([_column("Last Seen", "Time when this Event was last seen."),
                       _column("Type", "Type of this event (Normal, Warning)."),
                       _column("Reason", "Why the action was taken."),
                       _column("Object", "The object this Event is about."),
                       _column("Subobject", "The subobject this Event is about.", 1),
                       _column("Source", "The component reporting this event.", 1),
                       _column("Message", "A human-readable description of the status of this operation."),
                       _column("First Seen", "The time at which the event was first recorded.", 1),
                       _column("Count", "The number of times this event has occurred.", 1, type_="integer"),
                       {**_NAME, "priority": 1}], _event_cells),
    ("v1", "Secret"): ([_NAME, _column("Type", "The type of the secret"),
                        _column("Data", "The number of data items in the secret", type_="integer"), _AGE],
                       _secret_cells),
    ("v1", "ConfigMap"): ([_NAME, _column("Data", "The number of data items in the config map", type_="integer"),
                           _AGE], _configmap_cells),
    ("v1", "Namespace"): ([_NAME, _column("Status", "The status of the namespace"), _AGE], _namespace_cells),
    ("metrics.k8s.io/v1beta1", "NodeMetrics"): (_METRICS_COLUMNS, _metrics_cells),
    ("metrics.k8s.io/v1beta1", "PodMetrics"): (_METRICS_COLUMNS, _metrics_cells),
}


def _row_object(obj: dict, include_object: str):
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def build_table(api_version: str, kind: str, objects: list[dict], resource_version: str,
                include_object: str = "Metadata", list_metadata: dict | None = None) -> dict:
    """A meta.k8s.io/v1 Table; rows reference the given objects (serialise it while they cannot change)."""
    columns, printer = _PRINTERS.get((api_version, kind), ([_NAME, _AGE], _generic_cells))
    if columns is None:
        columns = _pod_columns()
    now = datetime.now(timezone.utc)
    rows = []
    for obj in objects:
        row = {"cells": printer(obj, now)}
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    metadata = {"resourceVersion": resource_version, **(list_metadata or {})}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": columns, "rows": rows}
