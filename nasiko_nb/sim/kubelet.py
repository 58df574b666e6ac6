"""Simulated kubelet: decides how a pod's containers start, from a small model of the image registries.

Scenarios and controllers never write container states by hand: they describe the registries, the
Secrets and the pod spec, and this module derives what a real kubelet with containerd would report
(state, ``state.waiting.message``, Warning events), with the wording of Kubernetes 1.34 and containerd 1.7.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Mapping
from urllib.parse import quote

if TYPE_CHECKING:
    from nasiko_nb.sim.digitalocean import DOWorld

CLUSTER_DNS = "10.245.0.10"
DOCKER_HUB = "docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?")


class InvalidReference(ValueError):
    """An image reference containerd cannot parse; the text is the parser's own wording."""


@dataclass(frozen=True)
class ImageRef:
    host: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def full(self) -> str:
        """The fully qualified form containerd prints in its errors (docker.io/library/kong:3.4)."""
        tail = f":{self.tag}" if self.tag else ""
        return f"{self.host}/{self.repository}{tail}" + (f"@{self.digest}" if self.digest else "")

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"


def parse_image(image: str) -> ImageRef:
    """Parse an image reference the way the Docker reference grammar does (default tag latest).

    Deliberately separate from ``nasiko_nb.images``: the simulated runtime is the oracle the detectors
    are tested against, and a shared parser would hide a parsing bug from both sides.
    """
    if not image or image != image.strip():
        raise InvalidReference("invalid reference format")
    name, digest = image, None
    if "@" in image:
        name, digest = image.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidReference("invalid reference format")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise InvalidReference("invalid reference format")
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host, path = parts[0], "/".join(parts[1:])
        if not _HOST.fullmatch(host):
            raise InvalidReference("invalid reference format")
    else:
        host, path = DOCKER_HUB, name
        if len(parts) == 1:
            path = f"library/{name}"
    if not _REPOSITORY.fullmatch(path):
        if _REPOSITORY.fullmatch(path.lower()):
            raise InvalidReference("invalid reference format: repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(host, path, tag, digest)


@dataclass
class Registry:
    """One registry host: its repositories and tags, who may pull, and how it words refusals."""

    host: str
    style: str                                    # "digitalocean" | "dockerhub" | "basic" | "ecr"
    repositories: dict[str, set[str]] = field(default_factory=dict)
    public_repositories: set[str] = field(default_factory=set)   # anonymous pull allowed
    accounts: dict[str, str] = field(default_factory=dict)       # username -> password/token
    issued: dict[str, datetime] = field(default_factory=dict)    # ECR: authorization token -> when it was issued

    def add(self, repository: str, *tags: str, public: bool = False) -> None:
        self.repositories.setdefault(repository, set()).update(tags)
        if public:
            self.public_repositories.add(repository)


@dataclass
class RegistryWorld:
    """Every registry host reachable from the cluster; ``permissive`` accepts any image (snapshot replay).

    Registries of style "digitalocean" are decided by ``digitalocean`` (the simulated DigitalOcean's
    accounts, tokens and repositories), so the kubelet and the fake DigitalOcean API never disagree.
    """

    registries: dict[str, Registry] = field(default_factory=dict)
    permissive: bool = False
    digitalocean: "DOWorld | None" = None

    def add(self, registry: Registry) -> Registry:
        self.registries[registry.host] = registry
        return registry


@dataclass(frozen=True)
class PullOutcome:
    """What pulling one image gives: ok with an image ID, or the reason and containerd's error text."""

    image: str
    image_id: str = ""
    reason: str | None = None          # None (pulled), "ErrImagePull" or "InvalidImageName"
    message: str = ""                   # containerd/kubelet error text, as state.waiting.message carries it
    missing_secrets: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None


def docker_credentials(secret: dict) -> dict[str, tuple[str, str]]:
    """Registry host -> (username, password) from a dockerconfigjson or dockercfg Secret."""
    data = secret.get("data") or {}
    raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
    if not raw:
        return {}
    try:
        config = json.loads(base64.b64decode(raw))
    except (ValueError, TypeError):
        return {}
    auths = config.get("auths", config) if isinstance(config, dict) else {}
    found = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        host = re.sub(r"^https?://", "", key).split("/", 1)[0]
        user, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        if user is not None and password is not None:
            found[host] = (user, password)
    return found


def image_digest(ref: ImageRef) -> str:
    return "sha256:" + hashlib.sha256(f"{ref.host}/{ref.repository}:{ref.reference}".encode()).hexdigest()


def _unpack_prefix(ref: ImageRef, code: str) -> str:
    return (f"rpc error: code = {code} desc = failed to pull and unpack image \"{ref.full}\": "
            f"failed to resolve reference \"{ref.full}\": ")


def _refusal(registry: Registry, ref: ImageRef) -> str:
    """The 401/403 text each registry style produces when the pull is not authorized."""
    if registry.style == "digitalocean":
        scope = quote(f"repository:{ref.repository}:pull", safe="")
        return (_unpack_prefix(ref, "Unknown") + "failed to authorize: failed to fetch oauth token: unexpected status "
                f"from GET request to https://api.digitalocean.com/v2/registry/auth?scope={scope}"
                f"&service={registry.host}: 401 Unauthorized")
    if registry.style == "dockerhub":
        return _insufficient_scope(ref)
    return (_unpack_prefix(ref, "Unknown") + f"unexpected status from HEAD request to "
            f"https://{registry.host}/v2/{ref.repository}/manifests/{ref.reference}: 401 Unauthorized")


def _insufficient_scope(ref: ImageRef) -> str:
    """containerd's text when the token service authenticated the client but granted nothing on the repository."""
    return (_unpack_prefix(ref, "Unknown") + "pull access denied, repository does not exist or may require "
            "authorization: server message: insufficient_scope: authorization failed")


def _not_found(ref: ImageRef) -> str:
    return _unpack_prefix(ref, "NotFound") + f"{ref.full}: not found"


def digitalocean_access(world: "DOWorld", password: str | None, repository: str, at: datetime) -> frozenset[str] | None:
    """What DigitalOcean's token service grants ``password`` on ``repository`` ("<registry>/<repo>") at ``at``.

    None means it answers 401 (unknown, revoked or expired token); an empty set means the token is
    valid but the repository is not under the token's account's registry.
    """
    with world.lock:
        token = world.tokens.get(password or "")
        if token is None or not token.usable(at):
            return None
        account = world.accounts.get(token.account)
        registry_name, _, rest = repository.partition("/")
        if account is None or not rest or registry_name not in {r.name for r in account.registries}:
            return frozenset()
        return frozenset({"pull", "push"} if token.read_write else {"pull"})


def _try_digitalocean_pull(registry: Registry, world: "DOWorld", ref: ImageRef,
                           credential: tuple[str, str] | None, at: datetime) -> tuple[str | None, str]:
    """(error text or None, image digest) of a pull from registry.digitalocean.com as DigitalOcean decides it."""
    granted = digitalocean_access(world, credential[1] if credential else None, ref.repository, at)
    if granted is None:
        return _refusal(registry, ref), ""
    if "pull" not in granted:
        return _insufficient_scope(ref), ""
    registry_name, _, repository = ref.repository.partition("/")
    with world.lock:
        stored = world.find_registry(registry_name)
        manifests = list(stored.repositories.get(repository, [])) if stored else []
    for manifest in manifests:
        if (ref.digest and manifest.digest == ref.digest) or (not ref.digest and ref.tag in manifest.tags):
            return None, manifest.digest
    return _not_found(ref), ""


ECR_TOKEN_LIFETIME = timedelta(hours=12)
ECR_USER = "AWS"


def ecr_refusal(registry: Registry, credential: tuple[str, str] | None, at: datetime) -> str | None:
    """Why ECR refuses ``credential`` at ``at`` (None: accepted): no login, an unknown token, or one older than 12 h.

    ECR challenges with Basic auth; containerd sends nothing without credentials for the host and ECR
    answers an expired authorization token with its DENIED body.
    """
    if credential is None:
        return "pull access denied, repository does not exist or may require authorization: authorization failed: " \
               "no basic auth credentials"
    issued = registry.issued.get(credential[1])
    if credential[0] != ECR_USER or issued is None:
        return "401 Unauthorized: not authorized: the security token included in the request is invalid"
    if at - issued > ECR_TOKEN_LIFETIME:
        return "401 Unauthorized: denied: Your authorization token has expired. Reauthenticate and try again."
    return None


def _try_ecr_pull(registry: Registry, ref: ImageRef, credential: tuple[str, str] | None, at: datetime) -> str | None:
    refusal = ecr_refusal(registry, credential, at)
    if refusal is not None and credential is None:
        return _unpack_prefix(ref, "Unknown") + refusal
    if refusal is not None:
        return (_unpack_prefix(ref, "Unknown") + f"unexpected status from GET request to "
                f"https://{registry.host}/v2/{ref.repository}/manifests/{ref.reference}: {refusal}")
    tags = registry.repositories.get(ref.repository)
    if tags is None or (ref.tag and ref.tag not in tags and not ref.digest):
        return _not_found(ref)
    return None


def _try_pull(registry: Registry, ref: ImageRef, credential: tuple[str, str] | None) -> str | None:
    """None when the pull succeeds, else the error text."""
    if credential is not None and registry.accounts.get(credential[0]) != credential[1]:
        return _refusal(registry, ref)
    authorized = credential is not None or ref.repository in registry.public_repositories
    if not authorized:
        return _refusal(registry, ref)
    tags = registry.repositories.get(ref.repository)
    if tags is None and registry.style == "dockerhub":
        return _refusal(registry, ref)
    if tags is None or (ref.tag and ref.tag not in tags and not ref.digest):
        return _not_found(ref)
    return None


def pull_image(image: str, pull_secret_names: Iterable[str], secrets: Mapping[str, dict],
               world: RegistryWorld, at: datetime | None = None) -> PullOutcome:
    """Decide one container image pull from the image, the pod's imagePullSecrets and the namespace's Secrets.

    ``at`` is when the kubelet pulls (default now): a token that expired since still pulled then.
    """
    names = list(pull_secret_names)
    missing = tuple(name for name in names if name not in secrets)
    try:
        ref = parse_image(image)
    except InvalidReference as exc:
        message = f"Failed to apply default image tag \"{image}\": couldn't parse image reference \"{image}\": {exc}"
        return PullOutcome(image, reason="InvalidImageName", message=message, missing_secrets=missing)
    if world.permissive:
        return PullOutcome(image, image_id=f"{ref.host}/{ref.repository}@{image_digest(ref)}", missing_secrets=missing)
    registry = world.registries.get(ref.host)
    if registry is None:
        message = (_unpack_prefix(ref, "Unknown") + f"failed to do request: Head \"https://{ref.host}/v2/{ref.repository}"
                   f"/manifests/{ref.reference}\": dial tcp: lookup {ref.host} on {CLUSTER_DNS}:53: no such host")
        return PullOutcome(image, reason="ErrImagePull", message=message, missing_secrets=missing)
    credentials = [docker_credentials(secrets[name]).get(ref.host) for name in names if name in secrets]
    attempts = [c for c in credentials if c is not None] or [None]
    at = at or datetime.now(timezone.utc)
    error = None
    for credential in attempts:
        if registry.style == "digitalocean" and world.digitalocean is not None:
            error, digest = _try_digitalocean_pull(registry, world.digitalocean, ref, credential, at)
        elif registry.style == "ecr":
            error, digest = _try_ecr_pull(registry, ref, credential, at), image_digest(ref)
        else:
            error, digest = _try_pull(registry, ref, credential), image_digest(ref)
        if error is None:
            return PullOutcome(image, image_id=f"{ref.host}/{ref.repository}@{digest}", missing_secrets=missing)
    return PullOutcome(image, reason="ErrImagePull", message=error, missing_secrets=missing)


# ---- pod status and events ------------------------------------------------------------------------

BACKOFF_MAX = timedelta(seconds=300)
EVENT_TTL = timedelta(hours=1)
SPAM_FILTER_BURST = timedelta(minutes=4)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _short_hex(*parts: str, length: int = 16) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


@dataclass
class EventSink:
    """Collects the events one pod start produces, dropping those a real cluster would have expired."""

    now: datetime
    expire: bool = True
    events: list[dict] = field(default_factory=list)

    def emit(self, obj: dict, reason: str, message: str, *, type_: str = "Normal", first: datetime,
             last: datetime | None = None, count: int = 1, component: str = "kubelet", host: str = "",
             field_path: str = "") -> None:
        last = last or first
        if self.expire and self.now - last > EVENT_TTL:
            return
        meta = obj["metadata"]
        involved = {"kind": obj["kind"], "namespace": meta.get("namespace", ""), "name": meta["name"],
                    "uid": meta.get("uid", ""), "apiVersion": obj["apiVersion"]}
        if meta.get("resourceVersion"):
            involved["resourceVersion"] = meta["resourceVersion"]
        if field_path:
            involved["fieldPath"] = field_path
        event_name = f"{meta['name']}.{_short_hex(meta.get('uid', ''), reason, message, field_path)}"
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": event_name, "namespace": meta.get("namespace") or "default",
                         "uid": str(uuid.UUID(_short_hex(event_name, length=32))), "creationTimestamp": iso(first)},
            "involvedObject": involved, "reason": reason, "message": message, "type": type_,
            "count": count, "firstTimestamp": iso(first), "lastTimestamp": iso(last),
            "source": {"component": component, **({"host": host} if host else {})},
            "reportingComponent": component, "reportingInstance": host or component,
            "eventTime": None,
        }
        self.events.append(event)


