"""The registry runbooks (01, 02, 06, 11, 14) against the simulated platform and its fake DigitalOcean, end to end."""
import base64
import json
import os
import threading
import time

import pytest

from nasiko_nb.cli import main
from nasiko_nb.sim.server import Fault
from tests.runbook_runs import assert_no_secret_in, latest_record, run_runbook

EXPECTED_02 = {
    "healthy": set(),
    "registry-401-read-only-token": {"registry/read-only-token"},
    "registry-401-expired-token": {"registry/expired-token"},
    "registry-401-wrong-user": {"registry/wrong-user"},
    "registry-401-revoked-token": {"registry/invalid-token"},
    "registry-name-mismatch": {"registry/name-mismatch"},
}
PLATFORM_SECRETS = (("nasiko", "regcred"), ("buildkit", "regcred"), ("nasiko-agents", "agent-registry-credentials"))


run = run_runbook
record = latest_record


def secret_data(server):
    """The registry credentials (the decoded ``auth`` pairs) each platform secret holds."""
    data = {}
    for ns, name in PLATFORM_SECRETS:
        config = json.loads(base64.b64decode(server.store.get("v1", "Secret", ns, name)["data"][".dockerconfigjson"]))
        data[(ns, name)] = tuple(sorted((host, base64.b64decode(entry["auth"])) for host, entry in config["auths"].items()))
    return data


@pytest.mark.parametrize("platform", sorted(EXPECTED_02), indirect=True)
def test_registry_401_runbook_tells_the_causes_apart(platform, tmp_path):
    server, kubeconfig = platform
    assert run("02", kubeconfig, tmp_path) == 0
    result = record(tmp_path, "02-registry-401-unauthorized")
    codes = {f["code"] for f in result["findings"]}
    assert codes == EXPECTED_02[server.scenario], result["findings"]
    if codes and codes != {"registry/name-mismatch"}:   # a credential cause is reported on each platform secret
        assert sorted(f["resource"] for f in result["findings"]) == sorted(
            f"Secret {ns}/{name}" for ns, name in PLATFORM_SECRETS)
    assert result["changes"] == []
    assert_no_secret_in(tmp_path, server)


@pytest.mark.parametrize("platform", ["registry-401-read-only-token"], indirect=True)
def test_fix_chain_resets_credentials_and_cleans_up_the_failed_job(platform, tmp_path):
    server, kubeconfig = platform
    before = secret_data(server)
    assert run("02", kubeconfig, tmp_path, "dry_run", "false", "confirm", "nasiko-images",
               "confirm_cleanup", "nasiko-agents") == 0
    after = secret_data(server)
    assert all(after[key] != before[key] for key in before) and len(set(after.values())) == 1
    assert not [j for j in server.store.list("batch/v1", "Job", "nasiko-agents")
                if any(c["type"] == "Failed" for c in j.get("status", {}).get("conditions", []))]
    result = record(tmp_path, "02-registry-401-unauthorized")
    assert {c["fix"] for c in result["changes"]} == {"reset-registry-credentials", "delete-failed-jobs"}
    assert_no_secret_in(tmp_path, server)
    rerun = tmp_path / "after"
    assert run("02", kubeconfig, rerun) == 0
    assert record(rerun, "02-registry-401-unauthorized")["findings"] == []


def watch_secrets(server, stop: threading.Event, seen: list):
    """Read the secrets as often as possible during a reset: each must exist with a decodable config."""
    while not stop.is_set():
        for ns, name in PLATFORM_SECRETS:
            secret = server.store.get("v1", "Secret", ns, name)
            seen.append(json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"] != {})
        time.sleep(0.001)


@pytest.mark.parametrize("platform", ["registry-401-expired-token"], indirect=True)
def test_reset_never_leaves_a_moment_without_the_secrets(platform, tmp_path):
    server, kubeconfig = platform
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=watch_secrets, args=(server, stop, seen))
    watcher.start()
    try:
        assert run("11", kubeconfig, tmp_path, "dry_run", "false", "confirm", "nasiko-images") == 0
    finally:
        stop.set()
        watcher.join()
    assert seen and all(seen)
    result = record(tmp_path, "11-reset-registry-credentials")
    assert len(result["changes"]) == 3 and result["outcome"] == "changed"
    notebook = next(tmp_path.glob("*.ipynb")).read_text()
    assert "pull, push" in notebook   # the verification logged in with every secret
    assert_no_secret_in(tmp_path, server)


