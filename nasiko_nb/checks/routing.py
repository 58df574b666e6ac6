"""Agent chat through Kong: routing/* findings, from the snapshot plus what Kong's admin API holds.

The frontend calls ``/agents/<agent>``; the platform's service registry routes ``/agents/<service>``
(``agent-<agent>-<ts>``) unless it reads the Service's ``agent-name`` label (the guide's fix). So, per
agent: which Services and Deployments it has, which Kong route (if any) matches the frontend's path and
where that route sends, and whether that Service has ready endpoints. Without Kong's data (``params["kong"]``,
e.g. in the triage) the detector says nothing: a missing label alone is how the platform's code deploys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from nasiko_nb.checks import detector
from nasiko_nb.checks.build import name_of, namespace_of
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.snapshot import Snapshot

AGENTS_NAMESPACE = "nasiko-agents"
AGENT_NAME_LABEL = "agent-name"
FRONTEND_PATH = "/agents/{agent}"
SKIPPED_WORDS = ("postgres", "redis", "mongodb", "mysql", "kafka", "etcd", "headless")
_AGENT_OBJECT = re.compile(r"^agent-(?P<agent>.+)-(?P<ts>\d{9,})$")
_HOST = re.compile(r"^(?P<service>[a-z0-9-]+)\.(?P<namespace>[a-z0-9-]+)(?:\.svc(?:\.cluster\.local)?)?$")


def _ts(obj: dict) -> int:
    found = _AGENT_OBJECT.match(name_of(obj))
    return int(found["ts"]) if found else 0


def _belongs(obj: dict, agent: str) -> bool:
    found = _AGENT_OBJECT.match(name_of(obj))
    return (found is not None and found["agent"] == agent) or \
        ((obj.get("metadata") or {}).get("labels") or {}).get(AGENT_NAME_LABEL) == agent


def agents_in(snapshot: Snapshot, namespace: str = AGENTS_NAMESPACE, kong: dict | None = None) -> list[str]:
    """Agents with a Deployment or Service in the namespace, or a Kong route under /agents/ (for the picker)."""
    names = set()
    for obj in (*snapshot.deployments, *snapshot.services):
        if namespace_of(obj) != namespace:
            continue
        label = ((obj.get("metadata") or {}).get("labels") or {}).get(AGENT_NAME_LABEL)
        found = _AGENT_OBJECT.match(name_of(obj))
        if label or found:
            names.add(label or found["agent"])
    for route in (kong or {}).get("routes") or []:
        for path in route.get("paths") or []:
            if path.startswith("/agents/") and path.count("/") == 2 and len(path) > len("/agents/"):
                segment = path.rsplit("/", 1)[1]
                found = _AGENT_OBJECT.match(segment)
                names.add(found["agent"] if found else segment)
    return sorted(names)


def _path_matches(route_path: str, request_path: str) -> bool:
    """Kong's prefix match on path segments' text (``/agents/x`` matches ``/agents/x/health``)."""
    return request_path == route_path or request_path.startswith(route_path.rstrip("/") + "/") or route_path == "/"


@dataclass
class AgentRouting:
    """Everything about one agent's chat path, read from the snapshot and Kong."""

    agent: str
    expected_path: str
    services: list[dict] = field(default_factory=list)       # newest first
    deployments: list[dict] = field(default_factory=list)    # newest first
    route: dict | None = None                                 # the route matching the frontend's path
    routed_service: str = ""                                  # the k8s Service that route sends to
    agent_routes: list[dict] = field(default_factory=list)    # routes that send to any of the agent's Services

    @property
    def newest_service(self) -> dict | None:
        return self.services[0] if self.services else None

    @property
    def newest_deployment_name(self) -> str:
        return name_of(self.deployments[0]) if self.deployments else ""

    @property
    def stale_deployments(self) -> list[dict]:
        return self.deployments[1:]

    def route_summary(self) -> str:
        if self.route is None:
            paths = sorted(p for r in self.agent_routes for p in r.get("paths") or [])
            return f"no route matches {self.expected_path}" + (f"; the agent is routed at {', '.join(paths)}" if paths else "")
        return f"{', '.join(self.route.get('paths') or [])} -> Service {self.routed_service or '(not an agent Service)'}"


