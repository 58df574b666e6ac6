"""Runbook 15 (AWS ECR) against the ECR scenarios: the simulated cluster plus moto standing for AWS, end to end."""
import base64
import json
import threading
import time

import pytest

from nasiko_nb.redact import fingerprint
from nasiko_nb.sim.platform import ECR_HOST, REGISTRY_USER
from tests.runbook_runs import assert_no_secret_in as assert_no_secret_in_record
from tests.runbook_runs import latest_record, run_runbook

RUNBOOK = "15-aws-ecr"
EXPECTED_15 = {
    "ecr-healthy": set(),
    # the refresher recreated regcred 2 h ago with a new login: the agents' secret is stale and differs
    "ecr-agent-secret-stale": {"registry/ecr-secret-stale", "registry/credentials-inconsistent"},
    "ecr-refresher-missing": {"registry/ecr-refresher-missing", "registry/ecr-secret-stale"},
    "ecr-refresher-failing": {"registry/ecr-refresher-failing"},
    "ecr-repository-missing": {"registry/repository-missing"},
}
AGENT_SECRET = ("nasiko-agents", "agent-registry-credentials")


def run(kubeconfig, output, *params):
    return run_runbook("15", kubeconfig, output, *params)


def record(output):
    return latest_record(output, RUNBOOK)


def assert_no_secret_in(output, server):
    assert_no_secret_in_record(output, server, users=(REGISTRY_USER, "AWS"))


def ecr_password(server, namespace, name):
    config = json.loads(base64.b64decode(server.store.get("v1", "Secret", namespace, name)["data"][".dockerconfigjson"]))
    user, _, password = base64.b64decode(config["auths"][ECR_HOST]["auth"]).decode().partition(":")
    assert user == "AWS"
    return password


@pytest.mark.parametrize("platform", sorted(EXPECTED_15), indirect=True)
def test_ecr_runbook_names_each_scenario_cause(platform, tmp_path):
    server, kubeconfig = platform
    assert run(kubeconfig, tmp_path) == 0
    result = record(tmp_path)
    assert {f["code"] for f in result["findings"]} == EXPECTED_15[server.scenario], result["findings"]
    assert result["changes"] == [] and result["side_effects"] == "mutating"
    assert_no_secret_in(tmp_path, server)


@pytest.mark.parametrize("platform", ["ecr-repository-missing"], indirect=True)
def test_missing_repository_is_the_new_agents(platform, tmp_path):
    server, kubeconfig = platform
    run(kubeconfig, tmp_path)
    [finding] = record(tmp_path)["findings"]
    assert finding["resource"] == f"Repository {ECR_HOST}/summarizer-agent"


def watch_agent_secret(server, stop: threading.Event, seen: list):
    while not stop.is_set():
        seen.append(ECR_HOST in base64.b64decode(
            server.store.get("v1", "Secret", *AGENT_SECRET)["data"][".dockerconfigjson"]).decode())
        time.sleep(0.001)


@pytest.mark.parametrize("platform", ["ecr-agent-secret-stale"], indirect=True)
def test_refresh_now_replaces_the_stale_secret_in_place(platform, tmp_path):
    server, kubeconfig = platform
    before = server.store.get("v1", "Secret", *AGENT_SECRET)
    old_password = ecr_password(server, *AGENT_SECRET)
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=watch_agent_secret, args=(server, stop, seen))
    watcher.start()
    try:
        assert run(kubeconfig, tmp_path, "dry_run", "false", "confirm", ECR_HOST) == 0
    finally:
        stop.set()
        watcher.join()
    assert seen and all(seen)                       # the secret never went missing
    after = server.store.get("v1", "Secret", *AGENT_SECRET)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]   # replaced, not recreated
    new_password = ecr_password(server, *AGENT_SECRET)
    assert fingerprint(new_password) != fingerprint(old_password)
    assert new_password in server.secret_values()   # moto's fresh login
    result = record(tmp_path)
    assert result["outcome"] == "changed"
    assert "Secret nasiko-agents/agent-registry-credentials" in {c["resource"] for c in result["changes"]}
    assert_no_secret_in(tmp_path, server)
    rerun = tmp_path / "after"
    assert run(kubeconfig, rerun) == 0
    assert record(rerun)["findings"] == []


@pytest.mark.parametrize("platform", ["ecr-refresher-missing"], indirect=True)
def test_wrong_confirm_changes_nothing(platform, tmp_path):
    server, kubeconfig = platform
    before = {key: ecr_password(server, *key) for key in (("nasiko", "regcred"), AGENT_SECRET)}
    assert run(kubeconfig, tmp_path, "dry_run", "false", "confirm", "999999999999.dkr.ecr.us-east-1.amazonaws.com") == 2
    assert {key: ecr_password(server, *key) for key in before} == before
    assert_no_secret_in(tmp_path, server)


@pytest.mark.parametrize("platform", ["ecr-agent-secret-stale"], indirect=True)
def test_refresher_extension_names_the_agent_secret(platform, tmp_path):
    server, kubeconfig = platform
    run(kubeconfig, tmp_path)
    notebook = next(tmp_path.glob("*.ipynb")).read_text()
    assert "kubectl patch cronjob ecr-credential-refresher -n default --type=json" in notebook
    assert "create secret docker-registry agent-registry-credentials -n nasiko-agents" in notebook


@pytest.mark.parametrize("platform", ["ecr-healthy"], indirect=True)
def test_delete_a_tag_on_confirm(platform, tmp_path):
    server, kubeconfig = platform
    tag = "nasiko-web-v1.4.2"
    assert run(kubeconfig, tmp_path, "repository", "nasiko-images", "tag", tag,
               "dry_run", "false", "confirm_delete", f"nasiko-images:{tag}") == 0
    assert [c["fix"] for c in record(tmp_path)["changes"]] == ["delete-images"]
    rerun = tmp_path / "after"
    run(kubeconfig, rerun)
    assert tag not in next(rerun.glob("*.ipynb")).read_text()
