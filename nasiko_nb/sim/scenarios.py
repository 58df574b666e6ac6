"""Named cluster states built on the healthy baseline: each breaks one thing and lets the kubelet react.

A scenario changes inputs only (a Deployment's template, a Secret, what a registry holds) and then
re-runs the affected workloads through :mod:`nasiko_nb.sim.kubelet`, so pod states, waiting messages and
events are what the simulated kubelet derives, never hand-written. ``Cluster.broken`` names the objects
a scenario broke ("Kind namespace/name"), for tests and demos.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from nasiko_nb.sim.build_scenarios import BUILD_BUILDERS, BUILD_SCENARIOS, add_extra_jobs
from nasiko_nb.sim.chat_scenarios import CHAT_BUILDERS, CHAT_SCENARIOS
from nasiko_nb.sim.kubelet import Registry
from nasiko_nb.sim.kubelet import docker_credentials
from nasiko_nb.sim.platform import (DO_REGISTRY, ECR_HOST, ECR_PASSWORD, REFRESHER, REGISTRY_NAME, REGISTRY_REGION,
                                    REGISTRY_USER, REVOKED_DO_TOKEN, Agent, Cluster, add_agent, add_extra_events,
                                    add_extra_pods, agent_deployment, baseline, build_job, build_job_template,
                                    dockerconfigjson, refresh_endpoints, restart_deployment, run_build,
                                    run_ecr_refresher, start_job)
from nasiko_nb.sim.service_registry import sync_cluster_registry

BROKEN_AGENT = "weather-agent"
NEW_AGENT = "summarizer-agent"            # uploaded after the registry credentials broke
TEAMMATE = "dev-teammate@nasiko.example"  # another DigitalOcean account, with a registry of its own
TEAMMATE_REGISTRY = "teammate-sandbox"
ACTUAL_REGISTRY = "my-registry"
DO_DEFAULT_EXPIRY_S = 30 * 24 * 3600      # docker-credentials' default expiry
CREDENTIALS_CHANGED_AGO = timedelta(minutes=18)   # after the baseline agents were built and deployed
EXPIRED_AGO = timedelta(minutes=22)
REGISTRY_LAST_SYNC = timedelta(seconds=12)    # the registry's loop last ran this long before the scenario's now

SCENARIOS: dict[str, str] = {
    "healthy": "The platform and two agents running; every build Job complete.",
    "image-pull-missing-secret": "Agent Deployment has no imagePullSecrets: DigitalOcean answers 401, pod in ImagePullBackOff.",
    "image-pull-pull-secret-not-found": "Agent pod names agent-registry-credentials but the Secret is absent from nasiko-agents.",
    "image-pull-tag-not-found": "Agent Deployment points at an image tag the build never pushed: 'not found'.",
    "image-pull-unauthorized": "agent-registry-credentials holds a revoked DigitalOcean token: 401 Unauthorized.",
    "image-pull-secret-wrong-registry": "agent-registry-credentials has auths for an ECR host, not registry.digitalocean.com: 401.",
    "image-pull-init-container": "A build Job pod's init container download-agent cannot pull its curl image: Init:ImagePullBackOff.",
    "image-pull-events-expired": "An agent failing to pull for 3 hours: the Failed events expired, only state.waiting.message has the error.",
    "image-pull-dns": "Agent image host misspelled (registy.digitalocean.com): DNS lookup fails.",
    "image-pull-forbidden": "Agent image on a private Docker Hub repository without credentials: insufficient_scope.",
    "image-pull-invalid-name": "Agent image reference with upper-case letters: InvalidImageName.",
    "registry-401-read-only-token": "Registry Secrets recreated with a read-only DigitalOcean token: pulls work, "
                                    "the next build's push fails with 401.",
    "registry-401-expired-token": "Registry Secrets hold a 30-day token created just over 30 days ago: expired, "
                                  "the next build's push fails with 401.",
    "registry-401-wrong-user": "Registry Secrets recreated with a teammate's token (another DigitalOcean account "
                               "with its own registry): the build's push to nasiko-images fails with 401.",
    "registry-401-revoked-token": "The registry token in the platform's Secrets was revoked on DigitalOcean: "
                                  "the next build's push fails with 401.",
    "registry-name-mismatch": "The platform pushes to nasiko-images but the account's only registry is my-registry: "
                              "the build's push fails with 401.",
    "registry-secrets-inconsistent": "regcred (nasiko, buildkit) holds a fresh token, agent-registry-credentials "
                                     "an older different one: builds still push.",
    "ecr-healthy": "Bootstrapped 2 h ago with --registry-type ECR: the refresher CronJob's first Job succeeded, "
                   "every registry Secret holds a 2-hour-old ECR login.",
    "ecr-agent-secret-stale": "ECR platform installed 13 h ago: the refresher keeps regcred fresh but never touches "
                              "agent-registry-credentials, whose login expired: agent pulls and build pushes get 401.",
    "ecr-refresher-missing": "ECR platform without the ecr-credential-refresher CronJob: every registry Secret holds "
                             "a 14-hour-old, expired ECR login.",
    "ecr-refresher-failing": "The refresher's last Job failed (IAM denies ecr:GetAuthorizationToken); the Secrets "
                             "are 7 h old and expire in 5 h.",
    "ecr-repository-missing": "A new agent's build pushes to <registry>/<agent> but bootstrap created only "
                              "nasiko-images: ECR answers 'name unknown'.",
    **BUILD_SCENARIOS,
    **CHAT_SCENARIOS,
}


class UnknownScenario(ValueError):
    """A scenario name that does not exist; the message lists the known ones."""

    def __init__(self, name: str):
        super().__init__(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}")


def _redeploy_agent(cluster: Cluster, agent_name: str, change: Callable[[dict], None]) -> dict:
    """Apply ``change`` to the agent's pod template and restart its pods through the kubelet."""
    deploy = agent_deployment(cluster, agent_name)
    change(deploy["spec"]["template"])
    agent = next(a for a in cluster.agents if a.name == agent_name)
    restart_deployment(cluster, deploy, agent.deployed)
    _mark_agent_broken(cluster, deploy)
    return deploy


