"""The healthy Nasiko platform as plain Kubernetes JSON objects, laid out as NASIKO-FACTS.md describes.

Workload pods are never written by hand: a Deployment/Job/StatefulSet is declared here, and its pods are
derived through :mod:`nasiko_nb.sim.kubelet` from the registries and Secrets of this module, so a scenario
that breaks a Secret or an image gets exactly the pod states a real kubelet would report.
Timestamps are relative to ``now`` so ages look right whenever the simulation starts.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from nasiko_nb.sim.digitalocean import DOToken, DOWorld, pool_node_name
from nasiko_nb.sim.kong import KongWorld
from nasiko_nb.sim.kubelet import (EventSink, Node, NodeFit, Registry, RegistryWorld, digitalocean_access,
                                   docker_credentials, ecr_refusal, iso, parse_cpu, parse_memory, pod_requests, run_pod)
from nasiko_nb.sim.service_registry import start_cluster_registry

DO_REGISTRY = "registry.digitalocean.com"
REGISTRY_NAME = "nasiko-images"
REGISTRY_REGION = "fra1"
REGISTRY_USER = "platform-admin@nasiko.example"      # the DigitalOcean account that owns the platform's registry
PLATFORM_REGISTRY = f"{DO_REGISTRY}/{REGISTRY_NAME}"
ECR_ACCOUNT = "123456789012"                # moto's default account, so the simulated AWS answers for it
ECR_REGION = "us-east-1"
ECR_HOST = f"{ECR_ACCOUNT}.dkr.ecr.{ECR_REGION}.amazonaws.com"
ECR_PLATFORM_REGISTRY = f"{ECR_HOST}/{REGISTRY_NAME}"   # the only repository `--registry-type ECR` bootstrap creates
REFRESHER = "ecr-credential-refresher"
REFRESHER_SERVICE_ACCOUNT = "ecr-refresher-sa"
REFRESHER_ROLE = f"arn:aws:iam::{ECR_ACCOUNT}:role/nasiko-ecr-refresher"
REFRESHER_IMAGE = "alpine/k8s:1.31.0"       # kubectl and the AWS CLI in one image
YEAR_S = 365 * 24 * 3600
BUILDKIT_ADDRESS = "tcp://buildkitd.buildkit.svc.cluster.local:1234"
BACKEND_URL = "http://nasiko-backend.nasiko.svc.cluster.local:8000"
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "nasiko", "nasiko-agents", "buildkit")


def _token(prefix: str, seed: str, length: int = 64) -> str:
    return prefix + hashlib.sha256(seed.encode()).hexdigest()[:length]


REVOKED_DO_TOKEN = _token("dop_v1_", "nasiko-sim revoked registry token")
ECR_PASSWORD = "eyJwYXlsb2FkIjoi" + base64.b64encode(hashlib.sha512(b"nasiko-sim ecr").digest()).decode().rstrip("=")


def ecr_token(seed: str) -> str:
    """An ECR authorization token's password part (what `aws ecr get-login-password` prints), stable per seed."""
    return "eyJwYXlsb2FkIjoi" + base64.b64encode(hashlib.sha512(seed.encode()).digest()).decode().rstrip("=")


HARBOR_PASSWORD = "Harbor" + hashlib.sha256(b"nasiko-sim harbor").hexdigest()[:20]
MONGO_ROOT_PASSWORD = "mR7" + hashlib.sha256(b"nasiko-sim mongodb").hexdigest()[:21]
APP_SECRETS = {
    "openai_api_key": "sk-proj-" + base64.urlsafe_b64encode(hashlib.sha256(b"nasiko-sim openai").digest()).decode()[:48],
    "jwt_secret": hashlib.sha256(b"nasiko-sim jwt").hexdigest(),
    "mongo_password": MONGO_ROOT_PASSWORD,
    "encryption_key": base64.urlsafe_b64encode(hashlib.sha256(b"nasiko-sim fernet").digest()).decode(),
}


class SecretValues:
    """Every password and token the simulation puts in Secrets: fixed ones plus the DigitalOcean tokens each build issues.

    Process-wide, so a leak test can check any output against every value any scenario planted.
    """

    def __init__(self, fixed):
        self._values = dict.fromkeys(fixed)
        self._lock = threading.Lock()

    def add(self, *values: str) -> None:
        with self._lock:
            self._values.update(dict.fromkeys(values))

    def __iter__(self):
        with self._lock:
            return iter(list(self._values))

    def __contains__(self, value) -> bool:
        return value in self._values

    def __len__(self) -> int:
        return len(self._values)


FIXED_SECRET_VALUES = (REVOKED_DO_TOKEN, ECR_PASSWORD, HARBOR_PASSWORD, MONGO_ROOT_PASSWORD, *APP_SECRETS.values())
SECRET_VALUES = SecretValues(FIXED_SECRET_VALUES)

_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def stable_uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "nasiko-sim/" + "/".join(parts)))


def safe_hash(value: object, length: int = 10) -> str:
    """A Kubernetes-style name suffix (pod-template-hash alphabet) derived from ``value``."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:length])


def meta(name: str, namespace: str | None, created: datetime, *, labels: dict | None = None,
         annotations: dict | None = None, owner: dict | None = None, uid: str | None = None) -> dict:
    metadata = {"name": name, "uid": uid or str(uuid.uuid4()),
                "creationTimestamp": iso(created)}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return metadata


def owner_reference(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def dockerconfigjson(host: str, username: str, password: str) -> str:
    """The base64 .dockerconfigjson value, shaped as `kubectl create secret docker-registry` writes it."""
    config = {"auths": {host: {"username": username, "password": password, "auth": b64(f"{username}:{password}")}}}
    return b64(json.dumps(config, separators=(",", ":")))


def digitalocean_dockerconfigjson(token: str) -> str:
    """The base64 .dockerconfigjson of a DigitalOcean token, as `doctl registry docker-config` prints it."""
    config = {"auths": {DO_REGISTRY: {"auth": b64(f"{token}:{token}")}}}
    return b64(json.dumps(config, separators=(",", ":")))


def ecr_pull_secret(namespace: str, name: str, created: datetime, token: str) -> dict:
    """An ECR registry Secret: auths {host: {auth: base64("AWS:" + token)}}."""
    config = {"auths": {ECR_HOST: {"auth": b64(f"AWS:{token}")}}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta(name, namespace, created),
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(json.dumps(config, separators=(",", ":")))}}


def pull_secret(namespace: str, name: str, created: datetime, token: str) -> dict:
    """A registry Secret made the guide's way: docker-config piped into `kubectl create secret generic`."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta(name, namespace, created),
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": digitalocean_dockerconfigjson(token)}}


@dataclass
class Cluster:
    """A cluster state under construction: objects, pod logs, the registries, and what a scenario broke."""

    now: datetime
    world: RegistryWorld
    nodes: list[Node]
    objects: list[dict] = field(default_factory=list)
    logs: dict[tuple[str, str, str, bool], str] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    agents: list["Agent"] = field(default_factory=list)
    digitalocean_token: str = ""          # the registry owner's API token (DIGITALOCEAN_TOKEN)
    registry_type: str = "digitalocean"   # "digitalocean" or "ecr" (bootstrap's --registry-type)
    secret_values: list[str] = field(default_factory=list)   # the tokens this build issued
    kong: KongWorld = field(default_factory=KongWorld)        # the gateway's database (services, routes, plugins)
    registry_syncs: bool = True           # whether the service registry's loop syncs Kong when the build ends
    _cluster_ips: int = 20
    _secrets_by_ns: dict | None = None

    def add(self, *objs: dict) -> None:
        self.objects.extend(objs)
        if any(o["kind"] == "Secret" for o in objs):
            self._secrets_by_ns = None

    def find(self, kind: str, namespace: str | None, name: str) -> dict:
        for obj in self.objects:
            m = obj["metadata"]
            if obj["kind"] == kind and m["name"] == name and m.get("namespace") == namespace:
                return obj
        raise KeyError(f"{kind} {namespace}/{name}")

    def of_kind(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind
                and (namespace is None or o["metadata"].get("namespace") == namespace)]

    def remove(self, obj: dict) -> None:
        """Remove ``obj``, its dependents (ownerReferences) and the events about them."""
        gone = {obj["metadata"]["uid"]}
        changed = True
        while changed:
            changed = False
            for other in self.objects:
                refs = other["metadata"].get("ownerReferences") or []
                if other["metadata"].get("uid") not in gone and any(r["uid"] in gone for r in refs):
                    gone.add(other["metadata"]["uid"])
                    changed = True
        removed_pods = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in self.objects
                        if o["metadata"].get("uid") in gone and o["kind"] == "Pod"}
        self.objects = [o for o in self.objects if o["metadata"].get("uid") not in gone
                        and not (o["kind"] == "Event" and o["involvedObject"].get("uid") in gone)]
        self.logs = {k: v for k, v in self.logs.items() if (k[0], k[1]) not in removed_pods}
        self._secrets_by_ns = None

    def secrets(self, namespace: str) -> dict[str, dict]:
        """Secrets of ``namespace`` by name (indexed: pods of large clusters look them up one by one)."""
        if self._secrets_by_ns is None:
            self._secrets_by_ns = {}
            for secret in self.of_kind("Secret"):
                self._secrets_by_ns.setdefault(secret["metadata"]["namespace"], {})[secret["metadata"]["name"]] = secret
        return self._secrets_by_ns.get(namespace, {})

    @property
    def digitalocean(self) -> DOWorld:
        return self.world.digitalocean

    def issue_registry_token(self, email: str, created: datetime, *, read_write: bool = True,
                             expiry_seconds: int | None = YEAR_S) -> str:
        """A DigitalOcean registry token issued at ``created`` (what `doctl registry docker-config` returns)."""
        token = self.digitalocean.registry_credentials(email, read_write=read_write, expiry_seconds=expiry_seconds,
                                                       now=created)
        self.secret_values.append(token)
        SECRET_VALUES.add(token)
        return token

    def set_registry_secrets(self, token: str, created: datetime,
                             names=(("nasiko", "regcred"), ("buildkit", "regcred"),
                                    ("nasiko-agents", "agent-registry-credentials"))) -> None:
        """(Re)create the platform's registry Secrets with ``token`` at ``created``, as the guide's Step 3 does
        (on ECR: as `kubectl create secret docker-registry --docker-username=AWS` does)."""
        for namespace, name in names:
            try:
                self.remove(self.find("Secret", namespace, name))
            except KeyError:
                pass
            if self.registry_type == "ecr":
                self.add(ecr_pull_secret(namespace, name, created, token))
            else:
                self.add(pull_secret(namespace, name, created, token))

    def issue_ecr_token(self, issued: datetime) -> str:
        """A 12-hour ECR login issued at ``issued``; the simulated ECR registry accepts it until it expires."""
        token = ecr_token(f"nasiko-sim ecr {iso(issued)}")
        self.world.registries[ECR_HOST].issued[token] = issued
        self.secret_values.append(token)
        SECRET_VALUES.add(token)
        return token

    @property
    def agent_registry(self) -> str:
        """Where build Jobs push agent images: `<registry>/<agent>:v<ts>`."""
        return ECR_HOST if self.registry_type == "ecr" else PLATFORM_REGISTRY

    @property
    def platform_registry(self) -> str:
        """The platform's registry as the bootstrap names it (NASIKO_PLATFORM_REGISTRY)."""
        return ECR_PLATFORM_REGISTRY if self.registry_type == "ecr" else PLATFORM_REGISTRY

    def node_for(self, name: str) -> Node:
        return self.nodes[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(self.nodes)]

    def cluster_ip(self) -> str:
        self._cluster_ips += 1
        return f"10.245.{self._cluster_ips // 250}.{self._cluster_ips % 250 + 2}"


