"""The platform's k8s-service-registry: it keeps Kong in step with the agent Services in ``nasiko-agents``.

Two versions exist, told apart by the registry image's version and by the mode it logs at start:
- up to v1.4.x (the platform's code): every agent Service is routed at ``/agents/<service-name>``;
- from v1.5.0 (the guide's fix): at ``/agents/<agent-name label>``, falling back to the Service name (with a
  warning) when the label is missing.
Both skip Services whose name contains a database-like word and remove Kong services whose Service is gone.
The emulator syncs when a scenario is built and whenever a new registry pod starts (a rollout); the real
registry's 30-second loop is not emulated, so a change takes effect at the registry's next start.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

from nasiko_nb.sim.kong import KongError, KongWorld
from nasiko_nb.sim.store import Store

if TYPE_CHECKING:
    from nasiko_nb.sim.platform import Cluster

REGISTRY = "k8s-service-registry"
PLATFORM_NAMESPACE = "nasiko"
AGENTS_NAMESPACE = "nasiko-agents"
AGENT_NAME_LABEL = "agent-name"
SKIP_WORDS = ("postgres", "redis", "mongodb", "mysql", "kafka", "etcd", "headless")
LABEL_ROUTING_VERSION = (1, 5, 0)
FIXED_TAG = "v1.5.0"                  # the platform images with the guide's routing fix
MODE_LABEL = "agent-name label"
MODE_SERVICE_NAME = "service name"
AGENT_PLUGINS = {
    "cors": {"origins": ["*"], "credentials": True, "max_age": 3600,
             "headers": ["Accept", "Authorization", "Content-Type", "X-Request-ID"],
             "methods": ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]},
    "nasiko-auth": {"auth_service_url": "http://nasiko-auth.nasiko.svc.cluster.local:8001", "require_auth": True},
    "chat-logger": {"chat_history_url": "http://localhost:8002", "log_requests": True},
}
FIRST_SEEN_AFTER = timedelta(seconds=15)     # how soon the registry's loop notices a new Service

#: The static proxies the registry registers at start: (name, host, port, upstream path, route paths,
#: methods, strip_path, preserve_host, plugins). The landing page matches `/` itself only (a regex path), so a
#: path no other route takes gets Kong's own 404.
_ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
STATIC_PROXIES = (
    ("backend-api-proxy", "nasiko-backend.nasiko.svc.cluster.local", 8000, None, ["/api"], _ALL_METHODS, False, False,
     ("cors", "nasiko-auth")),
    ("web-app-proxy", "nasiko-web.nasiko.svc.cluster.local", 4000, None, ["/app"], _ALL_METHODS, True, False,
     ("cors",)),
    ("auth-proxy", "nasiko-auth.nasiko.svc.cluster.local", 8001, None, ["/auth"], _ALL_METHODS, False, False,
     ("cors",)),
    ("nasiko-router", "nasiko-router.nasiko.svc.cluster.local", 8000, None, ["/router"], _ALL_METHODS, False, False,
     ("cors", "nasiko-auth", "chat-logger")),
    ("landing-page", "nasiko-web.nasiko.svc.cluster.local", 4000, "/app/", ["~/$"], _ALL_METHODS, False, True,
     ("cors",)),
    ("n8n", "n8n.nasiko.svc.cluster.local", 5678, None, ["/n8n"], _ALL_METHODS, True, False, ("cors",)),
)


def _line(at: datetime, level: str, message: str) -> str:
    return f"{at.strftime('%Y-%m-%d %H:%M:%S')} {level} {message}"


def registry_version(image: str) -> tuple[int, int, int] | None:
    """The version in a registry image's tag (`...:v1.4.2` or ECR's `...:k8s-service-registry-v1.4.2`)."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", tag)
    return tuple(int(part) for part in found.groups()) if found else None


def routing_mode(image: str) -> str:
    """How a registry image routes agents; an image without a version (`latest`) is taken as the code's."""
    version = registry_version(image)
    return MODE_LABEL if version is not None and version >= LABEL_ROUTING_VERSION else MODE_SERVICE_NAME


def start_lines(kong: KongWorld, image: str, at: datetime) -> list[str]:
    """What the registry logs when it starts, after registering the static proxies in Kong."""
    version = registry_version(image)
    shown = ".".join(map(str, version)) if version else "unknown"
    lines = [_line(at, "INFO", f"Starting Kubernetes service registry (namespace {AGENTS_NAMESPACE})"),
             _line(at, "INFO", f"Kong Kubernetes Service Registry {shown}"),
             _line(at, "INFO", "Loaded in-cluster Kubernetes config"),
             _line(at, "INFO", f"Routing mode: {routing_mode(image)}"),
             _line(at, "INFO", "Configuring static proxy routes...")]
    for name, host, port, path, paths, methods, strip, preserve, plugins in STATIC_PROXIES:
        url = f"http://{host}:{port}{path or ''}"
        _ensure(kong, name, url, {"name": f"{name}-route", "paths": paths, "methods": methods, "strip_path": strip,
                                  "preserve_host": preserve}, {p: AGENT_PLUGINS[p] for p in plugins}, at)
        lines.append(_line(at, "INFO", f"Registered static proxy {name}: {', '.join(paths)} -> {url}"))
    return lines