def _container_path(init: bool, name: str) -> str:
    return f"spec.{'initContainers' if init else 'containers'}{{{name}}}"


def _container_id(pod_uid: str, name: str, attempt: int = 0) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_uid}/{name}/{attempt}".encode()).hexdigest()


def _failed_pull_events(sink: EventSink, pod: dict, container: dict, outcome: PullOutcome, init: bool,
                        host: str, began: datetime) -> str:
    """Events of a pull that keeps failing since ``began``; returns the current waiting reason."""
    path = _container_path(init, container["name"])
    image = container["image"]
    age = max(sink.now - began, timedelta(seconds=1))
    if outcome.reason == "InvalidImageName":
        attempts = max(1, int(age.total_seconds() // 10))
        sink.emit(pod, "InspectFailed", outcome.message, type_="Warning", first=began, last=sink.now,
                  count=attempts, host=host, field_path=path)
        sink.emit(pod, "Failed", "Error: InvalidImageName", type_="Warning", first=began, last=sink.now,
                  count=attempts, host=host, field_path=path)
        return "InvalidImageName"
    # kubelet retries after 10s, 20s, 40s ... capped at 5 minutes. The event spam filter (a burst of 25 events
    # per object, then one per 5 minutes) is spent on the frequent back-off events within minutes, so the pull
    # attempts' own events stop being refreshed and expire after an hour; state.waiting.message keeps the error.
    window = min(age, SPAM_FILTER_BURST)
    pulls, elapsed, delay = 1, timedelta(seconds=2), timedelta(seconds=10)
    last_pull = began + timedelta(seconds=1)
    while elapsed + delay < window:
        elapsed += delay
        last_pull = began + elapsed
        pulls += 1
        delay = min(delay * 2, BACKOFF_MAX)
    sink.emit(pod, "Pulling", f"Pulling image \"{image}\"", first=began, last=last_pull, count=pulls,
              host=host, field_path=path)
    sink.emit(pod, "Failed", f"Failed to pull image \"{image}\": {outcome.message}", type_="Warning",
              first=began + timedelta(seconds=1), last=last_pull + timedelta(seconds=1), count=pulls,
              host=host, field_path=path)
    sink.emit(pod, "Failed", "Error: ErrImagePull", type_="Warning", first=began + timedelta(seconds=1),
              last=last_pull + timedelta(seconds=1), count=pulls, host=host, field_path=path)
    in_backoff = age > timedelta(seconds=3)
    if in_backoff:
        backoffs = max(1, int(age.total_seconds() // 12))
        sink.emit(pod, "BackOff", f"Back-off pulling image \"{image}\"", first=began + timedelta(seconds=2),
                  last=sink.now, count=backoffs, host=host, field_path=path)
        sink.emit(pod, "Failed", "Error: ImagePullBackOff", type_="Warning", first=began + timedelta(seconds=2),
                  last=sink.now, count=backoffs, host=host, field_path=path)
    return "ImagePullBackOff" if in_backoff else "ErrImagePull"


def _waiting_message(reason: str, outcome: PullOutcome) -> str:
    if reason == "ImagePullBackOff":
        return f"Back-off pulling image \"{outcome.image}\": ErrImagePull: {outcome.message}"
    return outcome.message


def _pulled_events(sink: EventSink, pod: dict, container: dict, init: bool, host: str, at: datetime,
                   cached: bool) -> None:
    path = _container_path(init, container["name"])
    image, name = container["image"], container["name"]
    if cached:
        sink.emit(pod, "Pulled", f"Container image \"{image}\" already present on machine", first=at,
                  host=host, field_path=path)
    else:
        sink.emit(pod, "Pulling", f"Pulling image \"{image}\"", first=at, host=host, field_path=path)
        seconds = 1.2 + (int(_short_hex(image, length=4), 16) % 900) / 100
        size = 20_000_000 + int(_short_hex(image, "size", length=6), 16) * 13
        sink.emit(pod, "Pulled", f"Successfully pulled image \"{image}\" in {seconds:.3f}s ({seconds:.3f}s including "
                  f"waiting). Image size: {size} bytes.", first=at + timedelta(seconds=2), host=host, field_path=path)
    sink.emit(pod, "Created", f"Created container: {name}", first=at + timedelta(seconds=3), host=host, field_path=path)
    sink.emit(pod, "Started", f"Started container {name}", first=at + timedelta(seconds=3), host=host, field_path=path)


@dataclass
class Node:
    """Where a pod runs: node name, its internal IP, and a pod IP allocator from its pod CIDR."""

    name: str
    internal_ip: str
    pod_cidr_prefix: str         # e.g. "10.244.0" -> pods get 10.244.0.x, then 10.244.64.x ...
    next_ip: int = 2

    def allocate_ip(self) -> str:
        index = self.next_ip
        self.next_ip += 1
        a, b = self.pod_cidr_prefix.split(".")[:2]
        third = int(self.pod_cidr_prefix.split(".")[2]) + index // 250
        return f"{a}.{b}.{third}.{index % 250 + 2}"


def run_pod(pod: dict, node: Node, secrets: Mapping[str, dict], world: RegistryWorld, now: datetime,
            *, started: datetime, run_to_completion: bool = False, expire_events: bool = True,
            restarts: Mapping[str, int] | None = None,
            exit_codes: Mapping[str, int] | None = None,
            crashing: Mapping[str, int] | None = None,
            durations: Mapping[str, timedelta] | None = None) -> tuple[dict, list[dict]]:
    """Schedule ``pod`` on ``node`` at ``started`` and derive its status and events as of ``now``.

    ``run_to_completion`` is for Job pods whose containers have exited: 0 (phase Succeeded) unless
    ``exit_codes`` names a container that exited non-zero (restartPolicy Never: phase Failed). An init
    container named in ``exit_codes`` with a non-zero code fails the pod there (Init:Error); the main
    containers never start. ``crashing`` names containers (restartPolicy Always) that exit with the given
    code seconds after every start: restarted with back-off until ``now``, they sit in CrashLoopBackOff.
    ``durations`` is how long a completed container ran (default 30-95 s).
    """
    sink = EventSink(now, expire=expire_events)
    spec, meta = pod["spec"], pod["metadata"]
    spec["nodeName"] = node.name
    pull_secrets = [ref["name"] for ref in spec.get("imagePullSecrets") or [] if ref.get("name")]
    restarts = restarts or {}
    ns = meta["namespace"]
    sink.emit(pod, "Scheduled", f"Successfully assigned {ns}/{meta['name']} to {node.name}", first=started,
              component="default-scheduler", host="")
    missing = [name for name in pull_secrets if name not in secrets]
    if missing:
        sink.emit(pod, "FailedToRetrieveImagePullSecret",
                  f"Unable to retrieve some image pull secrets ({', '.join(missing)}); attempting to pull the image "
                  "may not succeed.", type_="Warning", first=started + timedelta(seconds=1), last=now,
                  count=max(1, int((now - started).total_seconds() // 60)), host=node.name)
    clock = started + timedelta(seconds=1)
    init_statuses, blocked_by, init_failed = [], None, False
    exit_codes, durations, crashing = exit_codes or {}, durations or {}, crashing or {}
    for container in spec.get("initContainers") or []:
        if blocked_by:
            init_statuses.append(_waiting_status(container, "PodInitializing", ""))
            continue
        outcome = pull_image(container["image"], pull_secrets, secrets, world, at=clock)
        if not outcome.ok:
            reason = _failed_pull_events(sink, pod, container, outcome, True, node.name, clock)
            init_statuses.append(_waiting_status(container, reason, _waiting_message(reason, outcome)))
            blocked_by = container["name"]
            continue
        _pulled_events(sink, pod, container, True, node.name, clock, _cached(container))
        finished = clock + timedelta(seconds=3) + durations[container["name"]] if container["name"] in durations \
            else clock + timedelta(seconds=4)
        code = exit_codes.get(container["name"], 0)
        init_statuses.append(_terminated_status(container, outcome, meta["uid"], clock + timedelta(seconds=3), finished,
                                                code))
        clock = finished + timedelta(seconds=1)
        if code != 0:
            blocked_by, init_failed = container["name"], spec.get("restartPolicy") == "Never"

    statuses, unready = [], []
    for container in spec.get("containers") or []:
        if blocked_by:
            statuses.append(_waiting_status(container, "PodInitializing", ""))
            unready.append(container["name"])
            continue
        outcome = pull_image(container["image"], pull_secrets, secrets, world, at=clock)
        if not outcome.ok:
            reason = _failed_pull_events(sink, pod, container, outcome, False, node.name, clock)
            statuses.append(_waiting_status(container, reason, _waiting_message(reason, outcome)))
            unready.append(container["name"])
            continue
        began = clock + timedelta(seconds=3)
        if container["name"] in crashing:
            statuses.append(_crash_loop(sink, pod, container, outcome, node.name, clock, now,
                                        crashing[container["name"]]))
            unready.append(container["name"])
            continue
        _pulled_events(sink, pod, container, False, node.name, clock, _cached(container))
        if run_to_completion:
            ended = began + durations[container["name"]] if container["name"] in durations else \
                max(began + timedelta(seconds=30), min(now, began + timedelta(seconds=95)))
            statuses.append(_terminated_status(container, outcome, meta["uid"], began, ended,
                                               exit_codes.get(container["name"], 0)))
        else:
            statuses.append(_running_status(container, outcome, meta["uid"], began, restarts.get(container["name"], 0)))

    pod["status"] = _pod_status(pod, node, started, init_statuses, statuses, unready, blocked_by, run_to_completion,
                                init_failed)
    return pod, sink.events


def _cached(container: dict) -> bool:
    return container.get("imagePullPolicy") == "IfNotPresent" and not str(container["image"]).endswith(":latest")


def _waiting_status(container: dict, reason: str, message: str) -> dict:
    waiting = {"reason": reason}
    if message:
        waiting["message"] = message
    return {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
            "restartCount": 0, "started": False, "state": {"waiting": waiting}, "lastState": {}}


def _running_status(container: dict, outcome: PullOutcome, uid: str, began: datetime, restarts: int) -> dict:
    return {"name": container["name"], "image": container["image"], "imageID": outcome.image_id,
            "containerID": _container_id(uid, container["name"], restarts), "ready": True,
            "restartCount": restarts, "started": True, "state": {"running": {"startedAt": iso(began)}},
            "lastState": {}}


def _terminated_status(container: dict, outcome: PullOutcome, uid: str, began: datetime, ended: datetime,
                       exit_code: int = 0) -> dict:
    return {"name": container["name"], "image": container["image"], "imageID": outcome.image_id,
            "containerID": _container_id(uid, container["name"]), "ready": False, "restartCount": 0,
            "started": False, "lastState": {},
            "state": {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                     "startedAt": iso(began), "finishedAt": iso(ended),
                                     "containerID": _container_id(uid, container["name"])}}}


def _condition(kind: str, ok: bool, at: datetime, reason: str = "", message: str = "") -> dict:
    cond = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": iso(at)}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _qos(pod: dict) -> str:
    containers = pod["spec"].get("containers") or []
    requests = [c.get("resources", {}).get("requests") for c in containers]
    limits = [c.get("resources", {}).get("limits") for c in containers]
    if containers and all(limits) and all(r == l for r, l in zip(requests, limits)):
        return "Guaranteed"
    return "Burstable" if any(requests) or any(limits) else "BestEffort"


def _pod_status(pod: dict, node: Node, started: datetime, init_statuses: list[dict], statuses: list[dict],
                unready: list[str], blocked_by: str | None, completed: bool, init_failed: bool = False) -> dict:
    ip = node.allocate_ip()
    completed = (completed and blocked_by is None and not unready) or init_failed
    failed = init_failed or (completed and any(s["state"].get("terminated", {}).get("exitCode", 0) != 0
                                               for s in statuses))
    ready = not unready and not completed
    conditions = [
        _condition("PodReadyToStartContainers", True, started + timedelta(seconds=1)),
        _condition("Initialized", blocked_by is None, started + timedelta(seconds=1),
                   *(("ContainersNotInitialized", f"containers with incomplete status: [{blocked_by}]")
                     if blocked_by else ())),
    ]
    if completed:
        reason = "PodFailed" if failed else "PodCompleted"
        conditions += [_condition("Ready", False, started + timedelta(seconds=60), reason),
                       _condition("ContainersReady", False, started + timedelta(seconds=60), reason)]
    elif ready:
        conditions += [_condition("Ready", True, started + timedelta(seconds=8)),
                       _condition("ContainersReady", True, started + timedelta(seconds=8))]
    else:
        message = f"containers with unready status: [{' '.join(unready)}]"
        conditions += [_condition("Ready", False, started, "ContainersNotReady", message),
                       _condition("ContainersReady", False, started, "ContainersNotReady", message)]
    conditions.append(_condition("PodScheduled", True, started))
    status = {
        "phase": ("Failed" if failed else "Succeeded") if completed else
                 ("Running" if any("running" in s["state"] or s.get("lastState", {}).get("terminated")
                                   for s in statuses) else "Pending"),
        "conditions": conditions, "hostIP": node.internal_ip, "hostIPs": [{"ip": node.internal_ip}],
        "podIP": ip, "podIPs": [{"ip": ip}], "startTime": iso(started), "qosClass": _qos(pod),
        "containerStatuses": statuses,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status


# ---- restarts, crash loops, evictions -------------------------------------------------------------

CRASH_RUNTIME = timedelta(seconds=2)        # how long a crash-looping container lives before it exits


def go_duration(delta: timedelta) -> str:
    """A duration as Go prints it (10s, 1m20s, 5m0s), as the kubelet's back-off messages carry it."""
    seconds = int(delta.total_seconds())
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def crash_history(began: datetime, now: datetime) -> tuple[int, datetime, timedelta]:
    """(restarts, last start, current back-off) of a container exiting CRASH_RUNTIME after each start since
    ``began``, restarted after 10 s, 20 s, 40 s ... capped at 5 minutes."""
    start, delay, restarts = began, timedelta(seconds=10), 0
    while start + CRASH_RUNTIME + delay <= now:
        start = start + CRASH_RUNTIME + delay
        restarts += 1
        delay = min(delay * 2, BACKOFF_MAX)
    return restarts, start, delay


def _crash_loop(sink: EventSink, pod: dict, container: dict, outcome: PullOutcome, host: str, at: datetime,
                now: datetime, exit_code: int) -> dict:
    """Status (CrashLoopBackOff) and events of a container that keeps exiting ``exit_code`` since ``at``."""
    path, name, meta = _container_path(False, container["name"]), container["name"], pod["metadata"]
    began = at + timedelta(seconds=3)
    restarts, last_start, delay = crash_history(began, now)
    starts = restarts + 1
    sink.emit(pod, "Pulled", f"Container image \"{container['image']}\" already present on machine", first=at,
              last=last_start, count=starts, host=host, field_path=path)
    sink.emit(pod, "Created", f"Created container: {name}", first=began, last=last_start, count=starts, host=host,
              field_path=path)
    sink.emit(pod, "Started", f"Started container {name}", first=began, last=last_start, count=starts, host=host,
              field_path=path)
    if restarts:
        sink.emit(pod, "BackOff", f"Back-off restarting failed container {name} in pod "
                  f"{meta['name']}_{meta['namespace']}({meta['uid']})", type_="Warning",
                  first=began + CRASH_RUNTIME, last=now, count=max(1, int((now - began).total_seconds() // 15)),
                  host=host, field_path=path)
    cid = _container_id(meta["uid"], name, restarts)
    return {"name": name, "image": container["image"], "imageID": outcome.image_id, "containerID": cid,
            "ready": False, "restartCount": restarts, "started": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": f"back-off {go_duration(delay)} restarting failed container={name} "
                                             f"pod={meta['name']}_{meta['namespace']}({meta['uid']})"}},
            "lastState": {"terminated": {"exitCode": exit_code, "reason": "Error", "startedAt": iso(last_start),
                                         "finishedAt": iso(last_start + CRASH_RUNTIME), "containerID": cid}}}


def restart_container(pod: dict, name: str, at: datetime, now: datetime, *, exit_code: int = 137,
                      reason: str = "OOMKilled") -> list[dict]:
    """The running container ``name`` of ``pod`` exited at ``at`` (OOMKilled by default) and was restarted
    at once; updates restartCount, lastState, state and the Ready condition; returns the kubelet's events."""
    status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == name)
    container = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    uid = pod["metadata"]["uid"]
    restarted = at + timedelta(seconds=1)
    status["lastState"] = {"terminated": {"exitCode": exit_code, "reason": reason,
                                          "startedAt": status["state"]["running"]["startedAt"],
                                          "finishedAt": iso(at), "containerID": status["containerID"]}}
    status["restartCount"] += 1
    status["containerID"] = _container_id(uid, name, status["restartCount"])
    status["state"] = {"running": {"startedAt": iso(restarted)}}
    for condition in pod["status"]["conditions"]:
        if condition["type"] in ("Ready", "ContainersReady"):
            condition["lastTransitionTime"] = iso(restarted + timedelta(seconds=6))
    sink = EventSink(now)
    _pulled_events(sink, pod, container, False, pod["spec"]["nodeName"], at, cached=True)
    return sink.events


def evict_pod(pod: dict, at: datetime, now: datetime, message: str) -> list[dict]:
    """The kubelet evicted ``pod`` at ``at`` (node pressure): phase Failed, reason Evicted, the kubelet's
    message, DisruptionTarget condition, containers gone; returns the Evicted and Killing events."""
    status = pod["status"]
    status.update({"phase": "Failed", "reason": "Evicted", "message": message})
    status["conditions"] = [c for c in status["conditions"] if c["type"] not in ("Ready", "ContainersReady")] + [
        _condition("DisruptionTarget", True, at, "TerminationByKubelet", message),
        _condition("Ready", False, at + timedelta(seconds=2), "PodFailed"),
        _condition("ContainersReady", False, at + timedelta(seconds=2), "PodFailed")]
    for cstatus in status.get("containerStatuses", []):
        started = cstatus["state"].get("running", {}).get("startedAt", status.get("startTime"))
        cstatus.update({"ready": False, "started": False, "state": {"terminated": {
            "exitCode": 137, "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "startedAt": started, "finishedAt": iso(at + timedelta(seconds=2))}}})
    sink = EventSink(now)
    host = pod["spec"].get("nodeName", "")
    sink.emit(pod, "Evicted", message, type_="Warning", first=at, host=host)
    for container in pod["spec"].get("containers", []):
        sink.emit(pod, "Killing", f"Stopping container {container['name']}", first=at, host=host,
                  field_path=_container_path(False, container["name"]))
    return sink.events


# ---- scheduling -----------------------------------------------------------------------------------

def parse_cpu(quantity: str | int | float) -> int:
    """A CPU quantity in millicores ("500m" -> 500, "4" -> 4000)."""
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_memory(quantity: str | int) -> int:
    """A memory quantity in bytes ("256Mi", "8148024Ki", "1G", "1048576")."""
    text = str(quantity)
    for unit in sorted(_MEMORY_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * _MEMORY_UNITS[unit])
    return int(text)


def pod_requests(pod_spec: dict) -> tuple[int, int]:
    """(millicores, bytes) the scheduler accounts for a pod: max(largest init container, sum of containers)."""
    def requests(c: dict) -> tuple[int, int]:
        req = c.get("resources", {}).get("requests", {})
        return parse_cpu(req.get("cpu", "0")), parse_memory(req.get("memory", "0"))
    main = [requests(c) for c in pod_spec.get("containers", [])]
    init = [requests(c) for c in pod_spec.get("initContainers", [])]
    cpu = max([sum(c for c, _ in main), *(c for c, _ in init)])
    memory = max([sum(m for _, m in main), *(m for _, m in init)])
    return cpu, memory


@dataclass(frozen=True)
class NodeFit:
    """What the scheduler knows of a node: allocatable minus the requests of the pods bound to it, its taints."""

    name: str
    free_cpu: int            # millicores
    free_memory: int         # bytes
    taints: tuple[dict, ...] = ()
    unschedulable: bool = False


def _tolerates(tolerations: list[dict], taint: dict) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (not tol.get("key") or tol["key"] == taint["key"]):
            return True
        if tol.get("key") == taint["key"] and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def unschedulable_message(pod_spec: dict, nodes: list[NodeFit]) -> str | None:
    """The scheduler's FailedScheduling message for a pod no node fits (None: some node fits), in the
    wording of kube-scheduler 1.34: per node the first failing filter, reasons counted and sorted, then
    what preemption found (every pod here has the default priority, so no victims)."""
    tolerations = pod_spec.get("tolerations") or []
    cpu, memory = pod_requests(pod_spec)
    reasons: dict[str, int] = {}
    preemption: dict[str, int] = {}
    for node in nodes:
        if node.unschedulable:
            found, helps = ["node(s) were unschedulable"], False
        else:
            taint = next((t for t in node.taints if t.get("effect") in ("NoSchedule", "NoExecute")
                          and not _tolerates(tolerations, t)), None)
            if taint is not None:
                found, helps = [f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"], False
            else:
                found = (["Insufficient cpu"] if cpu > node.free_cpu else []) + \
                        (["Insufficient memory"] if memory > node.free_memory else [])
                helps = True
        if not found:
            return None
        for reason in found:
            reasons[reason] = reasons.get(reason, 0) + 1
        key = "No preemption victims found for incoming pod" if helps else "Preemption is not helpful for scheduling"
        preemption[key] = preemption.get(key, 0) + 1
    total = len(nodes)
    listed = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
    victims = ", ".join(sorted(f"{count} {reason}" for reason, count in preemption.items()))
    return f"0/{total} nodes are available: {listed}. preemption: 0/{total} nodes are available: {victims}."


SCHEDULER_RETRY = timedelta(minutes=5)      # an unschedulable pod is retried at least this often


def leave_unschedulable(pod: dict, message: str, created: datetime, now: datetime) -> list[dict]:
    """``pod`` stays Pending: no node, PodScheduled False (Unschedulable); returns the FailedScheduling event
    the scheduler keeps refreshing on every retry."""
    pod["spec"].pop("nodeName", None)
    pod["status"] = {"phase": "Pending", "qosClass": _qos(pod),
                     "conditions": [_condition("PodScheduled", False, created, "Unschedulable", message)]}
    retries = int((now - created) / SCHEDULER_RETRY)
    sink = EventSink(now)
    sink.emit(pod, "FailedScheduling", message, type_="Warning", first=created,
              last=created + retries * SCHEDULER_RETRY, count=retries + 1, component="default-scheduler")
    return sink.events


# ---- a debug pod's `nc -zv host port` ----------------------------------------------------------------

def nc_target(pod_spec: dict) -> tuple[str, tuple[str, int]] | None:
    """(container name, (host, port)) when the pod's only container runs `nc -z[v] host port`, directly or
    through `sh -c` (as `kubectl run debug --image=nicolaka/netshoot --restart=Never -- nc -zv host port`)."""
    containers = pod_spec.get("containers") or []
    if len(containers) != 1:
        return None
    argv = list(containers[0].get("command") or []) + list(containers[0].get("args") or [])
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in ("sh", "bash", "ash") and argv[1] == "-c":
        try:
            argv = shlex.split(argv[2])
        except ValueError:
            return None
    if not argv or argv[0].rsplit("/", 1)[-1] not in ("nc", "netcat", "ncat"):
        return None
    positional, words = [], iter(argv[1:])
    for word in words:
        if word in ("&&", "||", ";", "|"):
            break
        if word.startswith("-"):
            if word in ("-w", "-W", "-i", "-p", "-s", "-q"):
                next(words, None)
            continue
        positional.append(word)
    if len(positional) < 2 or not positional[1].isdigit():
        return None
    return containers[0]["name"], (positional[0], int(positional[1]))


def nc_probe(host: str, port: int, namespace: str, services: list[dict], endpoints: list[dict],
             pods: list[dict], world: RegistryWorld | None = None) -> tuple[int, str]:
    """(exit code, output) of busybox/netshoot `nc -zv host port` from a pod in ``namespace``.

    The name resolves through the pod's DNS search path (<ns>.svc.cluster.local, svc.cluster.local,
    cluster.local) to a Service's ClusterIP (headless: its first ready pod); a Service port with ready
    endpoints connects, without them kube-proxy rejects (Connection refused), a port the Service does not
    expose times out. Pod IPs connect when a running pod exposes the port; registries the cluster pulls
    from resolve and accept 443.
    """
    name = host.rstrip(".").lower()
    candidates = [name] if name.endswith(".cluster.local") else \
        [f"{name}.{namespace}.svc.cluster.local", f"{name}.svc.cluster.local", f"{name}.cluster.local", name]
    by_fqdn = {f"{s['metadata']['name']}.{s['metadata']['namespace']}.svc.cluster.local": s for s in services}
    by_ip = {s["spec"].get("clusterIP"): s for s in services if s["spec"].get("clusterIP") not in (None, "", "None")}
    ready_by_service = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    svc = next((by_fqdn[c] for c in candidates if c in by_fqdn), None) or by_ip.get(name)
    if svc is not None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        subsets = (ready_by_service.get(key) or {}).get("subsets") or []
        ready_ips = [a["ip"] for s in subsets for a in s.get("addresses", [])]
        ip = svc["spec"].get("clusterIP")
        if ip in (None, "", "None"):
            if not ready_ips:
                return 1, f"nc: bad address '{host}'\n"
            return 0, f"{host} ({ready_ips[0]}:{port}) open\n"
        if not any(p.get("port") == port for p in svc["spec"].get("ports", [])):
            return 1, f"nc: {host} ({ip}:{port}): Connection timed out\n"
        if not ready_ips:
            return 1, f"nc: {host} ({ip}:{port}): Connection refused\n"
        return 0, f"{host} ({ip}:{port}) open\n"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        pod = next((p for p in pods if p.get("status", {}).get("podIP") == name
                    and p["status"].get("phase") == "Running"), None)
        if pod is None:
            return 1, f"nc: {host} ({name}:{port}): Connection timed out\n"
        exposed = {p["containerPort"] for c in pod["spec"].get("containers", []) for p in c.get("ports", [])}
        if port in exposed:
            return 0, f"{host} ({name}:{port}) open\n"
        return 1, f"nc: {host} ({name}:{port}): Connection refused\n"
    if world is not None and name in world.registries and port in (80, 443):
        address = "104.16." + ".".join(str(b) for b in hashlib.sha256(name.encode()).digest()[:2])
        return 0, f"{host} ({address}:{port}) open\n"
    return 1, f"nc: bad address '{host}'\n"