# ---- registries -----------------------------------------------------------------------------------

PLATFORM_COMPONENTS = ("nasiko-backend", "nasiko-web", "nasiko-auth", "nasiko-router", "nasiko-k8s-build-worker",
                       "k8s-service-registry", "chat-history")


def image_size(image: str) -> int:
    """A plausible compressed image size (60-180 MB), stable per image."""
    return 60_000_000 + int(hashlib.sha256(image.encode()).hexdigest()[:8], 16) % 120_000_000


def digitalocean_world(installed: datetime) -> DOWorld:
    """The owner's DigitalOcean account and its registry `nasiko-images` (fra1) holding the platform's images."""
    do = DOWorld()
    account = do.add_account(REGISTRY_USER)
    account.created = installed - timedelta(days=220)
    registry = do.create_registry(REGISTRY_USER, REGISTRY_NAME, REGISTRY_REGION)
    registry.created = installed - timedelta(hours=2)
    for index, component in enumerate(PLATFORM_COMPONENTS):
        pushed = installed - timedelta(minutes=50 - 3 * index)
        image = f"{PLATFORM_REGISTRY}/{component}"
        do.push(REGISTRY_NAME, component, "v1.4.2", image_size(f"{image}:v1.4.2"), updated=pushed)
        do.push(REGISTRY_NAME, component, "latest", image_size(f"{image}:v1.4.2"), updated=pushed)
    with do.lock:
        do.tokens[REVOKED_DO_TOKEN] = DOToken(value=REVOKED_DO_TOKEN, account=REGISTRY_USER, read_write=True,
                                              expires_at=installed - timedelta(days=2) + timedelta(seconds=YEAR_S),
                                              revoked=True, kind="registry")
    return do


def registry_world(digitalocean: DOWorld) -> RegistryWorld:
    """The registries a DigitalOcean-hosted Nasiko cluster pulls from; DigitalOcean's side is ``digitalocean``."""
    world = RegistryWorld(digitalocean=digitalocean)
    world.add(Registry(DO_REGISTRY, "digitalocean"))
    hub = world.add(Registry("docker.io", "dockerhub"))
    for repository, tags in {
        "library/kong": ("3.4", "3.4.2", "latest"), "curlimages/curl": ("8.11.1", "8.10.1", "latest"),
        "moby/buildkit": ("v0.13.2-rootless", "master-rootless", "v0.13.2"), "library/busybox": ("1.36", "latest"),
        "alpine/git": ("2.45.2", "latest"), "alpine/helm": ("3.14.0",), "bitnami/mongodb": ("8.0.4-debian-12-r0",),
        "bitnami/redis": ("7.4.1-debian-12-r2",), "bitnami/postgresql": ("17.2.0-debian-12-r3",),
        "library/python": ("3.12-slim",), "library/nginx": ("1.27",), "nicolaka/netshoot": ("v0.13", "latest"),
    }.items():
        hub.add(repository, *tags, public=True)
    k8s = world.add(Registry("registry.k8s.io", "basic"))
    k8s.add("coredns/coredns", "v1.11.3", public=True)
    return world


def add_ecr_registry(world: RegistryWorld, installed: datetime) -> Registry:
    """The account's ECR registry: `nasiko-images` (platform images, one tag per component) and the
    repositories an operator created for the agents; the refresher's image on Docker Hub."""
    ecr = world.add(Registry(ECR_HOST, "ecr"))
    ecr.add(REGISTRY_NAME, *(f"{component}-v1.4.2" for component in PLATFORM_COMPONENTS))
    world.registries["docker.io"].add(REFRESHER_IMAGE.split(":")[0], REFRESHER_IMAGE.split(":")[1], public=True)
    return ecr


def push_image(world: RegistryWorld, image: str, at: datetime) -> None:
    """Record that a build pushed ``image`` (host/repo:tag) to its registry at ``at``."""
    host, rest = image.split("/", 1)
    repository, tag = rest.rsplit(":", 1)
    if host == DO_REGISTRY and world.digitalocean is not None:
        registry_name, _, name = repository.partition("/")
        world.digitalocean.push(registry_name, name, tag, image_size(image), updated=at)
    else:
        world.registries[host].add(repository, tag)


def push_refusal(cluster: "Cluster", image: str, at: datetime) -> str | None:
    """Why BuildKit's push of ``image`` with agent-registry-credentials fails at ``at`` (None: it succeeds).

    buildctl pushes with the docker config the build Job mounts from agent-registry-credentials; DigitalOcean
    refuses unless that token may push under its own account's registry. BuildKit reports every refusal as
    the token fetch failing with 401, as the guide's symptom shows.
    """
    secret = cluster.secrets("nasiko-agents").get("agent-registry-credentials")
    host = image.split("/", 1)[0]
    credential = docker_credentials(secret).get(host) if secret else None
    repository = image.split("/", 1)[1].rsplit(":", 1)[0]
    if host == ECR_HOST:
        return ecr_push_refusal(cluster.world.registries[ECR_HOST], image, repository, credential, at)
    granted = digitalocean_access(cluster.digitalocean, credential[1] if credential else None, repository, at)
    if granted is not None and "push" in granted:
        return None
    scope = quote(f"repository:{repository}:pull,push", safe="")
    return (f"failed to push {image}: failed to authorize: failed to fetch oauth token: unexpected status from GET "
            f"request to https://api.digitalocean.com/v2/registry/auth?scope={scope}&service={DO_REGISTRY}: "
            "401 Unauthorized")


def ecr_push_refusal(registry: Registry, image: str, repository: str, credential, at: datetime) -> str | None:
    """ECR refuses a push without a valid login, and into a repository nobody created (ECR never creates one)."""
    if credential is None:
        return f"failed to push {image}: authorization failed: no basic auth credentials"
    refusal = ecr_refusal(registry, credential, at)
    if refusal is not None:
        return (f"failed to push {image}: unexpected status from POST request to https://{ECR_HOST}/v2/{repository}"
                f"/blobs/uploads/: {refusal}")
    if repository not in registry.repositories:
        return (f"failed to push {image}: name unknown: The repository with name '{repository}' does not exist in "
                f"the registry with id '{ECR_ACCOUNT}'")
    return None


# ---- workloads ------------------------------------------------------------------------------------

def container(name: str, image: str, *, ports: list[tuple[str, int]] = (), env: dict | None = None,
              cpu: str = "100m", memory: str = "128Mi", limits: tuple[str, str] | None = None,
              command: list[str] | None = None, args: list[str] | None = None, mounts: list[dict] = (),
              pull_policy: str = "IfNotPresent") -> dict:
    spec = {"name": name, "image": image, "imagePullPolicy": pull_policy,
            "resources": {"requests": {"cpu": cpu, "memory": memory}},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
    if limits:
        spec["resources"]["limits"] = {"cpu": limits[0], "memory": limits[1]}
    if command:
        spec["command"] = command
    if args:
        spec["args"] = args
    if ports:
        spec["ports"] = [{"name": port_name, "containerPort": number, "protocol": "TCP"} for port_name, number in ports]
    if env:
        spec["env"] = [{"name": key, **({"valueFrom": value} if isinstance(value, dict) else {"value": str(value)})}
                       for key, value in env.items()]
    if mounts:
        spec["volumeMounts"] = list(mounts)
    return spec


def pod_template(labels: dict, containers: list[dict], *, init_containers: list[dict] = (),
                 pull_secrets: list[str] = (), volumes: list[dict] = (), restart_policy: str = "Always",
                 service_account: str = "default") -> dict:
    spec = {"containers": containers, "restartPolicy": restart_policy, "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler", "serviceAccountName": service_account,
            "terminationGracePeriodSeconds": 30, "securityContext": {}}
    if init_containers:
        spec["initContainers"] = list(init_containers)
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    if volumes:
        spec["volumes"] = list(volumes)
    return {"metadata": {"labels": dict(labels)}, "spec": spec}


def deployment(namespace: str, name: str, template: dict, created: datetime, replicas: int = 1,
               labels: dict | None = None) -> dict:
    selector = dict(template["metadata"]["labels"])
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {**meta(name, namespace, created, labels=labels or {"app": name},
                                annotations={"deployment.kubernetes.io/revision": "1"}), "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                     "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
            "status": {}}


def template_hash(template: dict) -> str:
    clean = copy.deepcopy(template)
    clean["metadata"].get("labels", {}).pop("pod-template-hash", None)
    return safe_hash(clean)


def new_replicaset(deploy: dict, revision: int, created: datetime, uid: str | None = None) -> dict:
    """The ReplicaSet the Deployment controller creates for the Deployment's current template."""
    template = copy.deepcopy(deploy["spec"]["template"])
    digest = template_hash(template)
    template["metadata"].setdefault("labels", {})["pod-template-hash"] = digest
    labels = template["metadata"]["labels"]
    name = f"{deploy['metadata']['name']}-{digest}"
    ns = deploy["metadata"]["namespace"]
    selector = {**deploy["spec"]["selector"].get("matchLabels", {}), "pod-template-hash": digest}
    annotations = {"deployment.kubernetes.io/desired-replicas": str(deploy["spec"]["replicas"]),
                   "deployment.kubernetes.io/max-replicas": str(deploy["spec"]["replicas"] + 1),
                   "deployment.kubernetes.io/revision": str(revision)}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {**meta(name, ns, created, labels=labels, annotations=annotations, owner=deploy, uid=uid),
                         "generation": 1},
            "spec": {"replicas": deploy["spec"]["replicas"], "selector": {"matchLabels": selector},
                     "template": template},
            "status": {}}


