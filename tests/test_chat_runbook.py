"""07-agent-chat-404 against the agent-chat scenarios: the cause told apart, and the fix chain through the gateway."""
from __future__ import annotations

import pytest
import requests

from tests.mongo_wire import ScriptedMongo
from tests.runbook_runs import assert_no_secret_in, latest_record, run_runbook

RUNBOOK = "07-agent-chat-404"
EXPECTED_07 = {
    "agent-chat-healthy": set(),
    "agent-chat-route-by-deployment-name": {"routing/route-path-mismatch"},
    "agent-chat-missing-label": {"routing/route-path-mismatch", "routing/missing-agent-name-label"},
    "agent-chat-no-route": {"routing/no-route"},
    "agent-chat-no-endpoints": {"routing/no-endpoints"},
    "agent-chat-skipped-name": {"routing/skipped-name"},
    "agent-chat-stale-deployments": {"routing/stale-deployments", "routing/no-endpoints"},
}
AGENT = {"agent-chat-route-by-deployment-name": "a2a-github-agent", "agent-chat-missing-label": "a2a-github-agent",
         "agent-chat-no-route": "summarizer-agent", "agent-chat-skipped-name": "redis-helper-agent",
         "agent-chat-stale-deployments": "weather-agent"}


def health(server, agent: str) -> int:
    return requests.get(f"{server.kong.proxy_url}/agents/{agent}/health", timeout=5).status_code


def agent_services(server, agent: str) -> list[str]:
    """The agent's Services, newest first."""
    names = [s["metadata"]["name"] for s in server.store.list("v1", "Service", "nasiko-agents")
             if s["metadata"]["name"].startswith(f"agent-{agent}-")]
    return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1]), reverse=True)


@pytest.mark.parametrize("platform", sorted(EXPECTED_07), indirect=True)
def test_the_cause_is_told_apart(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("07", kubeconfig, tmp_path) == 0
    result = latest_record(tmp_path, RUNBOOK)
    assert {f["code"] for f in result["findings"]} == EXPECTED_07[server.scenario]
    assert result["changes"] == []
    notebook = next(tmp_path.glob("*.ipynb")).read_text()
    assert "GET http://127.0.0.1:" in notebook        # the gateway was asked as the frontend asks it
    assert_no_secret_in(tmp_path, server)


def chain(scenario: str, server) -> str:
    """The confirm that fixes the scenario: which steps of the chain, in the runbook's order."""
    agent = AGENT[scenario]
    if scenario == "agent-chat-missing-label":
        return f"label/{agent_services(server, agent)[0]},restart-registry"
    if scenario == "agent-chat-stale-deployments":
        return f"{agent_services(server, agent)[1]},restart-registry"
    return f"route/{agent}"


@pytest.mark.parametrize("platform", sorted(AGENT), indirect=True)
def test_the_fix_chain_makes_the_gateway_answer(platform, tmp_path):
    server, kubeconfig = platform
    agent = AGENT[server.scenario]
    assert health(server, agent) in (404, 503)
    assert run_runbook("07", kubeconfig, tmp_path / "dry", "agent", agent) == 0 and health(server, agent) != 200
    confirm = chain(server.scenario, server)
    assert run_runbook("07", kubeconfig, tmp_path / "go", "agent", agent, "dry_run", "false", "confirm", confirm) == 0
    assert health(server, agent) == 200
    result = latest_record(tmp_path / "go", RUNBOOK)
    assert {c["target"] for c in result["changes"]} == set(confirm.split(","))
    notebook = next((tmp_path / "go").glob("*.ipynb")).read_text()
    assert f"GET {server.kong.proxy_url}/agents/{agent}/health: HTTP 200" in notebook     # the verify step
    assert_no_secret_in(tmp_path / "go", server)


@pytest.mark.parametrize("platform", ["agent-chat-skipped-name"], indirect=True)
def test_a_route_made_by_hand_keeps_the_auth_plugin(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("07", kubeconfig, tmp_path, "dry_run", "false", "confirm", "route/redis-helper-agent") == 0
    admin = server.kong.admin_url
    service = agent_services(server, "redis-helper-agent")[0]
    plugins = {p["name"] for p in requests.get(f"{admin}/services/{service}/plugins", timeout=5).json()["data"]}
    assert {"nasiko-auth", "cors", "chat-logger"} <= plugins


@pytest.mark.parametrize("platform", ["agent-chat-route-by-deployment-name"], indirect=True)
def test_a_typo_in_the_chain_changes_nothing(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("07", kubeconfig, tmp_path, "dry_run", "false", "confirm",
                       "route/a2a-github-agent,restart-registy") == 2
    assert health(server, "a2a-github-agent") == 404
    assert latest_record(tmp_path, RUNBOOK)["changes"] == []


@pytest.mark.parametrize("platform", ["agent-chat-stale-deployments"], indirect=True)
def test_mongodb_records_counted_then_deleted_over_the_wire(platform, tmp_path, monkeypatch):
    server, kubeconfig = platform
    counts = {"registry": 1, "upload-status": 3, "agent_builds": 2, "agent_deployments": 2, "agent_permissions": 0}

    def count(command: dict) -> dict:
        found = counts[command["aggregate"]]
        return {"cursor": {"id": 0, "ns": f"nasiko.{command['aggregate']}",
                           "firstBatch": [{"_id": 1, "n": found}] if found else []}}

    def delete(command: dict) -> dict:
        deleted, counts[command["delete"]] = counts[command["delete"]], 0
        return {"n": deleted}

    with ScriptedMongo() as mongo:
        mongo.on("aggregate", count)
        mongo.on("delete", delete)
        monkeypatch.setenv("NASIKO_MONGODB_URI", mongo.uri)
        assert run_runbook("07", kubeconfig, tmp_path / "dry", "agent", "weather-agent") == 0
        assert not [c for c in mongo.commands if "delete" in c]
        dry = next((tmp_path / "dry").glob("*.ipynb")).read_text()
        assert "delete 3 document(s) with {agent_name: \\\"weather-agent\\\"}" in dry
        assert run_runbook("07", kubeconfig, tmp_path / "go", "agent", "weather-agent", "dry_run", "false",
                           "confirm", "weather-agent") == 0
        deletes = [(c["delete"], c["deletes"][0]["q"]) for c in mongo.commands if "delete" in c]
    assert deletes == [("registry", {"$or": [{"id": "weather-agent"}, {"name": "weather-agent"}]}),
                       ("upload-status", {"agent_name": "weather-agent"}),
                       ("agent_builds", {"agent_id": "weather-agent"}),
                       ("agent_deployments", {"agent_id": "weather-agent"})]
    result = latest_record(tmp_path / "go", RUNBOOK)
    assert [c["resource"] for c in result["changes"]] == ["MongoDB nasiko.registry", "MongoDB nasiko.upload-status",
                                                          "MongoDB nasiko.agent_builds", "MongoDB nasiko.agent_deployments"]
    for path in (tmp_path / "go").iterdir():
        assert mongo.password not in path.read_text()
