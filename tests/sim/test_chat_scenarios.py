"""The gateway behind every scenario: the service registry's sync of Kong, the agent-chat scenarios' answers
through the proxy, and re-syncs on a registry rollout driven by kubectl 1.32."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone

import pytest
import requests

from nasiko_nb import sim
from nasiko_nb.sim import SCENARIOS
from nasiko_nb.sim.chat_scenarios import CHAT_SCENARIOS
from nasiko_nb.sim.kong import KongWorld
from nasiko_nb.sim.scenarios import build
from nasiko_nb.sim.service_registry import (MODE_LABEL, MODE_SERVICE_NAME, SKIP_WORDS, routing_mode, start_lines,
                                            sync)

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
NOW = datetime(2026, 4, 2, 10, 0, tzinfo=timezone.utc)

#: scenario -> (agent the frontend calls, expected status of /agents/<agent>/health, expected Kong message)
EXPECTED = {
    "agent-chat-healthy": ("a2a-github-agent", 200, None),
    "agent-chat-route-by-deployment-name": ("a2a-github-agent", 404, "no Route matched with those values"),
    "agent-chat-missing-label": ("a2a-github-agent", 404, "no Route matched with those values"),
    "agent-chat-no-route": ("summarizer-agent", 404, "no Route matched with those values"),
    "agent-chat-no-endpoints": ("weather-agent", 503, "failure to get a peer from the ring-balancer"),
    "agent-chat-skipped-name": ("redis-helper-agent", 404, "no Route matched with those values"),
    "agent-chat-stale-deployments": ("weather-agent", 503, "failure to get a peer from the ring-balancer"),
}


def agent_service(name: str, labels: dict | None = None, cluster_ip: str = "10.245.0.40") -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "nasiko-agents", "labels": {"app": name, **(labels or {})},
                         "creationTimestamp": "2026-04-02T09:00:00Z"},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 5000}]}}


def kubectl_runner(server, tmp_path):
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str) -> str:
        done = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
                               *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def gateway(server, path: str) -> requests.Response:
    return requests.get(server.environment()["NASIKO_GATEWAY_URL"] + path, timeout=10)


def admin(server, path: str) -> requests.Response:
    return requests.get(server.environment()["NASIKO_KONG_ADMIN_URL"] + path, timeout=10)


def registry_log(server) -> str:
    [pod] = [p for p in server.store.list("v1", "Pod", "nasiko", label_selector="app=k8s-service-registry")]
    return server.store.get_log("nasiko", pod["metadata"]["name"], "k8s-service-registry")


# ---- the registry's sync --------------------------------------------------------------------------------

def test_routing_mode_follows_the_registry_version():
    assert routing_mode("registry.digitalocean.com/nasiko-images/k8s-service-registry:v1.4.2") == MODE_SERVICE_NAME
    assert routing_mode("registry.digitalocean.com/nasiko-images/k8s-service-registry:v1.5.0") == MODE_LABEL
    assert routing_mode("123456789012.dkr.ecr.us-east-1.amazonaws.com/nasiko-images:k8s-service-registry-v1.5.0") \
        == MODE_LABEL
    assert routing_mode("docker.io/someone/nasiko-service-registry:latest") == MODE_SERVICE_NAME


def test_sync_routes_by_label_or_by_service_name():
    services = [agent_service("agent-weather-agent-1775120000", {"agent-name": "weather-agent"}),
                agent_service("agent-a2a-github-agent-1775110000")]
    by_label = KongWorld()
    lines = sync(by_label, services, MODE_LABEL, NOW)
    routes = {r["name"]: r for r in by_label.all("routes")}
    assert routes["agent-weather-agent-1775120000-route"]["paths"] == ["/agents/weather-agent"]
    assert routes["agent-a2a-github-agent-1775110000-route"]["paths"] == ["/agents/agent-a2a-github-agent-1775110000"]
    assert all(r["strip_path"] is True for r in routes.values())
    assert "2026-04-02 10:00:00 INFO Discovered agent service: agent-weather-agent-1775120000 at " \
           "agent-weather-agent-1775120000.nasiko-agents.svc.cluster.local:80 (route: /agents/weather-agent)" in lines
    assert "2026-04-02 10:00:00 WARNING Service agent-a2a-github-agent-1775110000 has no agent-name label; routing " \
           "by service name" in lines
    service = by_label.get("services", "agent-weather-agent-1775120000")
    assert (service["protocol"], service["host"], service["port"]) == \
        ("http", "agent-weather-agent-1775120000.nasiko-agents.svc.cluster.local", 80)
    plugins = by_label.all("plugins", lambda p: p["service"] == {"id": service["id"]})
    assert sorted(p["name"] for p in plugins) == ["chat-logger", "cors", "nasiko-auth"]

    by_name = KongWorld()
    lines = sync(by_name, services, MODE_SERVICE_NAME, NOW)
    assert by_name.get("routes", "agent-weather-agent-1775120000-route")["paths"] == \
        ["/agents/agent-weather-agent-1775120000"]
    assert not [line for line in lines if "WARNING" in line]


def test_sync_skips_database_words_and_removes_stale_services():
    kong = KongWorld()
    skipped = [agent_service(f"agent-{word}-helper-1775120000") for word in SKIP_WORDS]
    headless = agent_service("agent-plain-1775120000", cluster_ip="None")
    kept = agent_service("agent-gone-1775120000")
    sync(kong, [kept], MODE_SERVICE_NAME, NOW)
    assert kong.find("routes", "agent-gone-1775120000-route") is not None
    lines = sync(kong, [*skipped, headless], MODE_SERVICE_NAME, NOW)
    for word in SKIP_WORDS:
        assert f"2026-04-02 10:00:00 INFO Skipping service agent-{word}-helper-1775120000: name contains '{word}'" \
            in lines
    assert kong.all("services") == [] and kong.all("routes") == [] and kong.all("plugins") == []
    assert "2026-04-02 10:00:00 INFO Removed stale service: agent-gone-1775120000" in lines
    assert lines[-1] == "2026-04-02 10:00:00 INFO Sync complete: 0 agent services registered"


def test_registry_start_logs_its_mode_and_registers_static_proxies():
    kong = KongWorld()
    lines = start_lines(kong, "registry.digitalocean.com/nasiko-images/k8s-service-registry:v1.5.0", NOW)
    assert "2026-04-02 10:00:00 INFO Routing mode: agent-name label" in lines
    paths = sorted(p for r in kong.all("routes") for p in r["paths"])
    assert paths == ["/api", "/app", "/auth", "/n8n", "/router", "~/$"]
    assert start_lines(kong, "x/k8s-service-registry:v1.4.2", NOW)[3].endswith("Routing mode: service name")
    assert len(kong.all("routes")) == 6                     # a restart finds them in place


def test_every_scenario_has_kong_state_from_its_registry():
    for name in ("healthy", "image-pull-dns", "ecr-healthy"):
        cluster = build(name)
        routes = {r["name"]: r for r in cluster.kong.all("routes")}
        for agent in cluster.agents:
            assert routes[f"{agent.deployment}-route"]["paths"] == [f"/agents/{agent.deployment}"], name
        log = next(text for (ns, pod, container, _), text in cluster.logs.items()
                   if container == "k8s-service-registry")
        assert "INFO Routing mode: service name" in log
        assert log.splitlines()[-1].endswith(f"INFO Sync complete: {len(cluster.agents)} agent services registered")


# ---- the agent-chat scenarios ---------------------------------------------------------------------------

def test_chat_scenarios_are_listed():
    assert set(EXPECTED) == set(CHAT_SCENARIOS)
    for name, description in CHAT_SCENARIOS.items():
        assert SCENARIOS[name] == description


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gateway_answer_for_the_agent(name):
    agent, status, message = EXPECTED[name]
    cluster_broken = build(name).broken
    assert bool(cluster_broken) == (name != "agent-chat-healthy")
    with sim.start(name) as server:
        answer = gateway(server, f"/agents/{agent}/health")
        assert answer.status_code == status, answer.text
        if status == 200:
            assert answer.json() == {"status": "healthy", "agent": agent}
            assert answer.headers["Via"] == "kong/3.4.2"
        else:
            assert answer.json() == {"message": message}
            assert answer.headers["Server"] == "kong/3.4.2" and "X-Kong-Response-Latency" in answer.headers


def test_route_by_deployment_name_answers_at_the_service_name():
    with sim.start("agent-chat-route-by-deployment-name") as server:
        [service] = [s for s in server.store.list("v1", "Service", "nasiko-agents")
                     if s["metadata"]["name"].startswith("agent-a2a-github-agent-")]
        name = service["metadata"]["name"]
        assert "agent-name" not in service["metadata"]["labels"]
        assert gateway(server, f"/agents/{name}/health").json() == {"status": "healthy", "agent": "a2a-github-agent"}
        assert admin(server, f"/routes/{name}-route").json()["paths"] == [f"/agents/{name}"]
        assert "INFO Routing mode: service name" in registry_log(server)


def test_missing_label_is_told_apart_by_the_registry_log():
    cluster = build("agent-chat-missing-label")
    [service] = [s for s in cluster.of_kind("Service", "nasiko-agents") if s["metadata"]["name"].startswith("agent-a2a")]
    log = next(text for (ns, pod, container, _), text in cluster.logs.items() if container == "k8s-service-registry")
    assert "INFO Routing mode: agent-name label" in log
    assert f"WARNING Service {service['metadata']['name']} has no agent-name label; routing by service name" in log
    weather = cluster.kong.all("routes", lambda r: r["name"].startswith("agent-weather-agent-"))
    assert [r["paths"] for r in weather] == [["/agents/weather-agent"]]


def test_skipped_and_stale_scenarios_state():
    skipped = build("agent-chat-skipped-name")
    log = next(text for (_, _, container, _), text in skipped.logs.items() if container == "k8s-service-registry")
    redis = next(a for a in skipped.agents if a.name == "redis-helper-agent")
    assert f"INFO Skipping service {redis.deployment}: name contains 'redis'" in log
    assert skipped.kong.find("services", redis.deployment) is None

    stale = build("agent-chat-stale-deployments")
    routes = stale.kong.all("routes", lambda r: r["paths"] == ["/agents/weather-agent"])
    assert len(routes) == 2
    oldest = min(routes, key=lambda r: r["created_at"])
    old_service = stale.kong.get("services", oldest["service"]["id"])["name"]
    assert f"Deployment nasiko-agents/{old_service}" in stale.broken
    assert stale.kong.match("GET", "", "/agents/weather-agent/health")[0]["id"] == oldest["id"]


def test_scenario_server_serves_its_gateway():
    with sim.start("image-pull-dns") as server:
        env = server.environment()
        assert env["NASIKO_KONG_ADMIN_URL"] == server.kong.admin_url
        assert env["NASIKO_GATEWAY_URL"] == server.kong.proxy_url
        assert gateway(server, "/api/v1/agents").json()["service"] == "nasiko-backend"
        assert admin(server, "/").json()["hostname"].startswith("kong-gateway-")


def test_ecr_scenario_serves_its_gateway():
    with sim.start("ecr-healthy") as server:
        env = server.environment()
        assert {"NASIKO_KONG_ADMIN_URL", "NASIKO_GATEWAY_URL", "NASIKO_AWS_ENDPOINT_URL"} <= set(env)
        assert admin(server, "/").json()["version"] == "3.4.2"
        routes = admin(server, "/routes").json()["data"]
        assert any(r["paths"][0].startswith("/agents/agent-weather-agent-") for r in routes)
    with pytest.raises(requests.ConnectionError):
        requests.get(env["NASIKO_GATEWAY_URL"], timeout=2)


# ---- re-syncs after a registry rollout ------------------------------------------------------------------

@needs_kubectl
def test_label_then_rollout_restart_routes_the_agent(tmp_path):
    with sim.start("agent-chat-missing-label") as server:
        kubectl = kubectl_runner(server, tmp_path)
        service = next(name for name in kubectl("get", "services", "-n", "nasiko-agents", "-o", "name").split()
                       if "a2a-github-agent" in name).split("/", 1)[1]
        assert gateway(server, "/agents/a2a-github-agent/health").status_code == 404
        kubectl("label", "service", service, "-n", "nasiko-agents", "agent-name=a2a-github-agent")
        assert gateway(server, "/agents/a2a-github-agent/health").status_code == 404     # until the registry runs
        before = {p["metadata"]["name"] for p in server.store.list("v1", "Pod", "nasiko",
                                                                   label_selector="app=k8s-service-registry")}
        kubectl("rollout", "restart", "deployment", "k8s-service-registry", "-n", "nasiko")
        kubectl("rollout", "status", "deployment", "k8s-service-registry", "-n", "nasiko", "--timeout=30s")
        answer = gateway(server, "/agents/a2a-github-agent/health")
        assert answer.status_code == 200 and answer.json() == {"status": "healthy", "agent": "a2a-github-agent"}
        assert admin(server, f"/routes/{service}-route").json()["paths"] == ["/agents/a2a-github-agent"]
        logs = kubectl("logs", "-n", "nasiko", "-l", "app=k8s-service-registry", "--tail=20")
        assert f"Discovered agent service: {service} at {service}.nasiko-agents.svc.cluster.local:80 " \
               "(route: /agents/a2a-github-agent)" in logs
        assert f"Updated route {service}-route: /agents/a2a-github-agent" in logs
        [pod] = server.store.list("v1", "Pod", "nasiko", label_selector="app=k8s-service-registry")
        assert pod["metadata"]["name"] not in before
        assert "Routing mode: agent-name label" in registry_log(server)


@needs_kubectl
def test_rollout_restart_resyncs_a_stalled_registry(tmp_path):
    with sim.start("agent-chat-no-route") as server:
        kubectl = kubectl_runner(server, tmp_path)
        assert "Task exception was never retrieved" in kubectl("logs", "-n", "nasiko", "-l",
                                                               "app=k8s-service-registry", "--tail=5")
        assert gateway(server, "/agents/summarizer-agent/health").status_code == 404
        kubectl("rollout", "restart", "deployment/k8s-service-registry", "-n", "nasiko")
        assert gateway(server, "/agents/summarizer-agent/health").json() == \
            {"status": "healthy", "agent": "summarizer-agent"}


@needs_kubectl
def test_upgrading_the_registry_and_removing_a_stale_deployment(tmp_path):
    with sim.start("agent-chat-route-by-deployment-name") as server:
        kubectl = kubectl_runner(server, tmp_path)
        image = kubectl("get", "deployment", "k8s-service-registry", "-n", "nasiko", "-o",
                        "jsonpath={.spec.template.spec.containers[0].image}")
        kubectl("set", "image", "deployment/k8s-service-registry", "-n", "nasiko",
                f"k8s-service-registry={image.replace('v1.4.2', 'v1.5.0')}")
        assert "Routing mode: agent-name label" in registry_log(server)
        services = [s["metadata"]["name"] for s in server.store.list("v1", "Service", "nasiko-agents")]
        weather = next(s for s in services if "weather-agent" in s)
        kubectl("label", "service", weather, "-n", "nasiko-agents", "agent-name=weather-agent")
        kubectl("delete", "deployment", next(s for s in services if "a2a-github" in s), "-n", "nasiko-agents")
        kubectl("delete", "service", next(s for s in services if "a2a-github" in s), "-n", "nasiko-agents")
        kubectl("rollout", "restart", "deployment", "k8s-service-registry", "-n", "nasiko")
        assert gateway(server, "/agents/weather-agent/health").status_code == 200
        names = [s["name"] for s in admin(server, "/services").json()["data"]]
        assert not [n for n in names if "a2a-github" in n]
        assert "Removed stale service: agent-a2a-github-agent-" in registry_log(server)
