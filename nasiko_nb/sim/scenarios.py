"""Named cluster states built on the healthy baseline: each breaks one thing and lets the kubelet react.

A scenario changes inputs only (a Deployment's template, a Secret, what a registry holds) and then
re-runs the affected workloads through :mod:`nasiko_nb.sim.kubelet`, so pod states, waiting messages and
events are what the simulated kubelet derives, never hand-written. ``Cluster.broken`` names the objects
a scenario broke ("Kind namespace/name"), for tests and demos.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from nasiko_nb.sim.kubelet import Registry
from nasiko_nb.sim.platform import (DO_REGISTRY, ECR_PASSWORD, REVOKED_DO_TOKEN, REGISTRY_NAME, REGISTRY_USER,
                                    Agent, Cluster, add_agent, add_extra_pods, agent_deployment, baseline,
                                    build_job, build_job_template, dockerconfigjson, refresh_endpoints,
                                    restart_deployment, start_job)

BROKEN_AGENT = "weather-agent"
ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

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
}


def build(name: str = "healthy", *, now: datetime | None = None, extra_pods: int = 0) -> Cluster:
    """The cluster state of scenario ``name`` (objects, logs, registries) with ``extra_pods`` healthy pods added."""
    if name not in _BUILDERS:
        raise UnknownScenario(name)
    cluster = baseline(now)
    _BUILDERS[name](cluster)
    refresh_endpoints(cluster)
    add_extra_pods(cluster, extra_pods)
    return cluster