def pod_from_template(owner: dict, template: dict, name: str, created: datetime, uid: str | None = None,
                      extra_labels: dict | None = None) -> dict:
    pod_template_copy = copy.deepcopy(template)
    labels = {**pod_template_copy["metadata"].get("labels", {}), **(extra_labels or {})}
    spec = pod_template_copy["spec"]
    spec.setdefault("tolerations", [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": meta(name, owner["metadata"]["namespace"], created, labels=labels, owner=owner, uid=uid),
            "spec": spec, "status": {"phase": "Pending"}}


def pod_name(prefix: str, seed: str, length: int = 5) -> str:
    rng = random.Random(seed)
    return f"{prefix}-" + "".join(rng.choice(_HASH_ALPHABET) for _ in range(length))


def replicaset_status(rs: dict, pods: list[dict]) -> dict:
    ready = sum(1 for p in pods if is_ready(p))
    return {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
            "availableReplicas": ready, "observedGeneration": rs["metadata"].get("generation", 1)}


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def deployment_status(deploy: dict, current: dict, all_pods: list[dict], current_pods: list[dict],
                      now: datetime) -> dict:
    """Deployment status as the controller reports it for the current ReplicaSet and all owned pods."""
    desired = deploy["spec"]["replicas"]
    ready = sum(1 for p in all_pods if is_ready(p))
    updated_ready = sum(1 for p in current_pods if is_ready(p))
    rs_name = current["metadata"]["name"]
    since = datetime.strptime(current["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    available = ready >= desired
    if updated_ready >= desired:
        progressing = ("True", "NewReplicaSetAvailable", f"ReplicaSet \"{rs_name}\" has successfully progressed.")
    elif now - since > timedelta(seconds=deploy["spec"].get("progressDeadlineSeconds", 600)):
        progressing = ("False", "ProgressDeadlineExceeded", f"ReplicaSet \"{rs_name}\" has timed out progressing.")
    else:
        progressing = ("True", "ReplicaSetUpdated", f"ReplicaSet \"{rs_name}\" is progressing.")
    conditions = [
        {"type": "Available", "status": "True" if available else "False",
         "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
         "message": "Deployment has minimum availability." if available else "Deployment does not have minimum availability.",
         "lastUpdateTime": iso(since), "lastTransitionTime": iso(since)},
        {"type": "Progressing", "status": progressing[0], "reason": progressing[1], "message": progressing[2],
         "lastUpdateTime": iso(now if progressing[1] != "NewReplicaSetAvailable" else since),
         "lastTransitionTime": iso(since)},
    ]
    status = {"observedGeneration": deploy["metadata"].get("generation", 1), "replicas": len(all_pods),
              "updatedReplicas": len(current_pods), "readyReplicas": ready, "availableReplicas": ready,
              "conditions": conditions}
    if len(all_pods) - ready > 0:
        status["unavailableReplicas"] = len(all_pods) - ready
    return status


def service(namespace: str, name: str, selector: dict, ports: list[tuple[str, int, int | str]], created: datetime,
            cluster_ip: str, kind: str = "ClusterIP", labels: dict | None = None) -> dict:
    spec_ports = [{"name": port_name, "port": port, "targetPort": target, "protocol": "TCP"}
                  for port_name, port, target in ports]
    spec = {"type": kind, "selector": dict(selector), "ports": spec_ports, "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip], "sessionAffinity": "None", "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"}
    status: dict = {"loadBalancer": {}}
    if kind == "LoadBalancer":
        for index, port in enumerate(spec_ports):
            port["nodePort"] = 30080 + index
        spec["externalTrafficPolicy"] = "Cluster"
        spec["allocateLoadBalancerNodePorts"] = True
        status = {"loadBalancer": {"ingress": [{"ip": "164.90.241.17", "ipMode": "VIP"}]}}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": meta(name, namespace, created, labels=labels or {"app": name}), "spec": spec, "status": status}


def selector_matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _target_port(pod: dict, target: int | str) -> int | None:
    if isinstance(target, int):
        return target
    for c in pod["spec"].get("containers", []):
        for port in c.get("ports", []):
            if port.get("name") == target:
                return port["containerPort"]
    return None


def endpoints_for(svc: dict, pods: list[dict]) -> list[dict]:
    """Endpoints and EndpointSlice for ``svc`` from the pods its selector matches (ready vs not ready)."""
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    selector = svc["spec"].get("selector") or {}
    members = sorted((p for p in pods if selector_matches(selector, p["metadata"].get("labels", {}))
                      and p.get("status", {}).get("podIP") and p["status"].get("phase") in ("Running", "Pending")),
                     key=lambda p: p["metadata"]["name"])
    created = svc["metadata"]["creationTimestamp"]

    def address(p: dict) -> dict:
        return {"ip": p["status"]["podIP"], "nodeName": p["spec"].get("nodeName"),
                "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}}

    ports = []
    for port in svc["spec"]["ports"]:
        number = next((n for n in (_target_port(p, port["targetPort"]) for p in members) if n), None)
        if number:
            ports.append({"name": port["name"], "port": number, "protocol": "TCP"})
    subset = {}
    ready = [address(p) for p in members if is_ready(p)]
    not_ready = [address(p) for p in members if not is_ready(p)]
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": name, "namespace": ns, "uid": stable_uid("ep", ns, name, created),
                              "creationTimestamp": created, "labels": dict(svc["metadata"].get("labels", {}))},
                 "subsets": [{**subset, "ports": ports}] if subset and ports else []}
    slice_name = f"{name}-{safe_hash([ns, name], 5)}"
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {**meta(slice_name, ns, datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ"),
                            labels={**svc["metadata"].get("labels", {}), "kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                            owner={"apiVersion": "v1", "kind": "Service", "metadata": svc["metadata"]}),
                     "generateName": f"{name}-"},
        "endpoints": [{"addresses": [p["status"]["podIP"]],
                       "conditions": {"ready": is_ready(p), "serving": is_ready(p), "terminating": False},
                       "nodeName": p["spec"].get("nodeName"),
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"],
                                     "uid": p["metadata"]["uid"]}} for p in members],
        "ports": ports,
    }
    endpoint_slice["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
    return [endpoints, endpoint_slice]


# ---- materializing workloads into pods ------------------------------------------------------------

def start_deployment(cluster: Cluster, deploy: dict, started: datetime, *, revision: int = 1,
                     restarts: dict | None = None, crashing: dict[str, int] | None = None) -> None:
    """Create the Deployment's ReplicaSet and pods (through the kubelet) as of ``started``; sets status."""
    rs = new_replicaset(deploy, revision, started)
    deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
    pods = []
    for index in range(deploy["spec"]["replicas"]):
        created = started + timedelta(seconds=1)
        pod = pod_from_template(rs, rs["spec"]["template"], pod_name(rs["metadata"]["name"], f"{rs['metadata']['uid']}/{index}"),
                                created)
        pods.append(run_workload_pod(cluster, pod, created, restarts=restarts, crashing=crashing))
    rs["status"] = replicaset_status(rs, pods)
    deploy["status"] = deployment_status(deploy, rs, pods, pods, cluster.now)
    cluster.add(rs)
    emit_controller_event(cluster, deploy, "ScalingReplicaSet",
                          f"Scaled up replica set {rs['metadata']['name']} from 0 to {deploy['spec']['replicas']}",
                          started, "deployment-controller")
    for pod in pods:
        emit_controller_event(cluster, rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                              started + timedelta(seconds=1), "replicaset-controller")


def run_workload_pod(cluster: Cluster, pod: dict, started: datetime, *, run_to_completion: bool = False,
                     restarts: dict | None = None, exit_codes: dict[str, int] | None = None,
                     crashing: dict[str, int] | None = None, durations: dict[str, timedelta] | None = None,
                     node: Node | None = None) -> dict:
    node = node or cluster.node_for(pod["metadata"]["name"])
    pod, events = run_pod(pod, node, cluster.secrets(pod["metadata"]["namespace"]), cluster.world, cluster.now,
                          started=started, run_to_completion=run_to_completion, restarts=restarts,
                          exit_codes=exit_codes, crashing=crashing, durations=durations)
    cluster.add(pod, *events)
    return pod


def emit_controller_event(cluster: Cluster, obj: dict, reason: str, message: str, at: datetime, component: str,
                          type_: str = "Normal") -> None:
    sink = EventSink(cluster.now)
    sink.emit(obj, reason, message, type_=type_, first=at, component=component)
    cluster.add(*sink.events)


def restart_deployment(cluster: Cluster, deploy: dict, started: datetime, revision: int = 1,
                       crashing: dict[str, int] | None = None) -> None:
    """Drop the Deployment's ReplicaSets and pods and start them again from its (possibly changed) template."""
    for rs in cluster.of_kind("ReplicaSet", deploy["metadata"]["namespace"]):
        if any(ref["uid"] == deploy["metadata"]["uid"] for ref in rs["metadata"].get("ownerReferences", [])):
            cluster.remove(rs)
    cluster.objects = [o for o in cluster.objects
                       if not (o["kind"] == "Event" and o["involvedObject"].get("uid") == deploy["metadata"]["uid"])]
    start_deployment(cluster, deploy, started, revision=revision, crashing=crashing)


def build_job(namespace: str, name: str, template: dict, created: datetime, *, ttl: int | None = None,
              backoff_limit: int = 1) -> dict:
    job_uid = stable_uid("job", namespace, name, iso(created))
    labels = {"batch.kubernetes.io/controller-uid": job_uid, "batch.kubernetes.io/job-name": name,
              "controller-uid": job_uid, "job-name": name}
    template = copy.deepcopy(template)
    template["metadata"].setdefault("labels", {}).update(labels)
    spec = {"backoffLimit": backoff_limit, "completions": 1, "parallelism": 1, "completionMode": "NonIndexed",
            "suspend": False, "manualSelector": False, "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": job_uid}}, "template": template}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {**meta(name, namespace, created, uid=job_uid), "generation": 1,
                         "labels": {"batch.kubernetes.io/controller-uid": job_uid, "batch.kubernetes.io/job-name": name,
                                    "controller-uid": job_uid, "job-name": name}},
            "spec": spec, "status": {}}


def start_job(cluster: Cluster, job: dict, started: datetime) -> dict:
    """Run the Job's one pod through the kubelet; a pod whose containers all ran makes the Job Complete."""
    name = job["metadata"]["name"]
    pod = pod_from_template(job, job["spec"]["template"], pod_name(name, job["metadata"]["uid"]), started)
    pod = run_workload_pod(cluster, pod, started, run_to_completion=True)
    emit_controller_event(cluster, job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", started,
                          "job-controller")
    if pod["status"]["phase"] == "Succeeded":
        finished = max(s["state"]["terminated"]["finishedAt"] for s in pod["status"]["containerStatuses"])
        job["status"] = {"startTime": iso(started), "completionTime": finished, "succeeded": 1, "ready": 0,
                         "terminating": 0, "uncountedTerminatedPods": {},
                         "conditions": [{"type": t, "status": "True", "reason": r, "message": m,
                                         "lastProbeTime": finished, "lastTransitionTime": finished}
                                        for t, r, m in (("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                                                        ("Complete", "CompletionsReached", "Reached expected number of succeeded pods"))]}
        finished_at = datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        emit_controller_event(cluster, job, "Completed", "Job completed", finished_at, "job-controller")
    else:
        job["status"] = {"startTime": iso(started), "active": 1, "ready": 0, "terminating": 0,
                         "uncountedTerminatedPods": {}}
    cluster.add(job)
    return pod


def pod_finished_at(pod: dict) -> str:
    """When the pod's last container (init or main) terminated."""
    statuses = pod["status"].get("initContainerStatuses", []) + pod["status"]["containerStatuses"]
    return max(s["state"]["terminated"]["finishedAt"] for s in statuses if "terminated" in s["state"])


def run_failing_job(cluster: Cluster, job: dict, started: datetime, exit_codes: dict[str, int],
                    durations: dict[str, timedelta] | None = None) -> list[dict]:
    """Run the Job's pods when every attempt exits non-zero, as the job controller does; returns the pods.

    A failed pod is replaced after a back-off (10 s, doubling) until backoffLimit is exceeded, then the Job
    gets the FailureTarget and Failed conditions. A pod that never finishes (stuck pulling) leaves the Job active.
    """
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    pods, at, delay = [], started, timedelta(seconds=10)
    for attempt in range(job["spec"]["backoffLimit"] + 1):
        pod = pod_from_template(job, job["spec"]["template"], pod_name(name, f"{uid}/{attempt}"), at)
        pod = run_workload_pod(cluster, pod, at, run_to_completion=True, exit_codes=exit_codes, durations=durations)
        emit_controller_event(cluster, job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", at,
                              "job-controller")
        pods.append(pod)
        if pod["status"]["phase"] != "Failed":
            job["status"] = {"startTime": iso(started), "active": 1, "failed": attempt, "ready": 0, "terminating": 0,
                             "uncountedTerminatedPods": {}}
            cluster.add(job)
            return pods
        finished = pod_finished_at(pod)
        at = datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) + delay
        delay *= 2
    message = "Job has reached the specified backoff limit"
    job["status"] = {"startTime": iso(started), "failed": len(pods), "ready": 0, "terminating": 0,
                     "uncountedTerminatedPods": {},
                     "conditions": [{"type": kind, "status": "True", "reason": "BackoffLimitExceeded",
                                     "message": message, "lastProbeTime": finished, "lastTransitionTime": finished}
                                    for kind in ("FailureTarget", "Failed")]}
    finished_at = datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    emit_controller_event(cluster, job, "BackoffLimitExceeded", message, finished_at, "job-controller", type_="Warning")
    cluster.add(job)
    return pods


def statefulset(cluster: Cluster, namespace: str, name: str, template: dict, created: datetime,
                service_name: str) -> dict:
    """A one-replica StatefulSet (Bitnami Helm style) with its pod ``<name>-0`` run through the kubelet."""
    revision = f"{name}-{safe_hash(template, 10)}"
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {**meta(name, namespace, created, labels=template["metadata"]["labels"]), "generation": 1},
           "spec": {"replicas": 1, "serviceName": service_name, "podManagementPolicy": "OrderedReady",
                    "selector": {"matchLabels": dict(template["metadata"]["labels"])}, "template": template,
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
           "status": {}}
    pod = pod_from_template(sts, template, f"{name}-0", created + timedelta(seconds=2),
                            extra_labels={"controller-revision-hash": revision,
                                          "statefulset.kubernetes.io/pod-name": f"{name}-0",
                                          "apps.kubernetes.io/pod-index": "0"})
    pod["spec"]["hostname"], pod["spec"]["subdomain"] = f"{name}-0", service_name
    pod = run_workload_pod(cluster, pod, created + timedelta(seconds=2))
    ready = 1 if is_ready(pod) else 0
    sts["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": ready, "availableReplicas": ready,
                     "currentReplicas": 1, "updatedReplicas": 1, "currentRevision": revision,
                     "updateRevision": revision, "collisionCount": 0}
    cluster.add(sts)
    return sts


# ---- the baseline -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Agent:
    """One deployed agent: its build timestamp names the Job and image tag, its deploy timestamp the Deployment."""

    name: str
    built: datetime
    deployed: datetime
    registry: str = PLATFORM_REGISTRY        # where its build pushes: `<registry>/<agent>:v<ts>`

    @property
    def build_ts(self) -> int:
        return int(self.built.timestamp())

    @property
    def deployment(self) -> str:
        return f"agent-{self.name}-{int(self.deployed.timestamp())}"

    @property
    def job(self) -> str:
        return f"job-{self.name}-{self.build_ts}"

    @property
    def image(self) -> str:
        return f"{self.registry}/{self.name}:v{self.build_ts}"


# ---- nodes ------------------------------------------------------------------------------------------

DOKS_CLUSTER = "nasiko-cluster"
DOKS_REGION = "nyc1"
DOKS_VERSION = "1.34.1-do.0"
NODE_POOL = "pool-8k3x1m2vd"
NODE_POOL_ID = stable_uid("pool", NODE_POOL)
NODE_SIZE = "s-4vcpu-8gb"
EKS_CLUSTER = "nasiko"
EKS_NODEGROUP = "nasiko-nodes"
EKS_NODE_AMI = "ami-0a1b2c3d4e5f60718"
EKS_INSTANCE_TYPE = "m5.xlarge"
EKS_ZONE = f"{ECR_REGION}a"
_BASELINE_POOL_NODES = ("pool-8k3x1m2vd-e7f2a", "pool-8k3x1m2vd-e7f2q")


def pod_cidr(ordinal: int) -> str:
    """The pod CIDR of a cluster's ``ordinal``-th node: a /18 each for the baseline's two, then a /24 each in
    the rest of 10.244.0.0/16 and beyond it, skipping 10.245.0.0/16 (the Service range)."""
    if ordinal < len(_BASELINE_POOL_NODES):
        return f"10.244.{64 * ordinal}.0/18"
    block = 126 + ordinal
    second = 244 + block // 256
    return f"10.{second + (second >= 245)}.{block % 256}.0/24"


def pool_node(ordinal: int, name: str) -> Node:
    """The kubelet side of the DOKS pool's ``ordinal``-th node: its VPC address and where its pod IPs come from."""
    return Node(name, f"10.116.{ordinal // 250}.{ordinal % 250 + 2}", pod_cidr(ordinal).rsplit(".", 1)[0])


def eks_node(ordinal: int) -> Node:
    """The EKS node group's ``ordinal``-th node, named after its address in the us-east-1a subnet as EC2 names it."""
    offset = 10 + (ordinal * 7919 + 1234) % 8000          # distinct for 8000 nodes, scattered like DHCP leases
    address = f"192.168.{32 + offset // 256}.{offset % 256}"
    return Node(f"ip-{address.replace('.', '-')}.ec2.internal", address, pod_cidr(ordinal).rsplit(".", 1)[0])


def nodes(registry_type: str = "digitalocean", extra: int = 0) -> list[Node]:
    """The cluster's nodes: the DOKS pool's two and ``extra`` more named as DigitalOcean names new pool nodes,
    or with ``registry_type="ecr"`` an EKS node group's 2 + ``extra``, named as EC2 names instances."""
    if extra < 0:
        raise ValueError(f"extra nodes must not be negative (got {extra})")
    if registry_type == "ecr":
        return [eks_node(ordinal) for ordinal in range(len(_BASELINE_POOL_NODES) + extra)]
    names = list(_BASELINE_POOL_NODES)
    seed = len(names)
    while len(names) < len(_BASELINE_POOL_NODES) + extra:
        name = pool_node_name(NODE_POOL, f"{NODE_POOL_ID}/{seed}")
        seed += 1
        if name not in names:
            names.append(name)
    return [pool_node(ordinal, name) for ordinal, name in enumerate(names)]


def _ready_conditions(heartbeat: datetime, since: datetime) -> list[dict]:
    conditions = [("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                  ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                  ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                  ("Ready", "True", "KubeletReady", "kubelet is posting ready status")]
    return [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": iso(heartbeat),
             "lastTransitionTime": iso(since)} for t, s, r, m in conditions]


def _node_object(node: Node, labels: dict, spec: dict, capacity: dict, allocatable: dict, addresses: list[dict],
                 node_info: dict, created: datetime, now: datetime) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": meta(node.name, None, created, labels=labels, uid=stable_uid("node", node.name, iso(created)),
                         annotations={"alpha.kubernetes.io/provided-node-ip": node.internal_ip,
                                      "node.alpha.kubernetes.io/ttl": "0",
                                      "volumes.kubernetes.io/controller-managed-attach-detach": "true"}),
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": allocatable,
                   "conditions": _ready_conditions(max(now - timedelta(seconds=40), created),
                                                   min(created + timedelta(minutes=1), now)),
                   "addresses": [{"type": "InternalIP", "address": node.internal_ip}, *addresses,
                                 {"type": "Hostname", "address": node.name}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                   "nodeInfo": {"architecture": "amd64", "bootID": stable_uid("boot", node.name), **node_info,
                                "kubeProxyVersion": "", "machineID": hashlib.md5(node.name.encode()).hexdigest(),
                                "operatingSystem": "linux", "systemUUID": stable_uid("system", node.name)}}}


def pool_node_object(node: Node, ordinal: int, created: datetime, now: datetime, *, pool: str = NODE_POOL,
                     pool_id: str = NODE_POOL_ID, size: str = NODE_SIZE) -> dict:
    """A Ready DOKS Node of ``pool`` (a droplet of ``size``), as the cluster's ``ordinal``-th node."""
    labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": size,
              "beta.kubernetes.io/os": "linux", "doks.digitalocean.com/managed": "true",
              "doks.digitalocean.com/node-id": stable_uid("node-id", node.name),
              "doks.digitalocean.com/node-pool": pool, "doks.digitalocean.com/node-pool-id": pool_id,
              "doks.digitalocean.com/version": DOKS_VERSION, "failure-domain.beta.kubernetes.io/region": DOKS_REGION,
              "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux",
              "node.kubernetes.io/instance-type": size, "region": DOKS_REGION,
              "topology.kubernetes.io/region": DOKS_REGION}
    cidr = pod_cidr(ordinal)
    return _node_object(
        node, labels, {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": f"digitalocean://{512345678 + ordinal}"},
        {"cpu": "4", "ephemeral-storage": "165089200Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
         "memory": "8148024Ki", "pods": "110"},
        {"cpu": "3900m", "ephemeral-storage": "152146206052", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
         "memory": "6694Mi", "pods": "110"},
        [{"type": "ExternalIP", "address": f"159.203.{114 + (21 + ordinal) // 250}.{(21 + ordinal) % 250}"}],
        {"containerRuntimeVersion": "containerd://1.7.24", "kernelVersion": "6.1.0-28-amd64",
         "kubeletVersion": "v1.34.1", "osImage": "Debian GNU/Linux 12 (bookworm)"},
        created, now)


def eks_node_object(node: Node, created: datetime, now: datetime) -> dict:
    """A Ready node of the EKS managed node group: an m5.xlarge on Amazon Linux 2023, without a podCIDR as on EKS
    (its pods still get the emulator's 10.244 addresses, not VPC ones)."""
    labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": EKS_INSTANCE_TYPE,
              "beta.kubernetes.io/os": "linux", "eks.amazonaws.com/capacityType": "ON_DEMAND",
              "eks.amazonaws.com/nodegroup": EKS_NODEGROUP, "eks.amazonaws.com/nodegroup-image": EKS_NODE_AMI,
              "failure-domain.beta.kubernetes.io/region": ECR_REGION, "failure-domain.beta.kubernetes.io/zone": EKS_ZONE,
              "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux",
              "node.kubernetes.io/instance-type": EKS_INSTANCE_TYPE, "topology.kubernetes.io/region": ECR_REGION,
              "topology.kubernetes.io/zone": EKS_ZONE}
    instance = "i-0" + hashlib.sha256(f"ec2 {node.name}".encode()).hexdigest()[:16]
    return _node_object(
        node, labels, {"providerID": f"aws:///{EKS_ZONE}/{instance}"},
        {"cpu": "4", "ephemeral-storage": "20959212Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
         "memory": "15896988Ki", "pods": "58"},
        {"cpu": "3920m", "ephemeral-storage": "18242267924", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
         "memory": "14880156Ki", "pods": "58"},
        [{"type": "InternalDNS", "address": node.name}],
        {"containerRuntimeVersion": "containerd://1.7.27", "kernelVersion": "6.1.134-152.225.amzn2023.x86_64",
         "kubeletVersion": "v1.34.1-eks-113cf36", "osImage": "Amazon Linux 2023.7.20250527"},
        created, now)


def node_objects(cluster: Cluster, created: datetime) -> list[dict]:
    if cluster.registry_type == "ecr":
        return [eks_node_object(node, created, cluster.now) for node in cluster.nodes]
    return [pool_node_object(node, ordinal, created, cluster.now) for ordinal, node in enumerate(cluster.nodes)]


def add_doks_cluster(digitalocean: DOWorld, node_names: list[str], created: datetime) -> None:
    """The owner's DOKS cluster behind the nodes: one pool of their size, integrated with the platform registry."""
    digitalocean.add_cluster(REGISTRY_USER, DOKS_CLUSTER, DOKS_REGION, DOKS_VERSION,
                             node_pools=((NODE_POOL, NODE_SIZE, len(node_names)),), pool_ids=(NODE_POOL_ID,),
                             node_names=(node_names,), registries=(REGISTRY_NAME,), created=created)


def _mongo_env() -> dict:
    return {"MONGO_NASIKO_HOST": "mongodb", "MONGO_NASIKO_PORT": "27017", "MONGO_NASIKO_DB": "nasiko",
            "MONGO_NASIKO_USER": "root", "MONGO_NASIKO_AUTH_SOURCE": "admin",
            "MONGO_NASIKO_PASSWORD": {"secretKeyRef": {"name": "mongodb", "key": "mongodb-root-password"}}}


def platform_image(component: str, registry_type: str = "digitalocean") -> str:
    """A platform component's image: its own repository on DigitalOcean, a tag of `nasiko-images` on ECR."""
    if registry_type == "ecr":
        return f"{ECR_PLATFORM_REGISTRY}:{component}-v1.4.2"
    return f"{DO_REGISTRY}/{REGISTRY_NAME}/{component}:v1.4.2"


def platform_deployments(registry_type: str = "digitalocean"
                         ) -> list[tuple[str, int, list[dict], list[tuple[str, int, int | str]], str]]:
    """(name, replicas, containers, service ports, service type) for every platform Deployment in ``nasiko``."""
    def image_of(component: str) -> str:
        return platform_image(component, registry_type)

    registry_url = ECR_HOST if registry_type == "ecr" else f"{DO_REGISTRY}/{REGISTRY_NAME}"
    build_env = {"BUILDKIT_ADDRESS": BUILDKIT_ADDRESS, "REGISTRY_URL": registry_url,
                 "K8S_NAMESPACE": "nasiko-agents", "REDIS_HOST": "redis-master", "REDIS_PORT": "6379", **_mongo_env()}
    return [
        ("nasiko-backend", 1, [container("nasiko-backend", image_of("nasiko-backend"), ports=[("http", 8000)],
                                         env={**_mongo_env(), "BUILDKIT_ADDRESS": BUILDKIT_ADDRESS,
                                              "REDIS_HOST": "redis-master",
                                              "OPENAI_API_KEY": {"secretKeyRef": {"name": "app-secrets", "key": "openai_api_key"}}},
                                         cpu="250m", memory="512Mi")], [("http", 8000, 8000)], "ClusterIP"),
        ("nasiko-web", 1, [container("nasiko-web", image_of("nasiko-web"), ports=[("http", 4000)],
                                     env={"NEXT_PUBLIC_API_URL": "/api"})], [("http", 4000, 4000)], "ClusterIP"),
        ("nasiko-auth", 1, [container("nasiko-auth", image_of("nasiko-auth"), ports=[("http", 8001)],
                                      env={**_mongo_env(), "JWT_SECRET": {"secretKeyRef": {"name": "app-secrets", "key": "jwt_secret"}}})],
         [("http", 8001, 8001)], "ClusterIP"),
        ("nasiko-router", 1, [container("nasiko-router", image_of("nasiko-router"), ports=[("http", 8000)],
                                        env={"BACKEND_URL": BACKEND_URL})], [("http", 8000, 8000)], "ClusterIP"),
        ("nasiko-k8s-build-worker", 2, [container("nasiko-k8s-build-worker", image_of("nasiko-k8s-build-worker"),
                                                  env=build_env, cpu="200m", memory="256Mi")], [], ""),
        ("kong-gateway", 1, [container("kong", "kong:3.4", ports=[("proxy", 8000), ("proxy-ssl", 8443), ("admin", 8001),
                                                                  ("manager", 8003)],
                                       env={"KONG_DATABASE": "postgres", "KONG_PG_HOST": "postgresql",
                                            "KONG_ADMIN_LISTEN": "0.0.0.0:8001", "KONG_PROXY_LISTEN": "0.0.0.0:8000",
                                            "KONG_PLUGINS": "bundled,nasiko-auth,chat-logger"}, cpu="250m", memory="512Mi"),
                             container("chat-history", image_of("chat-history"), ports=[("http", 8002)],
                                       env=_mongo_env())],
         [("proxy", 80, 8000), ("proxy-ssl", 443, 8443), ("admin", 8001, 8001), ("manager", 8003, 8003)], "LoadBalancer"),
        ("k8s-service-registry", 1, [container("k8s-service-registry", image_of("k8s-service-registry"),
                                               ports=[("http", 8080)],
                                               env={"KONG_ADMIN_URL": "http://kong-gateway.nasiko:8001",
                                                    "WATCH_NAMESPACE": "nasiko-agents"})],
         [("http", 8080, 8080)], "ClusterIP"),
    ]


def platform_log(name: str, container_name: str, started: datetime) -> str:
    """What a platform container prints at start (the service registry's log comes from its runs instead,
    see :mod:`nasiko_nb.sim.service_registry`)."""
    stamp = started.strftime("%Y-%m-%d %H:%M:%S")
    if container_name == "kong":
        return (f"{started.strftime('%Y/%m/%d %H:%M:%S')} [notice] 1#0: using the \"epoll\" event method\n"
                f"{started.strftime('%Y/%m/%d %H:%M:%S')} [notice] 1#0: start worker processes\n")
    if name == "nasiko-k8s-build-worker":
        return f"{stamp} INFO Build worker started; BuildKit at {BUILDKIT_ADDRESS}\n"
    return ("INFO:     Started server process [1]\nINFO:     Waiting for application startup.\n"
            "INFO:     Application startup complete.\nINFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)\n")


def agent_log(pod: dict) -> str:
    """What an agent container prints at start (uvicorn serving the A2A app on 5000)."""
    agent_name = next((e["value"] for c in pod["spec"]["containers"] for e in c.get("env", [])
                       if e["name"] == "AGENT_NAME"), "agent")
    return (f"INFO:     Started server process [1]\nINFO:     Waiting for application startup.\n"
            f"INFO:     {agent_name} ready (A2A card at /.well-known/agent.json)\n"
            f"INFO:     Uvicorn running on http://0.0.0.0:5000 (Press CTRL+C to quit)\n")


def add_logs_for_running_pods(cluster: Cluster, text_for) -> None:
    for pod in cluster.of_kind("Pod"):
        for status in pod.get("status", {}).get("containerStatuses", []) + pod.get("status", {}).get("initContainerStatuses", []):
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"], status["name"], False)
            if key in cluster.logs or ("running" not in status["state"] and "terminated" not in status["state"]):
                continue
            cluster.logs[key] = text_for(pod, status["name"])


def agent_template(agent: Agent, deployment_name: str) -> dict:
    env = {"AGENT_NAME": agent.name, "OWNER_ID": stable_uid("owner", "demo-user")[:24].replace("-", ""),
           "PORT": "5000", "NASIKO_BACKEND_URL": BACKEND_URL}
    return pod_template({"app": deployment_name},
                        [container("agent", agent.image, ports=[("http", 5000)], env=env, cpu="100m", memory="256Mi",
                                   limits=("500m", "512Mi"), pull_policy="Always")],
                        pull_secrets=["agent-registry-credentials"])


def build_job_template(agent: Agent, init_image: str = "curlimages/curl:8.11.1", *,
                       buildkit_host: str = BUILDKIT_ADDRESS) -> dict:
    download = container("download-agent", init_image, cpu="50m", memory="64Mi",
                         command=["sh", "-c", f"curl -fSL -o /workspace/agent.zip {BACKEND_URL}/api/v1/agents/{agent.name}/download"
                                             " && cd /workspace && unzip -o agent.zip"],
                         mounts=[{"name": "workspace", "mountPath": "/workspace"}])
    build = container("buildkit-client", "moby/buildkit:master-rootless", cpu="500m", memory="1Gi",
                      env={"BUILDKIT_HOST": buildkit_host, "DOCKER_CONFIG": "/home/user/.docker"},
                      command=["buildctl"],
                      args=["build", "--frontend", "dockerfile.v0", "--local", "context=/workspace",
                            "--local", "dockerfile=/workspace", "--output", f"type=image,name={agent.image},push=true"],
                      mounts=[{"name": "workspace", "mountPath": "/workspace"},
                              {"name": "harbor-auth", "mountPath": "/home/user/.docker", "readOnly": True}])
    volumes = [{"name": "workspace", "emptyDir": {}},
               {"name": "harbor-auth", "secret": {"secretName": "agent-registry-credentials", "defaultMode": 420,
                                                  "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}}]
    return pod_template({}, [build], init_containers=[download], volumes=volumes, restart_policy="Never")


#: What buildctl prints for every agent build before it pushes.
BUILD_STEPS = (
    "#1 [internal] load build definition from Dockerfile", "#1 transferring dockerfile: 412B done", "#1 DONE 0.1s",
    "#2 [internal] load metadata for docker.io/library/python:3.12-slim", "#2 DONE 1.2s",
    "#5 [2/5] WORKDIR /app", "#5 DONE 0.1s",
    "#7 [4/5] RUN pip install --no-cache-dir -r requirements.txt", "#7 DONE 23.4s",
    "#9 exporting to image", "#9 exporting layers 2.1s done",
)


def build_log(agent: Agent) -> str:
    digest = hashlib.sha256(agent.image.encode()).hexdigest()
    return "\n".join([
        *BUILD_STEPS,
        f"#9 exporting manifest sha256:{digest} done",
        "#9 pushing layers 4.8s done", f"#9 pushing manifest for {agent.image}@sha256:{digest}",
        f"#9 pushing manifest for {agent.image}@sha256:{digest} 0.6s done", "#9 DONE 8.1s", ""])


DOWNLOAD_LOG = (
    "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n"
    "                                 Dload  Upload   Total   Spent    Left  Speed\n"
    "100 18342  100 18342    0     0   812k      0 --:--:-- --:--:-- --:--:--  836k\n"
    "Archive:  agent.zip\n  inflating: Dockerfile\n  inflating: requirements.txt\n  inflating: src/main.py\n")


def run_build(cluster: Cluster, agent: Agent, *, pushed: bool = True) -> dict:
    """Run the agent's build Job; returns it (Complete, or Failed when DigitalOcean refuses the push).

    The push uses agent-registry-credentials as the Job mounts it, decided by :func:`push_refusal`; a refused
    push makes buildctl exit 1, and the job controller retries until backoffLimit is exceeded.
    ``pushed=False`` is a build whose image tag never reached the registry (later deleted, say).
    """
    job = build_job("nasiko-agents", agent.job, build_job_template(agent), agent.built, ttl=3600)
    refusal = push_refusal(cluster, agent.image, agent.built) if pushed else None
    if refusal is None:
        if pushed:
            push_image(cluster.world, agent.image, agent.built + timedelta(seconds=50))
        pods = [start_job(cluster, job, agent.built)]
        log = build_log(agent)
    else:
        pods = run_failing_job(cluster, job, agent.built, {"buildkit-client": 1})
        log = failed_build_log(agent, refusal)
    for pod in pods:
        key = ("nasiko-agents", pod["metadata"]["name"])
        cluster.logs[(*key, "download-agent", False)] = DOWNLOAD_LOG
        cluster.logs[(*key, "buildkit-client", False)] = log
    return job


def failed_build_log(agent: Agent, refusal: str) -> str:
    """buildctl's output when the build succeeds but the push is refused: BuildKit's error is the last line."""
    digest = hashlib.sha256(agent.image.encode()).hexdigest()
    config = hashlib.sha256(f"config {agent.image}".encode()).hexdigest()
    repository = agent.image.split("/", 1)[1].rsplit(":", 1)[0]
    return "\n".join([
        *BUILD_STEPS,
        f"#9 exporting manifest sha256:{digest} done", f"#9 exporting config sha256:{config} done",
        f"#9 naming to {agent.image} done", "#9 pushing layers",
        f"#10 [auth] {repository}:pull,push token for {agent.image.split('/', 1)[0]}", "#10 DONE 0.0s",
        "#9 pushing layers 0.4s done", f"#9 ERROR: {refusal}",
        "------", " > exporting to image:", "------", f"error: failed to solve: {refusal}", ""])


def add_agent(cluster: Cluster, agent: Agent, *, pushed: bool = True) -> None:
    """Build Job (Completed pod), then the agent Deployment/ReplicaSet/Pod and Service on port 80 -> 5000."""
    run_build(cluster, agent, pushed=pushed)
    deploy = deployment("nasiko-agents", agent.deployment, agent_template(agent, agent.deployment), agent.deployed,
                        labels={"app": agent.deployment})
    cluster.add(deploy)
    start_deployment(cluster, deploy, agent.deployed)
    cluster.add(service("nasiko-agents", agent.deployment, {"app": agent.deployment}, [("http", 80, 5000)],
                        agent.deployed, cluster.cluster_ip(), labels={"app": agent.deployment}))


def agent_deployment(cluster: Cluster, agent_name: str) -> dict:
    for deploy in cluster.of_kind("Deployment", "nasiko-agents"):
        if deploy["metadata"]["name"].startswith(f"agent-{agent_name}-"):
            return deploy
    raise KeyError(agent_name)


def refresh_endpoints(cluster: Cluster) -> None:
    """(Re)derive every Service's Endpoints and EndpointSlice from the current pods."""
    cluster.objects = [o for o in cluster.objects if o["kind"] not in ("Endpoints", "EndpointSlice")]
    pods_by_ns: dict[str, list[dict]] = {}
    for pod in cluster.of_kind("Pod"):
        pods_by_ns.setdefault(pod["metadata"]["namespace"], []).append(pod)
    for svc in cluster.of_kind("Service"):
        if svc["spec"].get("selector"):
            cluster.add(*endpoints_for(svc, pods_by_ns.get(svc["metadata"]["namespace"], [])))


def baseline(now: datetime | None = None, *, installed_ago: timedelta = timedelta(days=12, hours=5),
             token_expiry_s: int = YEAR_S, registry_type: str = "digitalocean", extra_nodes: int = 0) -> Cluster:
    """The healthy platform: 2 nodes (plus ``extra_nodes`` of the same pool), platform services in nasiko,
    BuildKit, two agents with their builds.

    The registry Secrets hold a read-write DigitalOcean registry token of the registry's owner, issued at
    install (``token_expiry_s``, 1 year by default); app-secrets' do_token is the owner's API token.
    With ``registry_type="ecr"`` the platform was bootstrapped with `--registry-type ECR`: images live in
    the account's ECR registry, the Secrets hold a 12-hour ECR login issued at install, and the CronJob
    ecr-credential-refresher in `default` (with its first Job ecr-refresher-init) keeps regcred fresh; the
    nodes are then an EKS managed node group's, else the DOKS cluster behind them is in the DigitalOcean world.
    """
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    born = now - max(timedelta(days=41, hours=3), installed_ago + timedelta(days=3))
    installed = now - installed_ago
    cluster = Cluster(now=now, world=registry_world(digitalocean_world(installed)),
                      nodes=nodes(registry_type, extra_nodes), registry_type=registry_type)
    if registry_type == "ecr":
        add_ecr_registry(cluster.world, installed)
    else:
        add_doks_cluster(cluster.digitalocean, [node.name for node in cluster.nodes], born)
    cluster.add(*node_objects(cluster, born))
    for ns in NAMESPACES:
        created = born if ns.startswith(("kube-", "default")) else installed
        labels = {"kubernetes.io/metadata.name": ns}
        cluster.add({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(ns, None, created, labels=labels),
                     "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        cluster.add({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("default", ns, created)})
        cluster.add({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": meta("kube-root-ca.crt", ns, created,
                                      annotations={"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}),
                     "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIDJzCCAg+gAwIBAgICBnUwDQYJKoZIhvcNAQELBQAwMzEVMBMGA1UEChMMRGln\n-----END CERTIFICATE-----\n"}})

    if registry_type == "ecr":
        cluster.set_registry_secrets(cluster.issue_ecr_token(installed), installed)
    else:
        cluster.set_registry_secrets(cluster.issue_registry_token(REGISTRY_USER, installed,
                                                                  expiry_seconds=token_expiry_s), installed)
    cluster.digitalocean_token = cluster.digitalocean.api_token(REGISTRY_USER)
    cluster.secret_values.append(cluster.digitalocean_token)
    SECRET_VALUES.add(cluster.digitalocean_token)
    app_secrets = {**APP_SECRETS, "do_token": cluster.digitalocean_token}
    cluster.add({"apiVersion": "v1", "kind": "Secret", "metadata": meta("app-secrets", "nasiko", installed),
                 "type": "Opaque", "data": {k: b64(v) for k, v in app_secrets.items()}})
    cluster.add({"apiVersion": "v1", "kind": "Secret",
                 "metadata": meta("mongodb", "nasiko", installed,
                                  labels={"app.kubernetes.io/name": "mongodb", "app.kubernetes.io/instance": "mongodb",
                                          "app.kubernetes.io/managed-by": "Helm"}),
                 "type": "Opaque", "data": {"mongodb-root-password": b64(MONGO_ROOT_PASSWORD)}})
    cluster.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("nasiko-config", "nasiko", installed),
                 "data": {"REGISTRY_TYPE": "ECR" if registry_type == "ecr" else "digitalocean",
                          "REGISTRY_URL": cluster.agent_registry,
                          "BUILDKIT_ADDRESS": BUILDKIT_ADDRESS, "AGENTS_NAMESPACE": "nasiko-agents"}})

    # kube-system: CoreDNS behind kube-dns 10.245.0.10
    coredns = deployment("kube-system", "coredns", pod_template(
        {"k8s-app": "kube-dns"}, [container("coredns", "registry.k8s.io/coredns/coredns:v1.11.3",
                                            ports=[("dns", 53), ("metrics", 9153)], cpu="100m", memory="70Mi",
                                            args=["-conf", "/etc/coredns/Corefile"])]), born, replicas=2,
        labels={"k8s-app": "kube-dns"})
    cluster.add(coredns)
    start_deployment(cluster, coredns, born + timedelta(minutes=2))
    cluster.add(service("kube-system", "kube-dns", {"k8s-app": "kube-dns"}, [("dns", 53, 53), ("metrics", 9153, 9153)],
                        born, "10.245.0.10", labels={"k8s-app": "kube-dns"}))

    # databases installed by Helm Jobs
    for release, image in (("mongodb", "docker.io/bitnami/mongodb:8.0.4-debian-12-r0"),
                           ("redis", "docker.io/bitnami/redis:7.4.1-debian-12-r2"),
                           ("postgresql", "docker.io/bitnami/postgresql:17.2.0-debian-12-r3")):
        job = build_job("nasiko", f"{release}-install", pod_template(
            {}, [container("helm", "alpine/helm:3.14.0", args=["upgrade", "--install", release, f"bitnami/{release}",
                                                               "--namespace", "nasiko", "--wait"])],
            restart_policy="Never", service_account="default"), installed, backoff_limit=4)
        start_job(cluster, job, installed)
    helm = {"app.kubernetes.io/managed-by": "Helm"}
    mongo_labels = {"app.kubernetes.io/name": "mongodb", "app.kubernetes.io/instance": "mongodb",
                    "app.kubernetes.io/component": "mongodb"}
    mongo = deployment("nasiko", "mongodb", pod_template(mongo_labels, [container(
        "mongodb", "docker.io/bitnami/mongodb:8.0.4-debian-12-r0", ports=[("mongodb", 27017)], cpu="250m", memory="512Mi",
        env={"MONGODB_ROOT_USER": "root",
             "MONGODB_ROOT_PASSWORD": {"secretKeyRef": {"name": "mongodb", "key": "mongodb-root-password"}}})]),
        installed + timedelta(minutes=1), labels={**mongo_labels, **helm})
    cluster.add(mongo)
    start_deployment(cluster, mongo, installed + timedelta(minutes=1))
    cluster.add(service("nasiko", "mongodb", mongo_labels, [("mongodb", 27017, "mongodb")], installed,
                        cluster.cluster_ip(), labels={**mongo_labels, **helm}))
    for name, release, image, port, port_name, svc_name in (
            ("redis-master", "redis", "docker.io/bitnami/redis:7.4.1-debian-12-r2", 6379, "redis", "redis-master"),
            ("postgresql", "postgresql", "docker.io/bitnami/postgresql:17.2.0-debian-12-r3", 5432, "tcp-postgresql", "postgresql")):
        labels = {"app.kubernetes.io/name": release, "app.kubernetes.io/instance": release,
                  "app.kubernetes.io/component": "master" if release == "redis" else "primary"}
        headless = f"{release}-headless" if release == "redis" else "postgresql-hl"
        statefulset(cluster, "nasiko", name, pod_template(labels, [container(release, image, ports=[(port_name, port)],
                                                                             cpu="100m", memory="256Mi")]),
                    installed + timedelta(minutes=1), headless)
        cluster.add(service("nasiko", svc_name, labels, [(port_name, port, port_name)], installed, cluster.cluster_ip(),
                            labels={**labels, **helm}))
        headless_svc = service("nasiko", headless, labels, [(port_name, port, port_name)], installed, "None",
                               labels={**labels, **helm})
        headless_svc["spec"]["clusterIPs"] = ["None"]
        headless_svc["spec"]["publishNotReadyAddresses"] = True
        cluster.add(headless_svc)

    # BuildKit
    buildkit_created = installed + timedelta(minutes=3)
    cluster.add({"apiVersion": "v1", "kind": "PersistentVolume",
                 "metadata": meta(f"pvc-{stable_uid('pvc', 'buildkit-cache')}", None, buildkit_created,
                                  annotations={"pv.kubernetes.io/provisioned-by": "dobs.csi.digitalocean.com"}),
                 "spec": {"capacity": {"storage": "50Gi"}, "accessModes": ["ReadWriteOnce"],
                          "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "do-block-storage",
                          "volumeMode": "Filesystem",
                          "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "buildkit", "name": "buildkit-cache",
                                       "uid": stable_uid("pvc", "buildkit-cache"), "apiVersion": "v1"},
                          "csi": {"driver": "dobs.csi.digitalocean.com", "fsType": "ext4",
                                  "volumeHandle": stable_uid("volume", "buildkit-cache")}},
                 "status": {"phase": "Bound"}})
    cluster.add({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": meta("buildkit-cache", "buildkit", buildkit_created, uid=stable_uid("pvc", "buildkit-cache"),
                                  annotations={"pv.kubernetes.io/bind-completed": "yes",
                                               "volume.kubernetes.io/storage-provisioner": "dobs.csi.digitalocean.com"}),
                 "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}},
                          "storageClassName": "do-block-storage", "volumeMode": "Filesystem",
                          "volumeName": f"pvc-{stable_uid('pvc', 'buildkit-cache')}"},
                 "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "50Gi"}}})
    buildkitd = deployment("buildkit", "buildkitd", pod_template(
        {"app": "buildkitd"},
        [container("buildkitd", "moby/buildkit:v0.13.2-rootless", ports=[("buildkit", 1234)], cpu="500m", memory="1Gi",
                   args=["--addr", "unix:///run/user/1000/buildkit/buildkitd.sock", "--addr", "tcp://0.0.0.0:1234",
                         "--oci-worker-no-process-sandbox"],
                   env={"BUILDKITD_FLAGS": "--oci-worker-no-process-sandbox", "DOCKER_CONFIG": "/home/user/.docker"},
                   mounts=[{"name": "buildkit-cache", "mountPath": "/home/user/.local/share/buildkit"},
                           {"name": "docker-config", "mountPath": "/home/user/.docker", "readOnly": True}])],
        volumes=[{"name": "buildkit-cache", "persistentVolumeClaim": {"claimName": "buildkit-cache"}},
                 {"name": "docker-config", "secret": {"secretName": "regcred", "defaultMode": 420,
                                                      "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}}]),
        buildkit_created)
    cluster.add(buildkitd)
    start_deployment(cluster, buildkitd, buildkit_created)
    cluster.add(service("buildkit", "buildkitd", {"app": "buildkitd"}, [("buildkit", 1234, 1234)], buildkit_created,
                        cluster.cluster_ip()))

    # platform deployments in nasiko
    agents = [Agent("a2a-github-agent", now - timedelta(minutes=44), now - timedelta(minutes=41),
                    cluster.agent_registry),
              Agent("weather-agent", now - timedelta(minutes=29), now - timedelta(minutes=26), cluster.agent_registry)]
    if registry_type == "ecr":
        for agent in agents:
            cluster.world.registries[ECR_HOST].add(agent.name)
        add_ecr_refresher(cluster, installed)
    for index, (name, replicas, containers, ports, kind) in enumerate(platform_deployments(registry_type)):
        created = installed + timedelta(minutes=5, seconds=7 * index)
        deploy = deployment("nasiko", name, pod_template({"app": name}, containers, pull_secrets=["regcred"]),
                            created, replicas=replicas)
        cluster.add(deploy)
        start_deployment(cluster, deploy, created)
        if ports:
            cluster.add(service("nasiko", name, {"app": name}, ports, created, cluster.cluster_ip(), kind=kind))

    for agent in agents:
        add_agent(cluster, agent)
    cluster.agents = agents

    def log_text(pod: dict, container_name: str) -> str:
        app = pod["metadata"].get("labels", {}).get("app", "")
        started = datetime.strptime(pod["status"]["startTime"], "%Y-%m-%dT%H:%M:%SZ")
        if pod["metadata"]["namespace"] == "nasiko-agents" and container_name == "agent":
            return agent_log(pod)
        if container_name == "helm":
            return f"Release \"{pod['metadata']['name'].rsplit('-install', 1)[0]}\" has been upgraded. Happy Helming!\n"
        if app:
            return platform_log(app, container_name, started)
        return f"{started.isoformat()}Z {container_name} started\n"

    add_logs_for_running_pods(cluster, log_text)
    cluster.kong.hostname = next(p["metadata"]["name"] for p in cluster.of_kind("Pod", "nasiko")
                                 if p["metadata"]["labels"].get("app") == "kong-gateway")
    start_cluster_registry(cluster)
    refresh_endpoints(cluster)
    return cluster


REFRESHER_SCRIPT = f"""set -e
TOKEN=$(aws ecr get-login-password --region {ECR_REGION})
for NS in nasiko buildkit; do
  kubectl delete secret regcred -n $NS --ignore-not-found
  kubectl create secret docker-registry regcred -n $NS \\
    --docker-server={ECR_HOST} --docker-username=AWS --docker-password="$TOKEN"
done
"""
REFRESHER_DENIED = (f"An error occurred (AccessDeniedException) when calling the GetAuthorizationToken operation: "
                    f"User: arn:aws:sts::{ECR_ACCOUNT}:assumed-role/nasiko-ecr-refresher/botocore-session-1747 is not "
                    "authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy "
                    "allows the ecr:GetAuthorizationToken action")


def refresher_template() -> dict:
    return pod_template({}, [container("refresher", REFRESHER_IMAGE, cpu="50m", memory="64Mi",
                                       command=["/bin/sh", "-c"], args=[REFRESHER_SCRIPT])],
                        restart_policy="Never", service_account=REFRESHER_SERVICE_ACCOUNT)


def add_ecr_refresher(cluster: Cluster, installed: datetime) -> dict:
    """The CronJob the ECR bootstrap installs in `default` (every 6 h, IRSA ServiceAccount ecr-refresher-sa),
    and its first run ecr-refresher-init, which made the regcred Secrets at install."""
    cluster.add({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": meta(REFRESHER_SERVICE_ACCOUNT, "default", installed,
                                  annotations={"eks.amazonaws.com/role-arn": REFRESHER_ROLE})})
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob",
               "metadata": {**meta(REFRESHER, "default", installed), "generation": 1},
               "spec": {"schedule": "0 */6 * * *", "concurrencyPolicy": "Forbid", "suspend": False,
                        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                        "jobTemplate": {"metadata": {}, "spec": {"backoffLimit": 1, "template": refresher_template()}}},
               "status": {}}
    cluster.add(cronjob)
    init = build_job("default", "ecr-refresher-init", refresher_template(), installed)
    pod = start_job(cluster, init, installed)
    cluster.logs[("default", pod["metadata"]["name"], "refresher", False)] = _refresher_log()
    return cronjob


def _refresher_log() -> str:
    """The refresher deletes and recreates regcred in nasiko and in buildkit (it never touches the agents' secret)."""
    return 2 * 'secret "regcred" deleted\nsecret/regcred created\n'


def run_ecr_refresher(cluster: Cluster, scheduled: datetime, *, denied: bool = False) -> dict:
    """One scheduled run of the refresher: a Job named after its schedule time; on success regcred (nasiko,
    buildkit) is deleted and created again with a new ECR login; ``denied`` is IAM refusing the login."""
    cronjob = cluster.find("CronJob", "default", REFRESHER)
    job = build_job("default", f"{REFRESHER}-{int(scheduled.timestamp()) // 60}",
                    cronjob["spec"]["jobTemplate"]["spec"]["template"], scheduled)
    job["metadata"]["ownerReferences"] = [owner_reference(cronjob)]
    status = cronjob["status"]
    status["lastScheduleTime"] = iso(scheduled)
    if denied:
        pods = run_failing_job(cluster, job, scheduled, {"refresher": 254})
        log = REFRESHER_DENIED + "\n"
    else:
        pods = [start_job(cluster, job, scheduled)]
        refreshed = scheduled + timedelta(seconds=20)
        cluster.set_registry_secrets(cluster.issue_ecr_token(refreshed), refreshed,
                                     names=(("nasiko", "regcred"), ("buildkit", "regcred")))
        status["lastSuccessfulTime"] = job["status"]["completionTime"]
        log = _refresher_log()
    for pod in pods:
        cluster.logs[("default", pod["metadata"]["name"], "refresher", False)] = log
    emit_controller_event(cluster, cronjob, "SuccessfulCreate", f"Created job {job['metadata']['name']}", scheduled,
                          "cronjob-controller")
    return job


def add_extra_pods(cluster: Cluster, count: int) -> None:
    """``count`` more healthy pods (Deployments of 1..5 replicas) spread over namespaces, for scale tests."""
    if count <= 0:
        return
    namespaces = ["nasiko-agents", "nasiko"]   # where the runbooks read, so scale tests load what they list
    rng = random.Random(count)
    made, index = 0, 0
    pods_by_ns: dict[str, list[dict]] = {}
    while made < count:
        replicas = min(rng.randint(1, 5), count - made)
        ns = namespaces[index % len(namespaces)]
        name = f"load-{ns.split('-')[-1]}-{index:05d}"
        started = cluster.now - timedelta(minutes=rng.randint(2, 55))
        deploy = deployment(ns, name, pod_template({"app": name}, [container(
            "app", "nginx:1.27", ports=[("http", 80)], cpu="10m", memory="16Mi")]), started, replicas=replicas)
        before = len(cluster.objects)
        cluster.add(deploy)
        start_deployment(cluster, deploy, started)
        svc = service(ns, name, {"app": name}, [("http", 80, "http")], started, cluster.cluster_ip())
        cluster.add(svc)
        new_pods = [o for o in cluster.objects[before:] if o["kind"] == "Pod"]
        pods_by_ns.setdefault(ns, []).extend(new_pods)
        cluster.add(*endpoints_for(svc, new_pods))
        made += replicas
        index += 1


_EXTRA_EVENTS = (("Pulled", 'Container image "nginx:1.27" already present on machine', "Normal"),
                 ("Created", "Created container: app", "Normal"), ("Started", "Started container app", "Normal"),
                 ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", "Warning"))


def add_extra_events(cluster: Cluster, count: int) -> None:
    """``count`` more events about the pods of nasiko-agents and nasiko (pulls, starts, a readiness warning),
    spread over the last 50 minutes, for scale tests."""
    pods = [o for o in cluster.objects if o["kind"] == "Pod"
            and o["metadata"].get("namespace") in ("nasiko-agents", "nasiko")]
    if count <= 0 or not pods:
        return
    sink = EventSink(cluster.now, expire=False)
    for index in range(count):
        pod = pods[index % len(pods)]
        reason, message, type_ = _EXTRA_EVENTS[(index // len(pods)) % len(_EXTRA_EVENTS)]
        sink.emit(pod, reason, message, type_=type_, first=cluster.now - timedelta(seconds=(index * 7) % 3000),
                  host=pod["spec"].get("nodeName", ""), field_path="spec.containers{app}")
        sink.events[-1]["metadata"]["name"] = f"{pod['metadata']['name']}.{index:08x}"   # unique at any count
    cluster.add(*sink.events)


# ---- failing builds, scheduling, node pressure ------------------------------------------------------

def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def run_failed_build(cluster: Cluster, agent: Agent, logs: list[str], *, template: dict | None = None,
                     exit_codes: dict[str, int] | None = None, durations: dict[str, timedelta] | None = None,
                     download_log: str = DOWNLOAD_LOG, ttl: int | None = 3600) -> tuple[dict, list[dict]]:
    """A build Job whose every attempt fails (buildkit-client exits 1 unless ``exit_codes`` says otherwise);
    attempt i's buildkit-client log is ``logs[i % len(logs)]`` (the last lines are buildctl's error)."""
    job = build_job("nasiko-agents", agent.job, template or build_job_template(agent), agent.built, ttl=ttl)
    exit_codes = exit_codes or {"buildkit-client": 1}
    pods = run_failing_job(cluster, job, agent.built, exit_codes, durations)
    for attempt, pod in enumerate(pods):
        key = ("nasiko-agents", pod["metadata"]["name"])
        statuses = {s["name"]: s for s in pod["status"].get("initContainerStatuses", [])
                    + pod["status"]["containerStatuses"]}
        if "terminated" in statuses["download-agent"]["state"]:
            cluster.logs[(*key, "download-agent", False)] = download_log
        if "terminated" in statuses["buildkit-client"]["state"]:
            cluster.logs[(*key, "buildkit-client", False)] = logs[attempt % len(logs)]
    return job, pods


def node_fits(cluster: Cluster) -> list[NodeFit]:
    """Each Node's allocatable minus the requests of the pods bound to it that have not finished, its taints."""
    used: dict[str, tuple[int, int]] = {}
    for pod in cluster.of_kind("Pod"):
        node = pod["spec"].get("nodeName")
        if node and pod["status"].get("phase") not in ("Succeeded", "Failed"):
            cpu, memory = pod_requests(pod["spec"])
            before = used.get(node, (0, 0))
            used[node] = (before[0] + cpu, before[1] + memory)
    fits = []
    for obj in cluster.of_kind("Node"):
        name, allocatable = obj["metadata"]["name"], obj["status"]["allocatable"]
        cpu, memory = used.get(name, (0, 0))
        fits.append(NodeFit(name, parse_cpu(allocatable["cpu"]) - cpu, parse_memory(allocatable["memory"]) - memory,
                            tuple(obj["spec"].get("taints", [])), bool(obj["spec"].get("unschedulable"))))
    return fits


def pending_build(cluster: Cluster, agent: Agent, template: dict) -> tuple[dict, dict]:
    """A build Job created at ``agent.built`` whose pod the scheduler cannot place: it stays Pending with the
    FailedScheduling message derived from the nodes (their free allocatable and taints); the Job stays active."""
    from nasiko_nb.sim.kubelet import leave_unschedulable, unschedulable_message
    job = build_job("nasiko-agents", agent.job, template, agent.built, ttl=3600)
    pod = pod_from_template(job, job["spec"]["template"], pod_name(agent.job, job["metadata"]["uid"]), agent.built)
    message = unschedulable_message(pod["spec"], node_fits(cluster))
    if message is None:
        raise ValueError(f"build pod of {agent.job} fits a node: nothing keeps it Pending")
    cluster.add(pod, *leave_unschedulable(pod, message, agent.built, cluster.now))
    emit_controller_event(cluster, job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", agent.built,
                          "job-controller")
    job["status"] = {"startTime": iso(agent.built), "active": 1, "ready": 0, "terminating": 0,
                     "uncountedTerminatedPods": {}}
    cluster.add(job)
    return job, pod


def memory_eviction_message(container_name: str, using: str, request: str, available: str = "92Mi") -> str:
    """The kubelet's message on a pod evicted for memory (threshold memory.available<100Mi)."""
    return (f"The node was low on resource: memory. Threshold quantity: 100Mi, available: {available}. "
            f"Container {container_name} was using {using}, request is {request}, has larger consumption of memory.")


def evict_and_replace(cluster: Cluster, pod: dict, at: datetime, message: str, node: Node | None = None) -> dict:
    """The kubelet evicts ``pod`` at ``at``; its ReplicaSet creates a replacement at once (on ``node`` if given,
    as the scheduler would when the pod's node is tainted). Returns the replacement pod."""
    from nasiko_nb.sim.kubelet import evict_pod
    cluster.add(*evict_pod(pod, at, cluster.now, message))
    name = pod["metadata"]["name"]
    cluster.logs = {k: v for k, v in cluster.logs.items() if (k[0], k[1]) != (pod["metadata"]["namespace"], name)}
    rs_uid = pod["metadata"]["ownerReferences"][0]["uid"]
    rs = next(o for o in cluster.of_kind("ReplicaSet", pod["metadata"]["namespace"]) if o["metadata"]["uid"] == rs_uid)
    created = at + timedelta(seconds=1)
    fresh = pod_from_template(rs, rs["spec"]["template"], pod_name(rs["metadata"]["name"], f"{name}/replacement"),
                              created)
    fresh = run_workload_pod(cluster, fresh, created, node=node)
    emit_controller_event(cluster, rs, "SuccessfulCreate", f"Created pod: {fresh['metadata']['name']}", created,
                          "replicaset-controller")
    for status in fresh["status"]["containerStatuses"]:
        if status["name"] == "agent":
            cluster.logs[(fresh["metadata"]["namespace"], fresh["metadata"]["name"], "agent", False)] = agent_log(fresh)
    return fresh


def set_node_condition(node_obj: dict, kind: str, status: str, reason: str, message: str, since: datetime) -> None:
    for condition in node_obj["status"]["conditions"]:
        if condition["type"] == kind:
            condition.update({"status": status, "reason": reason, "message": message,
                              "lastTransitionTime": iso(since)})
