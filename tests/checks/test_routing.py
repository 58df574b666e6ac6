"""routing/* on hand-made snapshots and Kong states: each cause told apart from the others."""
from __future__ import annotations

import pytest

from nasiko_nb.checks import run_checks
from nasiko_nb.checks.routing import agent_routing, agents_in, focus_agent, label_routing_registry
from nasiko_nb.snapshot import Snapshot

NS = "nasiko-agents"


def service(name, labels=None):
    return {"kind": "Service", "metadata": {"name": name, "namespace": NS, "labels": {"app": name, **(labels or {})}},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 5000}]}}


def endpoints(name, ready=1):
    return {"kind": "Endpoints", "metadata": {"name": name, "namespace": NS},
            "subsets": [{"addresses": [{"ip": f"10.244.0.{i + 2}"} for i in range(ready)]}] if ready else []}


def deployment(name):
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": NS}, "spec": {"replicas": 1},
            "status": {"readyReplicas": 1}}


def kong_for(*routes):
    """routes: (service name, path); the Kong service's host names the agent Service like the registry does."""
    services = [{"id": f"id-{svc}", "name": svc, "host": f"{svc}.{NS}.svc.cluster.local", "port": 80}
                for svc in dict.fromkeys(svc for svc, _ in routes)]
    return {"services": services, "routes": [{"id": f"r-{i}", "name": f"{svc}-route", "paths": [path],
                                               "service": {"id": f"id-{svc}"}} for i, (svc, path) in enumerate(routes)],
            "plugins": []}


def registry_log(mode):
    return {("nasiko", "k8s-service-registry-7c9d-x2", "registry", False): f"INFO Routing mode: {mode}\n"}


def codes(objects, kong, logs=None, **params):
    snap = Snapshot.from_objects(objects, logs=logs or {})
    return sorted(f.code for f in run_checks(snap, {"kong": kong, **params}, families=["routing"]))


SVC = "agent-weather-agent-1766140572"
OLD = "agent-weather-agent-1766000000"


def test_without_kong_data_nothing_is_said():
    snap = Snapshot.from_objects([service(SVC), deployment(SVC), endpoints(SVC)])
    assert run_checks(snap, {}, families=["routing"]) == []


@pytest.mark.parametrize("objects,kong,logs,expected", [
    ([service(SVC, {"agent-name": "weather-agent"}), deployment(SVC), endpoints(SVC)],
     kong_for((SVC, "/agents/weather-agent")), None, []),
    ([service(SVC), deployment(SVC), endpoints(SVC)], kong_for((SVC, f"/agents/{SVC}")),
     registry_log("service name"), ["routing/route-path-mismatch"]),
    ([service(SVC), deployment(SVC), endpoints(SVC)], kong_for((SVC, f"/agents/{SVC}")),
     registry_log("agent-name label"), ["routing/missing-agent-name-label", "routing/route-path-mismatch"]),
    ([service(SVC), deployment(SVC), endpoints(SVC)], kong_for(), None, ["routing/no-route"]),
    ([service(SVC, {"agent-name": "weather-agent"}), deployment(SVC), endpoints(SVC, ready=0)],
     kong_for((SVC, "/agents/weather-agent")), None, ["routing/no-endpoints"]),
    ([deployment(SVC)], kong_for(), None, ["routing/agent-not-deployed"]),
], ids=["healthy", "route by deployment name", "label registry without label", "no route", "no endpoints",
        "no service"])
def test_each_cause(objects, kong, logs, expected):
    assert codes(objects, kong, logs, agent="weather-agent") == expected


def test_skipped_name_is_its_own_cause():
    redis = "agent-redis-helper-agent-1766140572"
    assert codes([service(redis), deployment(redis), endpoints(redis)], kong_for(),
                 agent="redis-helper-agent") == ["routing/skipped-name"]


def test_stale_deployments_and_the_route_to_the_old_service():
    objects = [service(SVC, {"agent-name": "weather-agent"}), deployment(SVC), endpoints(SVC),
               service(OLD), deployment(OLD), endpoints(OLD, ready=0)]
    kong = kong_for((OLD, "/agents/weather-agent"))
    assert codes(objects, kong, agent="weather-agent") == ["routing/no-endpoints", "routing/stale-deployments"]
    routing = agent_routing(Snapshot.from_objects(objects), kong, "weather-agent")
    assert routing.newest_deployment_name == SVC and [d["metadata"]["name"] for d in routing.stale_deployments] == [OLD]
    assert routing.routed_service == OLD


def test_longest_prefix_wins_and_the_root_route_does_not_count():
    objects = [service(SVC, {"agent-name": "weather-agent"}), deployment(SVC), endpoints(SVC)]
    kong = kong_for((SVC, "/agents/weather-agent"), ("nasiko-web", "/"))
    kong["services"][1]["host"] = "nasiko-web.nasiko.svc.cluster.local"
    assert codes(objects, kong, agent="weather-agent") == []
    only_root = kong_for(("nasiko-web", "/"))
    assert codes(objects, only_root, agent="weather-agent") == ["routing/no-route"]


def test_a_custom_frontend_path_and_every_agent_at_once():
    objects = [service(SVC), deployment(SVC), endpoints(SVC)]
    kong = kong_for((SVC, f"/agents/{SVC}"))
    assert codes(objects, kong, frontend_path="/agents/agent-{agent}-1766140572") == []
    snap = Snapshot.from_objects(objects)
    findings = run_checks(snap, {"kong": kong}, families=["routing"])
    assert sorted(f.code for f in findings) == ["routing/missing-agent-name-label", "routing/route-path-mismatch"]
    assert focus_agent(snap, findings) == "weather-agent"


def test_registry_mode_from_its_log():
    assert label_routing_registry(Snapshot.from_objects([], logs=registry_log("agent-name label"))) is True
    assert label_routing_registry(Snapshot.from_objects([], logs=registry_log("service name"))) is False
    assert label_routing_registry(Snapshot.from_objects([])) is None


def test_agents_listed_from_deployments_services_and_kong_routes():
    snap = Snapshot.from_objects([deployment(SVC), service("agent-summarizer-agent-1766140999")])
    kong = kong_for(("nasiko-web", "/"), (OLD, "/agents/translator-agent"), (OLD, "/agents/agent-faq-agent-1766000001"),
                    (OLD, "/agents/x/health"))
    assert agents_in(snap) == ["summarizer-agent", "weather-agent"]
    assert agents_in(snap, kong=kong) == ["faq-agent", "summarizer-agent", "translator-agent", "weather-agent"]