def _mark_agent_broken(cluster: Cluster, deploy: dict) -> None:
    ns, name = deploy["metadata"]["namespace"], deploy["metadata"]["name"]
    cluster.broken.append(f"Deployment {ns}/{name}")
    for pod in cluster.of_kind("Pod", ns):
        if pod["metadata"].get("labels", {}).get("app") == name:
            cluster.broken.append(f"Pod {ns}/{pod['metadata']['name']}")


def _set_agent_image(image: str) -> Callable[[dict], None]:
    def change(template: dict) -> None:
        template["spec"]["containers"][0]["image"] = image
    return change


def _replace_pull_secret(cluster: Cluster, host: str, username: str, password: str) -> None:
    secret = cluster.find("Secret", "nasiko-agents", "agent-registry-credentials")
    secret["data"][".dockerconfigjson"] = dockerconfigjson(host, username, password)
    cluster.broken.append("Secret nasiko-agents/agent-registry-credentials")


def healthy(cluster: Cluster) -> None:
    """Nothing to break."""


def missing_secret(cluster: Cluster) -> None:
    _redeploy_agent(cluster, BROKEN_AGENT, lambda template: template["spec"].pop("imagePullSecrets"))


def pull_secret_not_found(cluster: Cluster) -> None:
    cluster.remove(cluster.find("Secret", "nasiko-agents", "agent-registry-credentials"))
    _redeploy_agent(cluster, BROKEN_AGENT, lambda template: None)


def tag_not_found(cluster: Cluster) -> None:
    agent = next(a for a in cluster.agents if a.name == BROKEN_AGENT)
    never_pushed = f"{DO_REGISTRY}/{REGISTRY_NAME}/{agent.name}:v{int(agent.deployed.timestamp())}"
    _redeploy_agent(cluster, BROKEN_AGENT, _set_agent_image(never_pushed))


