"""The agent-chat 404 fix chain: label, re-sync the registry, remove stale deployments, clean records, verify.

Each step is its own plan with its own target, so a chain can be applied a step at a time or in one run
(``confirm="label/<svc>,restart-registry"``). The MongoDB step is :mod:`nasiko_nb.agentdb`'s plan.
"""
from __future__ import annotations

import pandas as pd
import requests

from nasiko_nb import agentdb, fixes, gateway
from nasiko_nb.checks.routing import AGENT_NAME_LABEL, AgentRouting, agent_routing
from nasiko_nb.cluster import Cluster
from nasiko_nb.fixes import Change, Plan
from nasiko_nb.rollouts import plan_restarts
from nasiko_nb.snapshot import Snapshot, take_snapshot

REGISTRY = "k8s-service-registry"
BUILD_WORKERS = ("nasiko-k8s-build-worker", "k8s-build-worker")   # the platform's code, the guide


def plan_label(routing: AgentRouting) -> list[Plan]:
    """Give the newest agent Service the agent-name label the label-routing registry reads."""
    service = routing.newest_service
    if service is None or AGENT_NAME_LABEL in (service["metadata"].get("labels") or {}):
        return []
    namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
    change = Change(verb="patch", patch_type="merge", path=f"/api/v1/namespaces/{namespace}/services/{name}",
                    resource=f"Service {namespace}/{name}", description=f"add label {AGENT_NAME_LABEL}={routing.agent}",
                    body={"metadata": {"labels": {AGENT_NAME_LABEL: routing.agent}}})
    return [Plan(fix="label-agent-service", target=f"label/{name}", changes=[change],
                 notes=["what the guide's fixed backend sets when it deploys an agent; the registry reads it on its "
                        "next sync (the restart step)"])]


def plan_kong_route(routing: AgentRouting, kong: dict, admin: str) -> list[Plan]:
    """Route the frontend's path to the newest agent Service in Kong, as the registry would have.

    When the registry made a Kong service for it (it routes by service name), only a route is added, and the
    service's plugins (cors, nasiko-auth, chat-logger) cover it. When there is none (no route, a skipped name),
    the Kong service is created with the plugins another agent's service has, so the agent is never exposed
    without nasiko-auth; with no such service to copy from, the plan is blocked.
    """
    service = routing.newest_service
    if routing.route is not None or service is None:
        return []
    namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
    route = {"name": f"{routing.agent}-route", "paths": [routing.expected_path], "strip_path": True}
    existing = next((s for s in kong.get("services") or [] if s.get("name") == name), None)
    changes, blocked = [], ""
    if existing is None:
        plugins = _agent_plugins(kong)
        changes.append(Change(verb="create", path="kong:POST /services", resource=f"Kong service {name}",
                              description=f"Kong service for Service {namespace}/{name}",
                              body={"name": name, "url": f"http://{name}.{namespace}.svc.cluster.local:80"}))
        changes += [Change(verb="create", path=f"kong:POST /services/{name}/plugins", resource=f"Kong plugin {p['name']}",
                           description=f"plugin {p['name']} as on the other agents' services", body=p) for p in plugins]
        if not any(p["name"] == "nasiko-auth" for p in plugins):
            blocked = ("no agent service in Kong carries the nasiko-auth plugin to copy: a route made here would "
                       "expose the agent without authentication")
    changes.append(Change(verb="create", path=f"kong:POST /services/{name}/routes", resource=f"Kong route {route['name']}",
                          description=f"route {routing.expected_path} to Kong service {name}", body=route))
    return [Plan(fix="add-kong-route", target=f"route/{routing.agent}", changes=changes, blocked=blocked,
                 notes=["a registry that prunes may remove on its next sync what it did not create: the lasting fix "
                        "is the label-routing registry (the label and restart steps)"],
                 executor=lambda _cluster, plan, progress: _create_in_kong(plan, admin, progress))]


def _agent_plugins(kong: dict) -> list[dict]:
    """Name and config of the plugins on an agent's Kong service (the registry gives every agent the same)."""
    agent_services = {s.get("id") for s in kong.get("services") or [] if str(s.get("name", "")).startswith("agent-")}
    seen: dict[str, dict] = {}
    for plugin in kong.get("plugins") or []:
        if (plugin.get("service") or {}).get("id") in agent_services and plugin.get("name") not in seen:
            seen[plugin["name"]] = {"name": plugin["name"], "config": plugin.get("config") or {}}
    return list(seen.values())