def agent_routing(snapshot: Snapshot, kong: dict, agent: str, frontend_path: str = FRONTEND_PATH,
                  namespace: str = AGENTS_NAMESPACE) -> AgentRouting:
    routing = AgentRouting(agent, frontend_path.format(agent=agent))
    routing.services = sorted((s for s in snapshot.services if namespace_of(s) == namespace and _belongs(s, agent)),
                              key=_ts, reverse=True)
    routing.deployments = sorted((d for d in snapshot.deployments if namespace_of(d) == namespace and _belongs(d, agent)),
                                 key=_ts, reverse=True)
    targets = {s.get("id"): _service_target(s) for s in kong.get("services") or []}
    own = {name_of(s) for s in routing.services}
    candidates = [r for r in kong.get("routes") or [] if any(_path_matches(p, routing.expected_path)
                                                              for p in r.get("paths") or [])]
    # Kong's choice: the longest matching path; among equals, the route created first
    longest = min(candidates, key=lambda r: (-max(len(p) for p in r.get("paths") or [""]), r.get("created_at") or 0,
                                             r.get("name") or ""), default=None)
    if longest is not None and longest.get("paths") != ["/"]:
        routing.route = longest
        target = targets.get((longest.get("service") or {}).get("id"))
        routing.routed_service = target[1] if target and target[0] == namespace else ""
    routing.agent_routes = [r for r in kong.get("routes") or []
                            if (targets.get((r.get("service") or {}).get("id")) or ("", ""))[1] in own]
    return routing


def _service_target(service: dict) -> tuple[str, str]:
    """(namespace, name) of the Kubernetes Service a Kong service's host names."""
    found = _HOST.match(service.get("host") or "")
    return (found["namespace"], found["service"]) if found else ("", "")


def _ready_addresses(snapshot: Snapshot, namespace: str, service: str) -> int:
    endpoints = snapshot.get("Endpoints", namespace, service) or {}
    return sum(len(subset.get("addresses") or []) for subset in endpoints.get("subsets") or [])


def label_routing_registry(snapshot: Snapshot) -> bool | None:
    """Whether the registry routes by the agent-name label (its start-up log says so), None when unknown."""
    for (namespace, pod, _, _), text in snapshot.logs.items():
        if pod.startswith("k8s-service-registry") and text:
            if "Routing mode: agent-name label" in text:
                return True
            if "Routing mode: service name" in text:
                return False
    return None


@detector("routing")
def detect(snapshot: Snapshot, params: dict) -> list[Finding]:
    kong = params.get("kong")
    if kong is None:
        return []
    namespace = params.get("agents_namespace") or AGENTS_NAMESPACE
    agents = [params["agent"]] if params.get("agent") else agents_in(snapshot, namespace)
    findings = []
    for agent in agents:
        findings += _agent_findings(snapshot, agent_routing(snapshot, kong, agent, params.get("frontend_path") or
                                                            FRONTEND_PATH, namespace), params, namespace)
    return findings