def unauthorized(cluster: Cluster) -> None:
    _replace_pull_secret(cluster, DO_REGISTRY, REGISTRY_USER, REVOKED_DO_TOKEN)
    _redeploy_agent(cluster, BROKEN_AGENT, lambda template: None)


def secret_wrong_registry(cluster: Cluster) -> None:
    cluster.world.add(Registry(ECR_HOST, "basic", accounts={"AWS": ECR_PASSWORD}))
    _replace_pull_secret(cluster, ECR_HOST, "AWS", ECR_PASSWORD)
    _redeploy_agent(cluster, BROKEN_AGENT, lambda template: None)


def init_container(cluster: Cluster) -> None:
    """A new upload whose build Job's curl image tag does not exist (the Job stays active, pod Init:ImagePullBackOff)."""
    built = cluster.now - timedelta(minutes=9)
    agent = Agent("summarizer-agent", built, built)
    job = build_job("nasiko-agents", agent.job, build_job_template(agent, init_image="curlimages/curl:8.11.1-alpine"),
                    built, ttl=3600)
    pod = start_job(cluster, job, built)
    cluster.broken += [f"Job nasiko-agents/{agent.job}", f"Pod nasiko-agents/{pod['metadata']['name']}"]


def events_expired(cluster: Cluster) -> None:
    """An agent deployed 3 hours ago with a tag never pushed; its build Job is gone (ttlSecondsAfterFinished)."""
    deployed = cluster.now - timedelta(hours=3, minutes=4)
    agent = Agent("translator-agent", deployed - timedelta(minutes=3), deployed)
    add_agent(cluster, agent, pushed=False)
    cluster.remove(cluster.find("Job", "nasiko-agents", agent.job))
    cluster.agents.append(agent)
    _mark_agent_broken(cluster, agent_deployment(cluster, agent.name))


def dns(cluster: Cluster) -> None:
    deploy = agent_deployment(cluster, BROKEN_AGENT)
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
    _redeploy_agent(cluster, BROKEN_AGENT, _set_agent_image(image.replace(DO_REGISTRY, "registy.digitalocean.com")))


def forbidden(cluster: Cluster) -> None:
    cluster.world.registries["docker.io"].add("acme/private-agent", "latest")
    _redeploy_agent(cluster, BROKEN_AGENT, _set_agent_image("docker.io/acme/private-agent:latest"))


def invalid_name(cluster: Cluster) -> None:
    _redeploy_agent(cluster, BROKEN_AGENT, _set_agent_image(f"{DO_REGISTRY}/{REGISTRY_NAME}/Weather_Agent:v1"))


def _mark_registry_secrets_broken(cluster: Cluster) -> None:
    cluster.broken += ["Secret nasiko/regcred", "Secret buildkit/regcred", "Secret nasiko-agents/agent-registry-credentials"]


def _failed_push_build(cluster: Cluster) -> None:
    """A new agent uploaded 9 minutes ago: its build Job runs with the current credentials and fails to push."""
    built = cluster.now - timedelta(minutes=9)
    job = run_build(cluster, Agent(NEW_AGENT, built, built, cluster.agent_registry))
    name = job["metadata"]["name"]
    cluster.broken.append(f"Job nasiko-agents/{name}")
    cluster.broken += [f"Pod nasiko-agents/{pod['metadata']['name']}" for pod in cluster.of_kind("Pod", "nasiko-agents")
                       if pod["metadata"].get("labels", {}).get("job-name") == name]


def _platform_token(cluster: Cluster) -> str:
    secret = cluster.find("Secret", "nasiko-agents", "agent-registry-credentials")
    return docker_credentials(secret)[DO_REGISTRY][1]


def read_only_token(cluster: Cluster) -> None:
    """Someone regenerated the credentials without --read-write after the last successful build."""
    changed = cluster.now - CREDENTIALS_CHANGED_AGO
    cluster.set_registry_secrets(cluster.issue_registry_token(REGISTRY_USER, changed, read_write=False), changed)
    _mark_registry_secrets_broken(cluster)
    _failed_push_build(cluster)