@pytest.mark.parametrize("platform", ["registry-401-revoked-token"], indirect=True)
def test_reset_failing_midway_puts_everything_back(platform, tmp_path, capsys):
    server, kubeconfig = platform
    before = secret_data(server)
    server.inject(Fault(500, r"/namespaces/nasiko-agents/secrets/agent-registry-credentials$", method="PUT"))
    assert run("11", kubeconfig, tmp_path, "dry_run", "false", "confirm", "nasiko-images") == 1
    err = capsys.readouterr().err
    assert "could not be replaced" in err and "restored to its previous credentials" in err
    assert secret_data(server) == before
    result = record(tmp_path, "11-reset-registry-credentials")
    assert result["outcome"] == "error"
    assert [(c["resource"], c["change"].startswith("rollback")) for c in result["changes"]] == [
        ("Secret nasiko/regcred", False), ("Secret buildkit/regcred", False),
        ("Secret buildkit/regcred", True), ("Secret nasiko/regcred", True)]   # every write is on record
    assert_no_secret_in(tmp_path, server)


@pytest.mark.parametrize("platform", ["registry-401-read-only-token"], indirect=True)
def test_reset_dry_run_and_wrong_confirm_change_nothing(platform, tmp_path):
    server, kubeconfig = platform
    before = secret_data(server)
    assert run("11", kubeconfig, tmp_path) == 0
    assert run("11", kubeconfig, tmp_path, "dry_run", "false", "confirm", "someone-elses-registry") == 2
    assert secret_data(server) == before


@pytest.mark.parametrize("platform", ["registry-secrets-inconsistent"], indirect=True)
def test_secret_management_flags_and_updates_one_secret(platform, tmp_path):
    server, kubeconfig = platform
    assert run("06", kubeconfig, tmp_path) == 0
    assert {f["code"] for f in record(tmp_path, "06-secret-management")["findings"]} == {
        "registry/credentials-inconsistent"}
    good = tmp_path / "config.json"
    good.write_bytes(base64.b64decode(server.store.get("v1", "Secret", "nasiko", "regcred")["data"][".dockerconfigjson"]))
    fixed = tmp_path / "fixed"
    assert run("06", kubeconfig, fixed, "secret", "nasiko-agents/agent-registry-credentials",
               "credentials_file", str(good), "dry_run", "false", "confirm", "agent-registry-credentials") == 0
    assert len(set(secret_data(server).values())) == 1
    assert record(fixed, "06-secret-management")["changes"][0]["resource"] == \
        "Secret nasiko-agents/agent-registry-credentials"
    assert_no_secret_in(fixed, server)


OWNER = "platform-admin@nasiko.example"


def owner_registry(server):
    return server.digitalocean.world.accounts[OWNER].registry


