"""Registry scenarios: the cluster and its simulated DigitalOcean tell the same story.

Each registry-401 scenario's failed build Job is derived from DOWorld (push refused), and the fake
DigitalOcean's token service answers the Secrets' credentials the way that scenario says it should.
"""
from __future__ import annotations

import base64
import json
import socket
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml

from nasiko_nb import sim
from nasiko_nb.providers.registry_v2 import RegistryClient
from nasiko_nb.sim.kubelet import docker_credentials
from nasiko_nb.sim.platform import REGISTRY_USER
from nasiko_nb.sim.scenarios import build
from tests.paths import SAMPLES
from tests.secrets_check import leaked_in
from tests.sim.test_scenarios import assert_consistent

HOST = "registry.digitalocean.com"
FAILED_PUSH = ["registry-401-read-only-token", "registry-401-expired-token", "registry-401-wrong-user",
               "registry-401-revoked-token", "registry-name-mismatch"]
PLATFORM_SECRETS = [("nasiko", "regcred"), ("buildkit", "regcred"), ("nasiko-agents", "agent-registry-credentials")]
MESSAGES = SAMPLES


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def secret_token(objects: list[dict], namespace: str, name: str) -> str:
    secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["namespace"] == namespace
                  and o["metadata"]["name"] == name)
    user, token = docker_credentials(secret)[HOST]
    assert user == token      # DigitalOcean's docker-config shape: auth = base64(token:token)
    return token


def failed_job(cluster) -> tuple[dict, list[dict]]:
    [job] = [j for j in cluster.of_kind("Job", "nasiko-agents")
             if any(c["type"] == "Failed" for c in j["status"].get("conditions", []))]
    pods = [p for p in cluster.of_kind("Pod", "nasiko-agents")
            if p["metadata"]["labels"].get("job-name") == job["metadata"]["name"]]
    return job, pods


def expected_push_error(image: str) -> str:
    """The push-401 line of the shared samples, for ``image`` instead of the sample's."""
    if MESSAGES.exists():
        sample = next(e["log"] for e in yaml.safe_load(MESSAGES.read_text())["build_logs"]
                      if e["code"] == "build/push-unauthorized")
    else:
        sample = ("error: failed to solve: failed to push registry.digitalocean.com/nasiko-images/a2a-github-agent:"
                  "v1766140572: failed to authorize: failed to fetch oauth token: unexpected status from GET request"
                  " to https://api.digitalocean.com/v2/registry/auth?scope=repository%3Anasiko-images%2Fa2a-github-"
                  "agent%3Apull%2Cpush&service=registry.digitalocean.com: 401 Unauthorized")
    repository, tag = image.split("/", 1)[1].rsplit(":", 1)
    name = repository.split("/", 1)[1]
    return (sample.replace("a2a-github-agent:v1766140572", f"{name}:{tag}")
            .replace("a2a-github-agent%3A", f"{name}%3A"))


