"""Why a pod cannot pull its image: image-pull/* findings.

The cause is read from two places because either may be missing: the kubelet's events (which expire
after an hour) and the container's `state.waiting.message` (which Kubernetes >= 1.32 keeps with the last
pull error). Wording differs between containerd, the Docker daemon, registries and Kubernetes versions,
so causes are found by searching for several phrasings, never by matching one message exactly. The pod's
imagePullSecrets are then checked against the image's registry host, as the kubelet matches them.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from nasiko_nb.checks import detector
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.images import ImageRef, parse_image
from nasiko_nb.redact import scrub
from nasiko_nb.snapshot import Snapshot, event_message

DEFAULT_NAMESPACE = "nasiko-agents"
PULL_FAILURE_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
PULL_EVENT_REASONS = {"Failed", "FailedToRetrieveImagePullSecret", "InspectFailed", "BackOff", "ErrImageNeverPull"}
AUTH_CAUSES = {"image-pull/unauthorized", "image-pull/forbidden"}
# Registries that never serve anonymous pulls: no secret there is the cause even when no error text survives.
_ALWAYS_PRIVATE = re.compile(r"^(registry\.digitalocean\.com|\d+\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
                             r"|harbor-registry\.harbor\.svc\.cluster\.local)$")

# Ordered: the first cause whose pattern occurs in a message wins. Transport failures come first because
# their messages also mention the request that failed; 401 before 403 because token fetches name both.
_CAUSES: list[tuple[str, re.Pattern]] = [(code, re.compile(pattern, re.IGNORECASE)) for code, pattern in [
    ("image-pull/never-pull", r"ErrImageNeverPull|pull policy (?:of|is) Never|is not present with pull policy"),
    ("image-pull/invalid-name", r"InvalidImageName|invalid reference format|couldn't parse image reference"
                                r"|repository name must be lowercase|Failed to apply default image tag"),
    ("image-pull/tls-certificate", r"x509:|certificate signed by unknown authority|certificate is not valid"
                                   r"|certificate has expired|tls: failed to verify|server gave HTTP response to HTTPS"),
    ("image-pull/dns", r"no such host|server misbehaving|Temporary failure in name resolution"
                       r"|could not resolve host|lookup \S+ on \S+: no"),
    ("image-pull/timeout", r"i/o timeout|context deadline exceeded|Client\.Timeout|TLS handshake timeout"
                           r"|connection timed out|connect: connection refused|network is unreachable"
                           r"|no route to host"),
    ("image-pull/rate-limited", r"toomanyrequests|Too Many Requests|\b429\b|pull rate limit|rate limit exceeded"),
    ("image-pull/unauthorized", r"\b401\b|unauthorized|no basic auth credentials|authentication required"
                                r"|authorization token has expired|token has expired|incorrect username or password"
                                r"|invalid username/password"),
    ("image-pull/forbidden", r"\b403\b|forbidden|insufficient_scope|pull access denied|\bdenied\b"
                             r"|requested access to the resource is denied"),
    ("image-pull/repo-not-found", r"name unknown|NAME_UNKNOWN|repository does not exist|does not exist in the registry"
                                  r"|repository [^\s:]+ not found"),
    ("image-pull/tag-not-found", r"manifest unknown|MANIFEST_UNKNOWN|code = NotFound|: not found\b"
                                 r"|manifest for \S+ not found|\bnot found\b"),
]]
_SECRET_RETRIEVAL = re.compile(r"Unable to retrieve (?:some )?image pull secrets?", re.IGNORECASE)
_FIELD_PATH = re.compile(r"spec\.(?:initContainers|containers|ephemeralContainers)\{(?P<name>[^}]+)\}")


def classify_pull_error(text: str, image: str = "") -> str | None:
    """The image-pull/* code a pull error message points at, or None when it names no cause.

    The image reference itself is blanked first so a name like "acme/forbidden-agent:401" cannot match.
    """
    if not text:
        return None
    if image:
        for form in {image, parse_image(image).canonical}:
            text = text.replace(form, "<image>")
    for code, pattern in _CAUSES:
        if pattern.search(text):
            return code
    return None


@dataclass(frozen=True)
class PullFailure:
    """One container that cannot pull its image: a row of the per-pod table."""

    namespace: str
    pod: str
    container: str
    init: bool
    image: str
    registry: str
    reason: str               # waiting reason: ImagePullBackOff, ErrImagePull, ...
    message: str              # the pull error the diagnosis rests on (scrubbed)
    pull_secrets: tuple[str, ...]
    secret_status: str        # none | missing | unreadable | invalid | no-entry-for-host | ok | unknown
    secret_user: str          # user of the secret's entry for the registry (never the password)
    secret_hosts: tuple[str, ...]
    deployment: str | None
    agent: str | None
    code: str
    evidence: str

    def to_dict(self) -> dict:
        return asdict(self)


def _container_statuses(pod: dict) -> list[tuple[dict, bool]]:
    status = pod.get("status") or {}
    return ([(s, True) for s in status.get("initContainerStatuses") or []]
            + [(s, False) for s in status.get("containerStatuses") or []])


def _spec_image(pod: dict, container: str, init: bool) -> str:
    spec = pod.get("spec") or {}
    for item in spec.get("initContainers" if init else "containers") or []:
        if item.get("name") == container:
            return item.get("image") or ""
    return ""


def _events_about(snapshot: Snapshot, pod: dict, container: str, image: str) -> list[dict]:
    """The pod's pull-related events that concern this container, newest first."""
    chosen = []
    for event in snapshot.events_for(pod):
        if event.get("reason") not in PULL_EVENT_REASONS:
            continue
        field_path = ((event.get("involvedObject") or event.get("regarding") or {}).get("fieldPath") or "")
        match = _FIELD_PATH.search(field_path)
        if match:
            if match["name"] == container:
                chosen.append(event)
        elif event.get("reason") == "FailedToRetrieveImagePullSecret" or not image or image in event_message(event) \
                or '"' not in event_message(event):
            chosen.append(event)
    return chosen


def _secret_state(snapshot: Snapshot, namespace: str, names: tuple[str, ...], ref: ImageRef,
                  retrieval_failed: bool) -> tuple[str, str, tuple[str, ...], str]:
    """(status, user, hosts the secrets do cover, detail) for the pod's pull secrets and this registry."""
    if not names:
        return "none", "", (), ""
    missing, invalid, hosts = [], [], []
    for name in names:
        summary = snapshot.secret(namespace, name)
        if summary is None:
            missing.append(name)
            continue
        auth = summary.auth_for(ref.registry)
        if auth is not None:
            return "ok", auth.username, tuple(summary.hosts), name
        if summary.problem:
            invalid.append(f"{name}: {summary.problem}")
        hosts.extend(f"{a.host} (user {a.username or '?'})" for a in summary.docker_auths)
    if missing and not snapshot.can_read("Secret", namespace) and not retrieval_failed:
        return "unreadable", "", tuple(hosts), ", ".join(missing)
    if missing:
        return "missing", "", tuple(hosts), ", ".join(missing)
    if invalid:
        return "invalid", "", tuple(hosts), "; ".join(invalid)
    return "no-entry-for-host", "", tuple(hosts), ", ".join(names)


def _diagnose(cause: str | None, ref: ImageRef, status: str) -> str:
    """The code for one failing container, combining the pull error with the pull-secret check."""
    if cause is not None and cause not in AUTH_CAUSES:
        return cause
    private = not ref.is_docker_hub_library
    if status == "none" and private and (cause is not None or _ALWAYS_PRIVATE.match(ref.registry)):
        return "image-pull/missing-pull-secret"
    if status == "missing":
        return "image-pull/pull-secret-not-found"
    if status == "invalid":
        return "image-pull/pull-secret-invalid"
    if status == "no-entry-for-host" and private:
        return "image-pull/pull-secret-wrong-registry"
    return cause or "image-pull/unclassified"


def find_image_pull_failures(snapshot: Snapshot, namespace: str | None = DEFAULT_NAMESPACE,
                             agent: str | None = None) -> list[PullFailure]:
    """Every container (init containers included) waiting on an image pull, with its diagnosed cause."""
    rows = []
    for pod in snapshot.pods_in(namespace):
        meta = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            continue
        if agent is not None and snapshot.agent_of(pod) != agent:
            continue
        for status, init in _container_statuses(pod):
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in PULL_FAILURE_REASONS:
                continue
            rows.append(_diagnose_container(snapshot, pod, meta, status, waiting, init))
    return rows


def _diagnose_container(snapshot: Snapshot, pod: dict, meta: dict, status: dict, waiting: dict,
                        init: bool) -> PullFailure:
    namespace, container = meta.get("namespace", ""), status.get("name", "")
    image = _spec_image(pod, container, init) or status.get("image") or ""
    ref = parse_image(image)
    events = _events_about(snapshot, pod, container, image)
    retrieval_events = [e for e in events if e.get("reason") == "FailedToRetrieveImagePullSecret"
                        or _SECRET_RETRIEVAL.search(event_message(e))]
    cause, source = _classify_reason(waiting.get("reason", ""), ref)
    if cause is not None and waiting.get("message"):
        source = waiting["message"]
    texts = [waiting.get("message") or ""] + [event_message(e) for e in events if e not in retrieval_events]
    for text in texts:
        if cause is not None:
            break
        cause, source = classify_pull_error(text, image), text
    names = tuple(s.get("name", "") for s in (pod.get("spec") or {}).get("imagePullSecrets") or [] if s.get("name"))
    secret_status, user, hosts, detail = _secret_state(snapshot, namespace, names, ref, bool(retrieval_events))
    code = _diagnose(cause, ref, secret_status)
    source = source or next((t for t in texts if t), "")
    evidence = (_evidence(code, source, ref, names, secret_status, user, hosts, detail, retrieval_events)
                or f"waiting reason {waiting.get('reason')}; no pull error left in the status or the events")
    return PullFailure(namespace=namespace, pod=meta.get("name", ""), container=container, init=init, image=image,
                       registry=ref.registry, reason=waiting.get("reason", ""), message=scrub(source or ""),
                       pull_secrets=names, secret_status=secret_status, secret_user=user, secret_hosts=hosts,
                       deployment=snapshot.deployment_name_of(pod), agent=snapshot.agent_of(pod), code=code,
                       evidence=scrub(evidence))


def _classify_reason(reason: str, ref: ImageRef) -> tuple[str | None, str]:
    """Causes the waiting reason alone settles (the runtime never tried the registry)."""
    if reason == "ErrImageNeverPull":
        return "image-pull/never-pull", f"waiting reason {reason}"
    if reason == "InvalidImageName" or not ref.valid:
        return "image-pull/invalid-name", f"{ref.original!r}: {ref.problem or 'waiting reason ' + reason}"
    return None, ""


def _evidence(code: str, source: str, ref: ImageRef, names: tuple[str, ...], status: str, user: str,
              hosts: tuple[str, ...], detail: str, retrieval_events: list[dict]) -> str:
    if code == "image-pull/missing-pull-secret":
        return f"pod spec has no imagePullSecrets; image registry {ref.registry}" + (f"; {source}" if source else "")
    if code == "image-pull/pull-secret-not-found":
        if retrieval_events:
            return event_message(retrieval_events[0])
        return f"imagePullSecrets {', '.join(names)}: no Secret {detail} in the namespace"
    if code == "image-pull/pull-secret-wrong-registry":
        return (f"secret {detail} has auths for {', '.join(hosts) or 'no host'}; image registry {ref.registry}"
                + (f"; {source}" if source else ""))
    if code == "image-pull/pull-secret-invalid":
        return detail
    if status == "ok" and code in AUTH_CAUSES:
        return f"{source}; secret {detail} user {user or '?'}"
    return source


TABLE_COLUMNS = ["pod", "container", "init", "image", "registry", "reason", "code", "pull_secrets", "secret_status",
                 "secret_user", "deployment", "message"]


def failure_table(snapshot: Snapshot, namespace: str | None = DEFAULT_NAMESPACE, agent: str | None = None):
    """The per-container table a runbook shows: one row per container waiting on a pull."""
    import pandas

    rows = [{**row.to_dict(), "pull_secrets": ", ".join(row.pull_secrets)}
            for row in find_image_pull_failures(snapshot, namespace, agent)]
    return pandas.DataFrame(rows, columns=TABLE_COLUMNS)


@detector("image-pull")
def detect(snapshot: Snapshot, params: dict) -> list[Finding]:
    """image-pull/* findings for the namespace (params "namespace", default nasiko-agents; None = all) or agent."""
    findings = []
    for row in find_image_pull_failures(snapshot, params.get("namespace", DEFAULT_NAMESPACE), params.get("agent")):
        secret = row.pull_secrets[0] if row.pull_secrets else ""
        if row.code == "image-pull/pull-secret-not-found":
            secret = next((n for n in row.pull_secrets if snapshot.secret(row.namespace, n) is None), secret)
        fields = {"container": row.container + (" (init)" if row.init else ""), "image": row.image,
                  "registry": row.registry, "secret": secret, "namespace": row.namespace,
                  "hosts": ", ".join(row.secret_hosts) or "no registry", "problem": row.evidence}
        findings.append(make_finding(row.code, f"Pod {row.namespace}/{row.pod}", row.evidence, **fields))
    return findings