def _ensure(kong: KongWorld, name: str, url: str, route: dict, plugins: dict[str, dict], at: datetime) -> list[str]:
    """Kong service ``name`` at ``url`` with ``route`` and ``plugins``, created or brought up to date."""
    lines = []
    service = kong.find("services", name)
    if service is None:
        service = kong.insert("services", {"name": name, "url": url, "connect_timeout": 60000,
                                           "write_timeout": 300000, "read_timeout": 300000, "retries": 3}, at)
        lines.append(f"Created Kong service {name}")
    elif f"{service['protocol']}://{service['host']}:{service['port']}{service['path'] or ''}" != url:
        service = kong.update("services", name, {"url": url}, at)
        lines.append(f"Updated Kong service {name}")
    ref = {"id": service["id"]}
    existing = kong.find("routes", route["name"])
    if existing is None:
        kong.insert("routes", {**route, "service": ref}, at)
        lines.append(f"Created route {route['name']}: {', '.join(route['paths'])}")
    elif any(existing.get(k) != v for k, v in route.items()) or existing.get("service") != ref:
        kong.update("routes", route["name"], {**route, "service": ref}, at)
        lines.append(f"Updated route {route['name']}: {', '.join(route['paths'])}")
    present = {p["name"] for p in kong.all("plugins", lambda p: p.get("service") == ref)}
    for plugin, config in plugins.items():
        if plugin not in present:
            kong.insert("plugins", {"name": plugin, "service": ref, "config": config}, at)
    return lines


def _port(svc: dict) -> int | None:
    """The registry's port choice: a port named http/api/web/rest, else the first."""
    ports = svc["spec"].get("ports") or []
    named = [p["port"] for p in ports if (p.get("name") or "").lower() in ("http", "api", "web", "rest")]
    return (named or [p["port"] for p in ports] or [None])[0]


def sync(kong: KongWorld, services: list[dict], mode: str, at: datetime,
         first_seen: Callable[[dict], datetime] | None = None) -> list[str]:
    """One registry sync: a Kong service, route and plugins per agent Service, stale ones removed.

    Returns the log lines; ``first_seen`` says when the registry first saw a Service: its Kong entities are
    created then, and logged by an earlier run of the loop, before this run's lines.
    """
    lines = [_line(at, "INFO", f"Syncing agent services in namespace {AGENTS_NAMESPACE}")]
    earlier: list[tuple[datetime, list[str]]] = []
    routed = set()
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        name = svc["metadata"]["name"]
        if svc["metadata"].get("namespace", AGENTS_NAMESPACE) != AGENTS_NAMESPACE or not name.startswith("agent-"):
            continue
        word = next((w for w in SKIP_WORDS if w in name.lower()), None)
        if word is not None:
            lines.append(_line(at, "INFO", f"Skipping service {name}: name contains '{word}'"))
            continue
        if svc["spec"].get("clusterIP") == "None":
            lines.append(_line(at, "INFO", f"Skipping service {name}: headless"))
            continue
        port = _port(svc)
        if port is None:
            lines.append(_line(at, "WARNING", f"Service {name} has no ports defined"))
            continue
        label = (svc["metadata"].get("labels") or {}).get(AGENT_NAME_LABEL)
        if mode == MODE_LABEL and label:
            route_name = label
        else:
            route_name = name
            if mode == MODE_LABEL:
                lines.append(_line(at, "WARNING", f"Service {name} has no {AGENT_NAME_LABEL} label; routing by "
                                                  "service name"))
        host = f"{name}.{AGENTS_NAMESPACE}.svc.cluster.local"
        discovered = f"Discovered agent service: {name} at {host}:{port} (route: /agents/{route_name})"
        lines.append(_line(at, "INFO", discovered))
        when = min(at, first_seen(svc)) if first_seen else at
        try:
            changes = _ensure(kong, name, f"http://{host}:{port}",
                              {"name": f"{name}-route", "paths": [f"/agents/{route_name}"], "strip_path": True,
                               "preserve_host": False}, AGENT_PLUGINS, when)
        except KongError as error:
            lines.append(_line(at, "ERROR", f"Failed to register {name} in Kong: {error.body.get('message')}"))
            continue
        if changes and when < at:
            earlier.append((when, [_line(when, "INFO", text) for text in (
                f"Syncing agent services in namespace {AGENTS_NAMESPACE}", discovered, *changes)]))
        else:
            lines += [_line(at, "INFO", change) for change in changes]
        routed.add(name)
    lines += _remove_stale(kong, routed, at)
    lines.append(_line(at, "INFO", f"Sync complete: {len(routed)} agent services registered"))
    return [line for _, block in sorted(earlier, key=lambda b: b[0]) for line in block] + lines


