"""Scenarios of the guide's "Agent Chat Returns 404 Not Found": what Kong routes, and what stands behind a route.

The frontend calls ``/agents/<agent>``. Whether the gateway answers depends on the service registry's version
(the platform's code routes ``/agents/<service-name>``, the guide's fix v1.5.0 the Service's ``agent-name``
label), on the labels the backend put on the agent Services, on whether the registry ran since an agent
appeared, and on the agent's pods. As elsewhere, pods are derived by :mod:`nasiko_nb.sim.kubelet` and Kong's
state by the registry's own sync (:mod:`nasiko_nb.sim.service_registry`); only program output is written here.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from nasiko_nb.sim.platform import (Agent, Cluster, add_agent, agent_deployment, platform_image, platform_log,
                                    push_image, restart_deployment)
from nasiko_nb.sim.service_registry import (AGENT_NAME_LABEL, FIXED_TAG, REGISTRY, start_cluster_registry,
                                            sync_cluster_registry)

FIXED_COMPONENTS = ("nasiko-backend", REGISTRY)     # the two components the guide's fix changed
GUIDE_AGENT = "a2a-github-agent"                    # the guide's example agent
CRASHING_AGENT = "weather-agent"
NEW_AGENT = "summarizer-agent"
SKIPPED_AGENT = "redis-helper-agent"

AGENT_CRASH_LOG = (
    "Traceback (most recent call last):\n"
    '  File "/app/src/__main__.py", line 41, in <module>\n    main()\n'
    '  File "/app/src/__main__.py", line 22, in main\n'
    '    raise ValueError("OPENAI_API_KEY environment variable not set")\n'
    "ValueError: OPENAI_API_KEY environment variable not set\n")
_KONG_TIMEOUT = "HTTPConnectionPool(host='kong-gateway.nasiko', port=8001): Read timed out. (read timeout=10)"


def _fixed_image(cluster: Cluster, component: str) -> str:
    return platform_image(component, cluster.registry_type).replace("v1.4.2", FIXED_TAG)


def _push_fixed_images(cluster: Cluster, at: datetime) -> None:
    """The guide's Step 1 half done: the fixed backend and registry images built and pushed."""
    for component in FIXED_COMPONENTS:
        push_image(cluster.world, _fixed_image(cluster, component), at)


def _upgrade_platform(cluster: Cluster, ago: timedelta) -> datetime:
    """The guide's Step 1: the fixed images pushed, then the backend and the registry rolled out ``ago``.
    Agents deployed since got the agent-name label from the new backend. Returns when the rollout happened."""
    at = cluster.now - ago
    _push_fixed_images(cluster, at - timedelta(minutes=6))
    sync_cluster_registry(cluster, at - timedelta(seconds=30))       # the old registry's last run
    for component in FIXED_COMPONENTS:
        deploy = cluster.find("Deployment", "nasiko", component)
        deploy["spec"]["template"]["spec"]["containers"][0]["image"] = _fixed_image(cluster, component)
        restart_deployment(cluster, deploy, at, revision=2)
    for pod in cluster.of_kind("Pod", "nasiko"):
        if pod["metadata"]["labels"].get("app") == "nasiko-backend":
            cluster.logs[("nasiko", pod["metadata"]["name"], "nasiko-backend", False)] = \
                platform_log("nasiko-backend", "nasiko-backend", at)
    start_cluster_registry(cluster)
    for agent in cluster.agents:
        if agent.deployed >= at:
            _label(cluster, agent)
    return at


def _label(cluster: Cluster, agent: Agent) -> None:
    labels = cluster.find("Service", "nasiko-agents", agent.deployment)["metadata"].setdefault("labels", {})
    labels[AGENT_NAME_LABEL] = agent.name


def _agent(cluster: Cluster, name: str) -> Agent:
    return next(a for a in cluster.agents if a.name == name)


def _new_agent(cluster: Cluster, name: str, ago: timedelta) -> Agent:
    """An agent uploaded (built, then deployed two minutes later) ``ago``, through the fixed backend."""
    agent = Agent(name, cluster.now - ago - timedelta(minutes=2), cluster.now - ago, cluster.agent_registry)
    add_agent(cluster, agent)
    cluster.agents.append(agent)
    _label(cluster, agent)
    return agent


def _crash_loop(cluster: Cluster, deploy: dict, started: datetime) -> list[str]:
    """Restart the agent Deployment's pods crash-looping since ``started``; returns what broke."""
    restart_deployment(cluster, deploy, started, crashing={"agent": 1})
    name = deploy["metadata"]["name"]
    broken = [f"Deployment nasiko-agents/{name}"]
    for pod in cluster.of_kind("Pod", "nasiko-agents"):
        if pod["metadata"]["labels"].get("app") == name:
            for previous in (False, True):
                cluster.logs[("nasiko-agents", pod["metadata"]["name"], "agent", previous)] = AGENT_CRASH_LOG
            broken.append(f"Pod nasiko-agents/{pod['metadata']['name']}")
    return broken


def healthy(cluster: Cluster) -> None:
    """Upgraded an hour ago, before both agents were deployed: both are labelled and routed by agent name."""
    _upgrade_platform(cluster, timedelta(hours=1))


def route_by_deployment_name(cluster: Cluster) -> None:
    """The platform's code: the registry routes every agent at /agents/<service-name>. The fixed images were
    pushed an hour ago but never rolled out."""
    _push_fixed_images(cluster, cluster.now - timedelta(hours=1))
    cluster.broken.append(f"Deployment nasiko/{REGISTRY}")
    cluster.broken += [f"Service nasiko-agents/{agent.deployment}" for agent in cluster.agents]