def _agent_findings(snapshot: Snapshot, routing: AgentRouting, params: dict, namespace: str) -> list[Finding]:
    agent, probe = routing.agent, params.get("probe") or ""
    heard = f"\ngateway: {probe}" if probe else ""
    if not routing.services:
        return [make_finding("routing/agent-not-deployed", f"Agent {agent}",
                             f"no Service agent-{agent}-<ts> or with label {AGENT_NAME_LABEL}={agent} in {namespace}; "
                             f"Deployments: {', '.join(name_of(d) for d in routing.deployments) or 'none'}{heard}",
                             agent=agent, namespace=namespace)]
    findings = []
    newest = routing.newest_service
    service = name_of(newest)
    if len(routing.deployments) > 1:
        routed_to = f"; the frontend's route sends to {routing.routed_service}" if routing.routed_service else ""
        findings.append(make_finding("routing/stale-deployments", f"Agent {agent}",
                                     f"Deployments newest first: {', '.join(name_of(d) for d in routing.deployments)}"
                                     f"{routed_to}", agent=agent, count=len(routing.deployments),
                                     newest=routing.newest_deployment_name))
    word = next((w for w in SKIPPED_WORDS if w in service), None)
    if word and routing.route is None:
        findings.append(make_finding("routing/skipped-name", f"Service {namespace}/{service}",
                                     f"the service registry skips Services whose name contains {word!r}{heard}",
                                     service=service, word=word))
        return findings
    label = ((newest.get("metadata") or {}).get("labels") or {}).get(AGENT_NAME_LABEL)
    if routing.route is None:
        if routing.agent_routes:
            paths = sorted(p for r in routing.agent_routes for p in r.get("paths") or [])
            by_label = label_routing_registry(snapshot)
            evidence = (f"Kong routes for the agent's Services: {', '.join(paths)}; the frontend calls "
                        f"{routing.expected_path}{heard}")
            findings.append(make_finding("routing/route-path-mismatch", f"Agent {agent}", evidence, agent=agent,
                                         route_path=", ".join(paths), expected_path=routing.expected_path))
            if label is None and by_label is not False:
                mode = ("the registry routes by this label" if by_label else
                        "the guide's fixed registry routes by this label")
                findings.append(make_finding("routing/missing-agent-name-label", f"Service {namespace}/{service}",
                                             f"labels: {(newest.get('metadata') or {}).get('labels') or {}}; {mode}",
                                             service=service))
        else:
            findings.append(make_finding("routing/no-route", f"Service {namespace}/{service}",
                                         f"no Kong service or route sends to {service}; routes matching "
                                         f"{routing.expected_path}: none{heard}", service=service))
        return findings
    target = routing.routed_service or service
    if _ready_addresses(snapshot, namespace, target) == 0:
        exists = snapshot.get("Service", namespace, target) is not None
        evidence = (f"route {', '.join(routing.route.get('paths') or [])} sends to Service {target}, which "
                    + ("has no ready endpoint" if exists else "does not exist any more") + heard)
        findings.append(make_finding("routing/no-endpoints", f"Service {namespace}/{target}", evidence, service=target))
    return findings


def focus_agent(snapshot: Snapshot, findings: list[Finding], agent: str = "",
                namespace: str = AGENTS_NAMESPACE) -> str:
    """The agent to look at closely: the one asked for, else the first with a routing finding, else the first."""
    if agent:
        return agent
    known = agents_in(snapshot, namespace)
    for finding in findings:
        for name in known:
            if finding.code.startswith("routing/") and (f"Agent {name}" == finding.resource
                                                        or f"agent-{name}-" in finding.resource):
                return name
    return known[0] if known else ""


def overview_frame(snapshot: Snapshot, kong: dict, frontend_path: str = FRONTEND_PATH,
                   namespace: str = AGENTS_NAMESPACE) -> pd.DataFrame:
    """One row per agent: its Services and Deployments and what Kong does with the frontend's path."""
    rows = []
    for agent in agents_in(snapshot, namespace, kong):
        routing = agent_routing(snapshot, kong, agent, frontend_path, namespace)
        rows.append({"agent": agent, "deployments": len(routing.deployments), "services": len(routing.services),
                     "frontend path": routing.expected_path, "kong": routing.route_summary()})
    return pd.DataFrame(rows, columns=["agent", "deployments", "services", "frontend path", "kong"])


def agent_objects_frame(snapshot: Snapshot, routing: AgentRouting, namespace: str = AGENTS_NAMESPACE) -> pd.DataFrame:
    """The agent's Deployments and Services, newest first, with labels and ready endpoints, then what Kong
    does with the frontend's path."""
    rows = []
    for deployment in routing.deployments:
        status = deployment.get("status") or {}
        rows.append({"kind": "Deployment", "name": name_of(deployment),
                     "ready": f"{status.get('readyReplicas', 0)}/{(deployment.get('spec') or {}).get('replicas', 1)}",
                     "labels": ", ".join(f"{k}={v}" for k, v in ((deployment.get("metadata") or {}).get("labels") or {}).items())})
    for service in routing.services:
        rows.append({"kind": "Service", "name": name_of(service),
                     "ready": f"{_ready_addresses(snapshot, namespace, name_of(service))} endpoint(s)",
                     "labels": ", ".join(f"{k}={v}" for k, v in ((service.get("metadata") or {}).get("labels") or {}).items())})
    rows.append({"kind": "Kong", "name": routing.expected_path, "ready": "", "labels": routing.route_summary()})
    return pd.DataFrame(rows, columns=["kind", "name", "ready", "labels"])