def expired_token(cluster: Cluster) -> None:
    """Built on a platform installed with a default-expiry token (see _BASELINE_OPTIONS): it expired 22 minutes ago."""
    _mark_registry_secrets_broken(cluster)
    _failed_push_build(cluster)


def wrong_user(cluster: Cluster) -> None:
    """A teammate recreated the Secrets with `doctl registry docker-config --read-write` under their own login."""
    changed = cluster.now - CREDENTIALS_CHANGED_AGO
    cluster.digitalocean.add_account(TEAMMATE)
    sandbox = cluster.digitalocean.create_registry(TEAMMATE, TEAMMATE_REGISTRY, "nyc3")
    sandbox.created = cluster.now - timedelta(days=64)
    cluster.digitalocean.push(TEAMMATE_REGISTRY, "scratch-agent", "v1", 48_213_771, updated=cluster.now - timedelta(days=9))
    cluster.set_registry_secrets(cluster.issue_registry_token(TEAMMATE, changed), changed)
    _mark_registry_secrets_broken(cluster)
    _failed_push_build(cluster)


def revoked_token(cluster: Cluster) -> None:
    """The platform's registry token was revoked on DigitalOcean after the last build; the Secrets look fine."""
    cluster.digitalocean.revoke(_platform_token(cluster))
    _mark_registry_secrets_broken(cluster)
    _failed_push_build(cluster)


def name_mismatch(cluster: Cluster) -> None:
    """The account's registry is now my-registry (nasiko-images deleted) while the platform still uses nasiko-images."""
    cluster.digitalocean.delete_registry(REGISTRY_USER, REGISTRY_NAME)
    actual = cluster.digitalocean.create_registry(REGISTRY_USER, ACTUAL_REGISTRY, REGISTRY_REGION)
    actual.created = cluster.now - CREDENTIALS_CHANGED_AGO
    cluster.broken.append("ConfigMap nasiko/nasiko-config")
    _failed_push_build(cluster)


def secrets_inconsistent(cluster: Cluster) -> None:
    """Only regcred was refreshed (2 hours ago); agent-registry-credentials keeps the install-time token."""
    refreshed = cluster.now - timedelta(hours=2)
    cluster.set_registry_secrets(cluster.issue_registry_token(REGISTRY_USER, refreshed), refreshed,
                                 names=(("nasiko", "regcred"), ("buildkit", "regcred")))
    cluster.broken.append("Secret nasiko-agents/agent-registry-credentials")


def _mark_failing_pods(cluster: Cluster) -> None:
    """Every pod that does not run or complete, and what owns it, as broken (the expired login's reach)."""
    for pod in cluster.of_kind("Pod"):
        if pod["status"]["phase"] not in ("Running", "Succeeded"):
            cluster.broken.append(f"Pod {pod['metadata']['namespace']}/{pod['metadata']['name']}")


def ecr_agent_secret_stale(cluster: Cluster) -> None:
    """Installed 13 h ago; the refresher ran 8 h and 2 h ago, recreating only regcred. The agents built and
    deployed in the last hour pushed and pulled with agent-registry-credentials' expired login."""
    for hours in (8, 2):
        run_ecr_refresher(cluster, cluster.now - timedelta(hours=hours))
    cluster.broken.append("Secret nasiko-agents/agent-registry-credentials")
    _mark_failing_pods(cluster)


def ecr_refresher_missing(cluster: Cluster) -> None:
    """Installed 14 h ago and the CronJob deleted (or never applied): every login expired 2 h ago."""
    cluster.remove(cluster.find("CronJob", "default", REFRESHER))
    cluster.remove(cluster.find("Job", "default", "ecr-refresher-init"))
    cluster.broken.append(f"CronJob default/{REFRESHER}")
    _mark_registry_secrets_broken(cluster)
    _mark_failing_pods(cluster)