def missing_label(cluster: Cluster) -> None:
    """Upgraded 35 minutes ago: weather-agent (deployed since) is labelled, a2a-github-agent (deployed 41 minutes
    ago) is not, so the fixed registry falls back to its Service name and warns."""
    _upgrade_platform(cluster, timedelta(minutes=35))
    cluster.broken.append(f"Service nasiko-agents/{_agent(cluster, GUIDE_AGENT).deployment}")


def no_route(cluster: Cluster) -> None:
    """The registry's loop died 25 minutes ago on a Kong read timeout (the process, and its /health, live on);
    summarizer-agent, deployed 9 minutes ago, never got a Kong service or route."""
    _upgrade_platform(cluster, timedelta(hours=1))
    stalled = cluster.now - timedelta(minutes=25)
    sync_cluster_registry(cluster, stalled)
    pod = next(p for p in cluster.of_kind("Pod", "nasiko") if p["metadata"]["labels"].get("app") == REGISTRY)
    key = ("nasiko", pod["metadata"]["name"], REGISTRY, False)
    died = (stalled + timedelta(seconds=40)).strftime("%Y-%m-%d %H:%M:%S")
    cluster.logs[key] += (
        f"{died} ERROR Error cleaning up stale services: {_KONG_TIMEOUT}\n"
        "Task exception was never retrieved\n"
        "future: <Task finished name='Task-2' coro=<registry_loop() done, defined at /app/registry.py:598> "
        f"exception=ReadTimeout(ReadTimeoutError(\"{_KONG_TIMEOUT}\"))>\n")
    cluster.registry_syncs = False
    agent = _new_agent(cluster, NEW_AGENT, timedelta(minutes=9))
    cluster.broken += [f"Deployment nasiko/{REGISTRY}", f"Service nasiko-agents/{agent.deployment}"]


def no_endpoints(cluster: Cluster) -> None:
    """weather-agent's pod has crash-looped since its deploy: routed right, but no ready endpoint."""
    _upgrade_platform(cluster, timedelta(hours=1))
    agent = _agent(cluster, CRASHING_AGENT)
    cluster.broken += _crash_loop(cluster, agent_deployment(cluster, agent.name), agent.deployed)


def skipped_name(cluster: Cluster) -> None:
    """redis-helper-agent, deployed 12 minutes ago: the registry skips every Service whose name says 'redis'."""
    _upgrade_platform(cluster, timedelta(hours=1))
    agent = _new_agent(cluster, SKIPPED_AGENT, timedelta(minutes=12))
    cluster.broken.append(f"Service nasiko-agents/{agent.deployment}")


def stale_deployments(cluster: Cluster) -> None:
    """weather-agent's first upload (2 hours ago) crash-looped; it was re-uploaded 26 minutes ago without
    deleting the first Deployment and Service (the guide's Step 2 skipped). Both Services carry
    agent-name=weather-agent, so both routes have path /agents/weather-agent and Kong takes the older one."""
    _upgrade_platform(cluster, timedelta(hours=3))
    old = _new_agent(cluster, CRASHING_AGENT, timedelta(hours=2))
    cluster.remove(cluster.find("Job", "nasiko-agents", old.job))        # ttlSecondsAfterFinished: 3600
    deploy = cluster.find("Deployment", "nasiko-agents", old.deployment)
    cluster.broken += [*_crash_loop(cluster, deploy, old.deployed), f"Service nasiko-agents/{old.deployment}"]


CHAT_SCENARIOS: dict[str, str] = {
    "agent-chat-healthy": "Backend and service registry upgraded to the guide's fix (v1.5.0) before both agents "
                          "were deployed: Services labelled agent-name, Kong routes /agents/<agent>, the gateway "
                          "answers 200.",
    "agent-chat-route-by-deployment-name": "The registry runs the platform's code (v1.4.2): every agent is routed "
                                           "at /agents/<service-name>, so /agents/a2a-github-agent gets Kong's 404 "
                                           "(the fixed v1.5.0 images are pushed, never rolled out).",
    "agent-chat-missing-label": "Registry v1.5.0 (logs 'Routing mode: agent-name label') but a2a-github-agent's "
                                "Service predates the upgrade and has no agent-name label: routed by service name, "
                                "/agents/a2a-github-agent gets 404.",
    "agent-chat-no-route": "The registry's sync loop died 25 minutes ago on a Kong read timeout (pod still Ready): "
                           "summarizer-agent, deployed 9 minutes ago, has no Kong service or route: 404.",
    "agent-chat-no-endpoints": "weather-agent's pod crash-loops (OPENAI_API_KEY not set): its route is right but "
                               "its Service has no ready endpoint: the gateway answers 503.",
    "agent-chat-skipped-name": "redis-helper-agent's Service name contains 'redis', which the registry skips "
                               "(logged): no Kong route, 404.",
    "agent-chat-stale-deployments": "weather-agent re-uploaded without deleting its first, crash-looping Deployment "
                                    "and Service: two routes share /agents/weather-agent, Kong picks the older "
                                    "one: 503.",
}

CHAT_BUILDERS: dict[str, Callable[[Cluster], None]] = {
    "agent-chat-healthy": healthy,
    "agent-chat-route-by-deployment-name": route_by_deployment_name,
    "agent-chat-missing-label": missing_label,
    "agent-chat-no-route": no_route,
    "agent-chat-no-endpoints": no_endpoints,
    "agent-chat-skipped-name": skipped_name,
    "agent-chat-stale-deployments": stale_deployments,
}