def _create_in_kong(plan: Plan, admin: str, progress: fixes.Progress) -> fixes.Outcome:
    entries = []
    with requests.Session() as session:
        session.trust_env = False
        for change in plan.changes:
            path = change.path.split(" ", 1)[1]
            try:
                response = session.post(f"{admin}{path}", json=change.body, timeout=gateway.TIMEOUT_S)
            except requests.RequestException as exc:
                response, reason = None, f"not reachable ({type(exc).__name__})"
            else:
                reason = f"HTTP {response.status_code} {response.text[:200]}"
            if response is None or response.status_code != 201:
                done = ", ".join(e["resource"] for e in entries) or "nothing"
                raise fixes.FixFailed(f"Kong admin API at {admin}: {change.resource} refused: {reason}; created before "
                                      f"it: {done}")
            entries.append(fixes.record(plan, change))
            entries[-1]["kong_id"] = response.json().get("id", "")
            progress(len(entries), len(plan.changes))
    return fixes.Outcome(plan, True, f"Kong now routes {plan.changes[-1].body['paths'][0]} "
                                     f"({len(entries)} object(s) created)", entries)


def plan_restart_registry(snap: Snapshot, namespace: str, timeout_s: float) -> list[Plan]:
    """Restart the service registry (it re-syncs Kong on start) and the build worker, then wait for both."""
    present = {d["metadata"]["name"] for d in snap.deployments if d["metadata"].get("namespace") == namespace}
    names = [REGISTRY] if REGISTRY in present else []
    names += [w for w in BUILD_WORKERS if w in present][:1]
    if not names:
        return []
    return [plan_restarts(namespace, names, timeout_s, target="restart-registry")]


def plan_remove_stale(routing: AgentRouting) -> list[Plan]:
    """Delete each older Deployment of the agent with its Service (the guide's step 2), newest kept."""
    plans = []
    for deployment in routing.stale_deployments:
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        changes = [Change(verb="delete", path=f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                          resource=f"Deployment {namespace}/{name}", body={"propagationPolicy": "Background"},
                          description="delete the old agent Deployment (its ReplicaSets and pods go with it)")]
        if any(s["metadata"]["name"] == name for s in routing.services):
            changes.append(Change(verb="delete", path=f"/api/v1/namespaces/{namespace}/services/{name}",
                                  resource=f"Service {namespace}/{name}", description="delete the old agent Service"))
        plans.append(Plan(fix="remove-stale-agent", target=name, changes=changes,
                          notes=[f"kept: the newest, {routing.newest_deployment_name}"]))
    return plans


def plan_clean_records(agent: str) -> tuple[pd.DataFrame, list[Plan]]:
    """The dry run of the MongoDB clean-up (counts per collection) and its plan; blocked, with the reason
    shown, when MongoDB cannot be reached from here. No agent (none deployed, or none readable): nothing."""
    if not agent:
        return agentdb.records_frame({}), []
    try:
        with agentdb.connect() as connection:
            counts, where = agentdb.count_records(connection, agent), connection.uri_summary
    except agentdb.AgentDbError as error:
        plan = agentdb.plan_clean_agent_records(agent, None, "(not connected)")
        plan.blocked = str(error)
        return agentdb.records_frame({}, agent), [plan]
    return agentdb.records_frame(counts, agent), [agentdb.plan_clean_agent_records(agent, counts, where)]


def verify_routing(cluster: Cluster, agent: str, namespace: str, kong_url: str, gateway_base: str,
                   frontend_path: str) -> pd.DataFrame:
    """After the chain, read again: the agent Service's labels, the route Kong has now, the gateway's answer
    to ``<frontend path>/health`` (three Kubernetes lists, the Kong lists and one HTTP request)."""
    snap = take_snapshot(cluster, namespaces=[namespace], kinds=("services", "endpoints", "deployments"),
                         cluster_kinds=())
    try:
        kong, route = gateway.read_kong(kong_url).as_params(), ""
    except gateway.GatewayError as error:
        kong, route = {}, f"Kong admin API not readable: {error}"
    routing = agent_routing(snap, kong, agent, frontend_path, namespace)
    service = routing.newest_service or {}
    answer = gateway.probe(gateway_base, f"{routing.expected_path}/health")
    return pd.DataFrame([
        {"check": "agent Service labels", "result": ", ".join(
            f"{k}={v}" for k, v in ((service.get("metadata") or {}).get("labels") or {}).items()) or "(no Service)"},
        {"check": f"Kong route for {routing.expected_path}", "result": route or routing.route_summary()},
        {"check": "gateway", "result": answer.summary()},
        {"check": "answered", "result": "yes" if answer.status == 200 else "no"},
    ])