def ecr_refresher_failing(cluster: Cluster) -> None:
    """Installed 7 h ago; the scheduled run 1 h ago failed: the IAM role lost ecr:GetAuthorizationToken."""
    job = run_ecr_refresher(cluster, cluster.now - timedelta(hours=1), denied=True)
    cluster.broken += [f"CronJob default/{REFRESHER}", f"Job default/{job['metadata']['name']}"]
    _mark_failing_pods(cluster)


def ecr_repository_missing(cluster: Cluster) -> None:
    """A new agent uploaded 9 minutes ago: nobody created its repository, so the build's push is refused."""
    _failed_push_build(cluster)


_BUILDERS: dict[str, Callable[[Cluster], None]] = {
    "healthy": healthy,
    "image-pull-missing-secret": missing_secret,
    "image-pull-pull-secret-not-found": pull_secret_not_found,
    "image-pull-tag-not-found": tag_not_found,
    "image-pull-unauthorized": unauthorized,
    "image-pull-secret-wrong-registry": secret_wrong_registry,
    "image-pull-init-container": init_container,
    "image-pull-events-expired": events_expired,
    "image-pull-dns": dns,
    "image-pull-forbidden": forbidden,
    "image-pull-invalid-name": invalid_name,
    "registry-401-read-only-token": read_only_token,
    "registry-401-expired-token": expired_token,
    "registry-401-wrong-user": wrong_user,
    "registry-401-revoked-token": revoked_token,
    "registry-name-mismatch": name_mismatch,
    "registry-secrets-inconsistent": secrets_inconsistent,
    "ecr-healthy": healthy,
    "ecr-agent-secret-stale": ecr_agent_secret_stale,
    "ecr-refresher-missing": ecr_refresher_missing,
    "ecr-refresher-failing": ecr_refresher_failing,
    "ecr-repository-missing": ecr_repository_missing,
    **BUILD_BUILDERS,
    **CHAT_BUILDERS,
}

# Scenarios whose history starts differently: installed (and its registry token issued, 30-day default
# expiry) just over 30 days ago, so the token expired after the baseline agents were built and deployed.
_BASELINE_OPTIONS: dict[str, dict] = {
    "registry-401-expired-token": {"installed_ago": timedelta(days=30) + EXPIRED_AGO,
                                   "token_expiry_s": DO_DEFAULT_EXPIRY_S},
    "ecr-healthy": {"registry_type": "ecr", "installed_ago": timedelta(hours=2)},
    "ecr-agent-secret-stale": {"registry_type": "ecr", "installed_ago": timedelta(hours=13)},
    "ecr-refresher-missing": {"registry_type": "ecr", "installed_ago": timedelta(hours=14)},
    "ecr-refresher-failing": {"registry_type": "ecr", "installed_ago": timedelta(hours=7)},
    "ecr-repository-missing": {"registry_type": "ecr", "installed_ago": timedelta(hours=2)},
}


def build(name: str = "healthy", *, now: datetime | None = None, extra_pods: int = 0, extra_nodes: int = 0,
          extra_jobs: int = 0, extra_events: int = 0) -> Cluster:
    """The cluster state of scenario ``name`` (objects, logs, registries), scaled for load tests by
    ``extra_nodes`` more nodes of the pool (there before the scenario breaks anything, so it sees them all),
    then ``extra_pods`` healthy pods and ``extra_jobs`` failed build Jobs spread over every node, and
    ``extra_events`` events about the pods."""
    if name not in _BUILDERS:
        raise UnknownScenario(name)
    cluster = baseline(now, **_BASELINE_OPTIONS.get(name, {}), extra_nodes=extra_nodes)
    _BUILDERS[name](cluster)
    if cluster.registry_syncs:
        sync_cluster_registry(cluster, cluster.now - REGISTRY_LAST_SYNC)
    refresh_endpoints(cluster)
    add_extra_pods(cluster, extra_pods)
    add_extra_jobs(cluster, extra_jobs)
    add_extra_events(cluster, extra_events)
    return cluster