@pytest.mark.parametrize("name", FAILED_PUSH)
def test_failed_push_build_job(name):
    cluster = build(name)
    assert_consistent(cluster.objects)
    job, pods = failed_job(cluster)
    assert job["metadata"]["name"].startswith("job-summarizer-agent-") and job["spec"]["backoffLimit"] == 1
    assert job["status"]["failed"] == 2 and "succeeded" not in job["status"] and not job["status"].get("active")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    first, second = sorted(pods, key=lambda p: p["status"]["startTime"])
    first_end = parse_time(first["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])
    assert parse_time(second["status"]["startTime"]) >= first_end + timedelta(seconds=10)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    image = next(a for a in args if a.startswith("type=image,")).split("name=", 1)[1].split(",", 1)[0]
    assert image.startswith("registry.digitalocean.com/nasiko-images/summarizer-agent:v")
    for pod in pods:
        [status] = pod["status"]["containerStatuses"]
        assert status["name"] == "buildkit-client"
        assert status["state"]["terminated"]["exitCode"] == 1 and status["state"]["terminated"]["reason"] == "Error"
        assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        log = cluster.logs[("nasiko-agents", pod["metadata"]["name"], "buildkit-client", False)]
        assert log.rstrip("\n").splitlines()[-1] == expected_push_error(image)
        assert ("nasiko-agents", pod["metadata"]["name"], "buildkit-client", True) not in cluster.logs  # never restarted
    events = [e for e in cluster.objects if e["kind"] == "Event" and e["involvedObject"]["uid"] == job["metadata"]["uid"]]
    assert sorted(e["reason"] for e in events) == ["BackoffLimitExceeded", "SuccessfulCreate", "SuccessfulCreate"]
    assert next(e for e in events if e["reason"] == "BackoffLimitExceeded")["type"] == "Warning"
    # the agents built and deployed before the credentials broke keep running
    agents = [p for p in cluster.of_kind("Pod", "nasiko-agents") if p["metadata"]["labels"].get("app", "").startswith("agent-")]
    assert len(agents) == 2 and all(p["status"]["phase"] == "Running" for p in agents)


def test_baseline_registry_matches_the_cluster():
    cluster = build("healthy")
    registry = cluster.digitalocean.accounts[REGISTRY_USER].registry
    assert (registry.name, registry.region) == ("nasiko-images", "fra1")
    for deploy in cluster.of_kind("Deployment"):
        for container in deploy["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith(f"{HOST}/"):
                repository, tag = container["image"].split("/", 2)[2].rsplit(":", 1)
                assert any(tag in m.tags and m.size_bytes > 0 for m in registry.repositories[repository])
    tokens = {secret_token(cluster.objects, ns, name) for ns, name in PLATFORM_SECRETS}
    [token] = tokens
    issued = cluster.digitalocean.tokens[token]
    assert issued.read_write and issued.kind == "registry" and issued.account == REGISTRY_USER
    created = parse_time(next(o for o in cluster.objects if o["kind"] == "Secret"
                              and o["metadata"]["name"] == "regcred")["metadata"]["creationTimestamp"])
    assert issued.expires_at - created == timedelta(days=365)
    assert token in sim.SECRET_VALUES and cluster.digitalocean_token in sim.SECRET_VALUES


def test_expired_token_is_inferred_from_age_only():
    cluster = build("registry-401-expired-token")
    for ns, name in PLATFORM_SECRETS:
        secret = cluster.find("Secret", ns, name)
        assert not secret["metadata"].get("annotations")
        assert cluster.now - parse_time(secret["metadata"]["creationTimestamp"]) > timedelta(days=30)
    token = cluster.digitalocean.tokens[secret_token(cluster.objects, "nasiko-agents", "agent-registry-credentials")]
    assert token.expires_at < cluster.now and not token.revoked


def test_secrets_inconsistent_builds_still_push():
    cluster = build("registry-secrets-inconsistent")
    assert not [j for j in cluster.of_kind("Job", "nasiko-agents") if not j["status"].get("succeeded")]
    regcred = {secret_token(cluster.objects, ns, "regcred") for ns in ("nasiko", "buildkit")}
    agents = secret_token(cluster.objects, "nasiko-agents", "agent-registry-credentials")
    assert len(regcred) == 1 and agents not in regcred
    assert all(cluster.digitalocean.tokens[t].usable(cluster.now) for t in (*regcred, agents))


# what DigitalOcean's token service grants agent-registry-credentials on nasiko-images/<agent> (None: 401)
TOKEN_SERVICE = {
    "healthy": {"pull", "push"},
    "registry-401-read-only-token": {"pull"},
    "registry-401-expired-token": None,
    "registry-401-revoked-token": None,
    "registry-401-wrong-user": set(),
    "registry-name-mismatch": set(),
    "registry-secrets-inconsistent": {"pull", "push"},
}


@pytest.mark.parametrize("name", sorted(TOKEN_SERVICE))
def test_token_service_answers_the_secret_credentials(name):
    with sim.start(name) as server:
        env = server.environment()
        token = secret_token(server.store.list("v1", "Secret"), "nasiko-agents", "agent-registry-credentials")
        registry_url = env["NASIKO_REGISTRY_ENDPOINTS"].split("=", 1)[1]
        client = RegistryClient(registry_url, username=token, password=token, verify=env["NASIKO_CA_BUNDLE"])
        check = client.check_access("nasiko-images/summarizer-agent", actions=("pull", "push"))
        expected = TOKEN_SERVICE[name]
        assert check.authenticated == (expected is not None), check.detail
        if expected is not None:
            assert set(check.granted) == expected
        direct = requests.get(f"{env['NASIKO_DO_API_URL']}/v2/registry/auth", auth=(token, token),
                              params={"service": HOST, "scope": "repository:nasiko-images/summarizer-agent:pull,push"},
                              verify=env["NASIKO_CA_BUNDLE"], timeout=10)
        assert direct.status_code == (401 if expected is None else 200)
        assert not leaked_in(check.detail, values=server.secret_values())


def test_name_mismatch_account_has_only_my_registry():
    with sim.start("registry-name-mismatch") as server:
        env = server.environment()
        headers = {"Authorization": f"Bearer {env['DIGITALOCEAN_TOKEN']}"}
        answer = requests.get(f"{env['NASIKO_DO_API_URL']}/v2/registry", headers=headers,
                              verify=env["NASIKO_CA_BUNDLE"], timeout=10)
        assert answer.status_code == 200 and answer.json()["registry"]["name"] == "my-registry"
        assert server.digitalocean.world.find_registry("nasiko-images") is None
        assert env["NASIKO_PLATFORM_REGISTRY"] == "registry.digitalocean.com/nasiko-images"
        images = {c["image"] for d in server.store.list("apps/v1", "Deployment", "nasiko-agents")
                  for c in d["spec"]["template"]["spec"]["containers"]}
        assert images and all(i.startswith("registry.digitalocean.com/nasiko-images/") for i in images)


def test_environment_reaches_the_fake_digitalocean():
    server = sim.start("healthy")
    try:
        env = server.environment()
        assert set(env) == {"DIGITALOCEAN_TOKEN", "NASIKO_DO_API_URL", "NASIKO_CA_BUNDLE",
                            "NASIKO_REGISTRY_ENDPOINTS", "NASIKO_PLATFORM_REGISTRY",
                            "NASIKO_KONG_ADMIN_URL", "NASIKO_GATEWAY_URL"}
        assert env["NASIKO_REGISTRY_ENDPOINTS"].startswith("registry.digitalocean.com=https://127.0.0.1:")
        account = requests.get(f"{env['NASIKO_DO_API_URL']}/v2/account", verify=env["NASIKO_CA_BUNDLE"], timeout=10,
                               headers={"Authorization": f"Bearer {env['DIGITALOCEAN_TOKEN']}"})
        assert account.json()["account"]["email"] == REGISTRY_USER
        app_secrets = server.store.get("v1", "Secret", "nasiko", "app-secrets")
        assert base64.b64decode(app_secrets["data"]["do_token"]).decode() == env["DIGITALOCEAN_TOKEN"]
        deploy = next(d for d in server.store.list("apps/v1", "Deployment", "nasiko-agents")
                      if "weather-agent" in d["metadata"]["name"])
        repository, tag = deploy["spec"]["template"]["spec"]["containers"][0]["image"].split("/", 1)[1].rsplit(":", 1)
        token = secret_token(server.store.list("v1", "Secret"), "nasiko-agents", "agent-registry-credentials")
        client = RegistryClient(env["NASIKO_REGISTRY_ENDPOINTS"].split("=", 1)[1], username=token, password=token,
                                verify=env["NASIKO_CA_BUNDLE"])
        assert tag in client.tags(repository)
        assert env["DIGITALOCEAN_TOKEN"] in server.secret_values() and token in server.secret_values()
        assert not leaked_in(json.dumps(server.store.list("v1", "Pod")), values=server.secret_values())
    finally:
        server.stop()
    port = int(env["NASIKO_DO_API_URL"].rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):      # stopped with the cluster
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