def _remove_stale(kong: KongWorld, routed: set[str], at: datetime) -> list[str]:
    """Kong services of agents whose Service is gone: routes first (Kong refuses otherwise), then the service."""
    lines = []
    static = {proxy[0] for proxy in STATIC_PROXIES}
    for service in kong.all("services", lambda s: (s.get("name") or "").startswith("agent-")):
        if service["name"] in routed or service["name"] in static:
            continue
        for route in kong.all("routes", lambda r: r.get("service") == {"id": service["id"]}):
            kong.delete("routes", route["id"])
            lines.append(_line(at, "INFO", f"Deleted route {route['name']} for service {service['name']}"))
        kong.delete("services", service["id"])
        lines.append(_line(at, "INFO", f"Removed stale service: {service['name']}"))
    return lines


def _running_container(pod: dict) -> dict | None:
    """The registry container of ``pod`` when it runs, else None."""
    for status in pod.get("status", {}).get("containerStatuses", []):
        if status["name"] == REGISTRY and "running" in status.get("state", {}):
            return status
    return None


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# ---- the registry in a scenario under construction ---------------------------------------------------

def registry_pod(cluster: "Cluster") -> dict | None:
    """The running k8s-service-registry pod of a scenario, if any."""
    for pod in cluster.of_kind("Pod", PLATFORM_NAMESPACE):
        if pod["metadata"].get("labels", {}).get("app") == REGISTRY and _running_container(pod):
            return pod
    return None


def _log_key(pod: dict) -> tuple[str, str, str, bool]:
    return (PLATFORM_NAMESPACE, pod["metadata"]["name"], REGISTRY, False)


def start_cluster_registry(cluster: "Cluster") -> None:
    """The registry pod started: its start lines become its log and the static proxies exist in Kong."""
    pod = registry_pod(cluster)
    if pod is None:
        return
    status = _running_container(pod)
    started = _parse(status["state"]["running"]["startedAt"])
    cluster.logs[_log_key(pod)] = "\n".join(start_lines(cluster.kong, status["image"], started)) + "\n"


def sync_cluster_registry(cluster: "Cluster", at: datetime) -> None:
    """A sync of the scenario's registry at ``at``, over the Services that existed then; Kong entities of a
    Service are dated from when the running registry first saw it. Nothing happens when no registry pod runs."""
    pod = registry_pod(cluster)
    if pod is None:
        return
    status = _running_container(pod)
    started = _parse(status["state"]["running"]["startedAt"])

    def first_seen(svc: dict) -> datetime:
        return max(_parse(svc["metadata"]["creationTimestamp"]), started) + FIRST_SEEN_AFTER

    services = [svc for svc in cluster.of_kind("Service", AGENTS_NAMESPACE)
                if _parse(svc["metadata"]["creationTimestamp"]) <= at]
    lines = sync(cluster.kong, services, routing_mode(status["image"]), at, first_seen)
    key = _log_key(pod)
    cluster.logs[key] = cluster.logs.get(key, "") + "\n".join(lines) + "\n"


class RegistryListener:
    """Runs the registry when the Deployment controller starts a new registry pod (a rollout, a restart):
    the static proxies and a sync against the Store's Services, written to the new pod's log."""

    def __init__(self, store: Store, kong: KongWorld, clock: Callable[[], datetime]):
        self.store, self.kong, self.clock = store, kong, clock

    def __call__(self, pod: dict) -> None:
        meta = pod["metadata"]
        if meta.get("namespace") != PLATFORM_NAMESPACE or meta.get("labels", {}).get("app") != REGISTRY:
            return
        status = _running_container(pod)
        if status is None:
            return
        now = self.clock()
        lines = start_lines(self.kong, status["image"], now)
        lines += sync(self.kong, self.store.list("v1", "Service", AGENTS_NAMESPACE), routing_mode(status["image"]), now)
        before = self.store.get_log(PLATFORM_NAMESPACE, meta["name"], REGISTRY) or ""
        self.store.set_log(PLATFORM_NAMESPACE, meta["name"], REGISTRY, before + "\n".join(lines) + "\n")