@pytest.mark.parametrize("platform", ["registry-name-mismatch"], indirect=True)
def test_name_mismatch_shows_both_options_and_recreates_on_confirm(platform, tmp_path):
    server, kubeconfig = platform
    assert run("01", kubeconfig, tmp_path) == 0
    result = record(tmp_path, "01-registry-name-mismatch")
    assert [(f["code"], f["message"]) for f in result["findings"]] == [
        ("registry/name-mismatch", "The platform uses registry 'nasiko-images' but the account's registry is 'my-registry'.")]
    notebook = next(tmp_path.glob("*.ipynb")).read_text()
    assert "--cloud-reg-name my-registry" in notebook                         # option 1
    assert "registry.digitalocean.com/nasiko-images/" in notebook and "Deployment" in notebook   # what still names it
    assert "delete the registry and ALL its images" in notebook and owner_registry(server).name == "my-registry"
    assert run("01", kubeconfig, tmp_path / "wrong", "dry_run", "false", "confirm", "nasiko-images") == 2
    assert owner_registry(server).name == "my-registry"
    assert run("01", kubeconfig, tmp_path / "applied", "dry_run", "false", "confirm", "my-registry") == 0
    assert owner_registry(server).name == "nasiko-images"
    assert [c["verb"] for c in record(tmp_path / "applied", "01-registry-name-mismatch")["changes"]] == ["delete", "create"]


@pytest.mark.parametrize("platform", ["healthy"], indirect=True)
def test_digitalocean_registry_lists_images_and_deletes_a_tag_on_confirm(platform, tmp_path):
    server, kubeconfig = platform
    registry = owner_registry(server)
    repository = next(name for name in registry.repositories if name.endswith("-agent"))
    [tag] = registry.repositories[repository][0].tags
    assert run("14", kubeconfig, tmp_path) == 0
    result = record(tmp_path, "14-digitalocean-registry")
    assert result["findings"] == []
    notebook = next(tmp_path.glob("*.ipynb")).read_text()
    assert repository in notebook and tag in notebook and "expires by" in notebook
    assert run("14", kubeconfig, tmp_path / "wrong", "repository", repository, "tag", tag, "dry_run", "false",
               "confirm", repository) == 2
    assert any(tag in m.tags for m in registry.repositories[repository])
    assert run("14", kubeconfig, tmp_path / "applied", "repository", repository, "tag", tag, "dry_run", "false",
               "confirm", f"{repository}:{tag}") == 0
    assert not any(tag in m.tags for m in owner_registry(server).repositories.get(repository, []))
    assert_no_secret_in(tmp_path / "applied", server)


def test_demo_mode_points_the_kernel_at_the_fake_digitalocean(tmp_path, monkeypatch):
    """`--demo` alone is enough: the CLI hands the scenario's DigitalOcean to the runbook, and takes it back."""
    for variable in ("DIGITALOCEAN_TOKEN", "NASIKO_DO_API_URL", "NASIKO_CA_BUNDLE", "NASIKO_REGISTRY_ENDPOINTS"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["run", "02", "--demo", "registry-401-wrong-user", "--output", str(tmp_path)]) == 0
    assert {f["code"] for f in record(tmp_path, "02-registry-401-unauthorized")["findings"]} == {"registry/wrong-user"}
    assert "DIGITALOCEAN_TOKEN" not in os.environ


@pytest.mark.parametrize("platform", ["registry-401-read-only-token"], indirect=True)
def test_reset_restarts_what_mounts_the_secrets_only_when_asked(platform, tmp_path):
    server, kubeconfig = platform

    def buildkitd_annotations():
        deployment = server.store.get("apps/v1", "Deployment", "buildkit", "buildkitd")
        return deployment["spec"]["template"]["metadata"].get("annotations") or {}

    assert run("11", kubeconfig, tmp_path / "plain", "dry_run", "false", "confirm", "nasiko-images") == 0
    assert "kubectl.kubernetes.io/restartedAt" not in buildkitd_annotations()
    assert run("11", kubeconfig, tmp_path / "restart", "dry_run", "false", "confirm", "nasiko-images",
               "restart_workloads", "true") == 0
    assert "kubectl.kubernetes.io/restartedAt" in buildkitd_annotations()
    changes = record(tmp_path / "restart", "11-reset-registry-credentials")["changes"]
    assert [c["resource"] for c in changes if c["fix"] == "restart-mounting-workloads"] == ["Deployment buildkit/buildkitd"]
