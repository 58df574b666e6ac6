"""Registry credentials: the platform's three registry secrets, and why a push is refused.

Two detector families. ``registry-secrets`` needs only the snapshot: are the secrets there, for the
platform's registry host, and the same everywhere? ``registry-auth`` also reads provider answers passed
in ``params`` as data (the account's registry name, and what the registry's token service granted each
secret's credentials) and tells the guide's five causes of a push 401 apart. Without those answers it
says nothing, so triage can run it on a snapshot alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd

from nasiko_nb.checks import detector
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.redact import SecretSummary, normalize_host
from nasiko_nb.snapshot import Snapshot

#: (namespace, secret) pairs the platform needs, all holding the same registry credentials.
PLATFORM_SECRETS = (("nasiko", "regcred"), ("buildkit", "regcred"), ("nasiko-agents", "agent-registry-credentials"))
DO_HOST = "registry.digitalocean.com"
DO_DEFAULT_EXPIRY = timedelta(days=30)   # docker-credentials without expiry_seconds, per `doctl` and the guide
ECR_TOKEN_LIFETIME = timedelta(hours=12)
_PUSH_ERROR = re.compile(r"failed to push (?P<image>\S+?):? .*?(?P<status>401 Unauthorized|403 Forbidden|denied|"
                         r"insufficient_scope|unauthorized)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class PushError:
    """The push failure a build log ends with: the image it pushed and the refusal."""

    image: str
    status: str
    line: str

    @property
    def registry_host(self) -> str:
        return self.image.split("/", 1)[0]

    @property
    def registry_name(self) -> str:
        """DigitalOcean's registry name: the first path component after the host."""
        parts = self.image.split("/")
        return parts[1] if parts[0] == DO_HOST and len(parts) > 2 else ""

    @property
    def repository(self) -> str:
        return self.image.split("/", 1)[1].rsplit(":", 1)[0] if "/" in self.image else self.image


def find_push_error(log: str) -> PushError | None:
    """The last push refusal in a buildkit-client log, by search (wording differs between registries)."""
    for line in reversed(log.splitlines()):
        match = _PUSH_ERROR.search(line)
        if match:
            return PushError(match["image"], match["status"], line.strip())
    return None


def secret_age(summary: SecretSummary, now: datetime) -> timedelta | None:
    try:
        created = datetime.fromisoformat(summary.created.replace("Z", "+00:00"))
    except ValueError:
        return None
    return now - created


def expected_lifetime(host: str) -> timedelta:
    """How long a registry token lasts at most when nothing else is known: ECR 12 h, DigitalOcean 30 days."""
    return ECR_TOKEN_LIFETIME if ".dkr.ecr." in host else DO_DEFAULT_EXPIRY


def secrets_table(snap: Snapshot, namespaces, now: datetime | None = None) -> pd.DataFrame:
    """Every secret in ``namespaces``: type, registry host, user, password fingerprint, age and its users.

    Never a password or an ``auth`` value: the snapshot only holds summaries.
    """
    now = now or datetime.now(timezone.utc)
    users = secret_users(snap)
    rows = []
    for summary in snap.secrets:
        if summary.namespace not in namespaces:
            continue
        age = secret_age(summary, now)
        auths = summary.docker_auths or (None,)
        for auth in auths:
            rows.append({
                "namespace": summary.namespace, "secret": summary.name, "type": summary.type,
                "registry": auth.host if auth else "", "user": auth.username if auth else "",
                "fingerprint": auth.fingerprint if auth else "",
                "age": _human(age) if age is not None else "",
                "used by": ", ".join(sorted(users.get((summary.namespace, summary.name), ()))),
                "problem": summary.problem or "",
            })
    return pd.DataFrame(rows, columns=["namespace", "secret", "type", "registry", "user", "fingerprint", "age",
                                       "used by", "problem"])


def secret_users(snap: Snapshot) -> dict[tuple[str, str], set[str]]:
    """Which workloads use each secret: imagePullSecrets, volumes, env and envFrom of their pod templates."""
    users: dict[tuple[str, str], set[str]] = {}
    for obj in (*snap.deployments, *snap.jobs, *snap.of_kind("StatefulSet"), *snap.of_kind("DaemonSet")):
        namespace = obj["metadata"].get("namespace", "")
        label = f"{obj.get('kind', '')} {obj['metadata'].get('name', '')}"
        for name in _secret_names(((obj.get("spec") or {}).get("template") or {}).get("spec") or {}):
            users.setdefault((namespace, name), set()).add(label)
    return users


def _secret_names(pod_spec: dict) -> set[str]:
    names = {ref.get("name", "") for ref in pod_spec.get("imagePullSecrets") or []}
    for volume in pod_spec.get("volumes") or []:
        if volume.get("secret"):
            names.add(volume["secret"].get("secretName", ""))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("secret"):
                names.add(source["secret"].get("name", ""))
    for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref.get("name", ""))
        for source in container.get("envFrom") or []:
            if source.get("secretRef"):
                names.add(source["secretRef"].get("name", ""))
    return names - {""}


def _human(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:.0f}d" if hours >= 48 else f"{hours:.0f}h" if hours >= 1 else f"{age.total_seconds() / 60:.0f}m"


def platform_registry_host(snap: Snapshot, params: dict) -> str:
    """The registry the platform uses: a parameter, else the host most platform secrets point at."""
    if params.get("registry"):
        return normalize_host(params["registry"])
    hosts = [auth.host for ns, name in PLATFORM_SECRETS if (s := snap.secret(ns, name)) for auth in s.docker_auths]
    return max(set(hosts), key=hosts.count) if hosts else ""


@detector("registry-secrets")
def detect_secrets(snap: Snapshot, params: dict) -> list[Finding]:
    """Platform registry secrets present, for the platform's registry host, with the same credentials."""
    host = platform_registry_host(snap, params)
    findings, fingerprints = [], {}
    for namespace, name in PLATFORM_SECRETS:
        if not snap.can_read("Secret", namespace):
            continue
        summary = snap.secret(namespace, name)
        resource = f"Secret {namespace}/{name}"
        if summary is None:
            if namespace in snap.namespaces:
                findings.append(make_finding("registry/secret-missing", resource, "not in the secret list",
                                             secret=name, namespace=namespace))
            continue
        auth = summary.auth_for(host) if host else None
        if host and auth is None:
            findings.append(make_finding(
                "registry/secret-wrong-registry-host", resource,
                f"auths hosts: {', '.join(summary.hosts) or 'none'}{'; ' + summary.problem if summary.problem else ''}",
                secret=name, hosts=", ".join(summary.hosts) or "no registry", registry=host))
        elif auth is not None:
            fingerprints[(namespace, name)] = auth.fingerprint
    if len(set(fingerprints.values())) > 1:
        evidence = "; ".join(f"{ns}/{name} {fp}" for (ns, name), fp in fingerprints.items())
        findings.append(make_finding("registry/credentials-inconsistent", f"Secret {'/'.join(next(iter(fingerprints)))}",
                                     evidence, registry=host, count=len(set(fingerprints.values()))))
    return findings


@detector("registry-auth")
def detect_push_auth(snap: Snapshot, params: dict) -> list[Finding]:
    """The five causes of a push 401, from provider answers in params.

    ``params["access"]``: list of dicts (namespace, secret, repository, authenticated, granted, status, detail)
    as nasiko_nb.providers.registry_v2.AccessCheck gives them for each secret's credentials;
    ``params["account_registry"]``: the registry name the provider account really has (None: none);
    ``params["requested_registry"]``: the name the platform pushes to; ``params["account"]``: the account id.
    """
    findings = []
    requested, actual = params.get("requested_registry"), params.get("account_registry", "unknown")
    if requested and actual != "unknown" and requested != actual:
        findings.append(make_finding("registry/name-mismatch", f"Registry {requested}",
                                     f"account {params.get('account', '?')} has registry {actual or 'none'}",
                                     requested=requested, actual=actual or "(none)"))
    now = params.get("now") or datetime.now(timezone.utc)
    name_mismatch = bool(findings)
    for check in params.get("access") or []:
        findings.extend(_classify_access(snap, check, params, now, name_mismatch))
    return findings


def _classify_access(snap: Snapshot, check: dict, params: dict, now: datetime, name_mismatch: bool) -> list[Finding]:
    namespace, name = check["namespace"], check["secret"]
    resource = f"Secret {namespace}/{name}"
    summary = snap.secret(namespace, name)
    registry = f"{check.get('host', '')}/{check['repository']}"
    granted = set(check.get("granted") or ())
    evidence = f"token service for {registry}: {check.get('detail', '')}".strip()
    if check.get("error"):   # the registry could not be asked: say so, do not guess a credential cause
        return [make_finding(check["error"], resource, evidence, provider=f"registry {check.get('host', '')}",
                             endpoint=check.get("host", ""), detail=check.get("detail", ""),
                             action="the token request", what=f"repository {registry}")]
    if not check.get("authenticated"):
        age = secret_age(summary, now) if summary else None
        lifetime = expected_lifetime(check.get("host", ""))
        if age is not None and age > lifetime:
            expired_at = (now - age + lifetime).isoformat(timespec="minutes")
            return [make_finding("registry/expired-token", resource,
                                 f"{evidence}; secret created {_human(age)} ago, tokens last {_human(lifetime)}",
                                 secret=name, expired_at=expired_at)]
        if "expired" in check.get("detail", "").lower():   # the token service says so (Harbor robots, ECR)
            return [make_finding("registry/expired-token", resource, evidence, secret=name,
                                 expired_at="a time the token service did not say")]
        return [make_finding("registry/invalid-token", resource, f"{evidence}; secret age {_human(age) if age else '?'}",
                             secret=name)]
    if {"pull", "push"} <= granted:
        return []
    if "pull" in granted:
        return [make_finding("registry/read-only-token", resource, f"{evidence}; granted: pull only",
                             secret=name, registry=registry)]
    if name_mismatch:
        return []   # nothing is granted on a registry the account does not have: the name is the cause
    user = summary.docker_auths[0].username if summary and summary.docker_auths else "?"
    return [make_finding("registry/wrong-user", resource, f"{evidence}; granted: nothing",
                         secret=name, user=user, expected_user=params.get("account", "the registry owner"))]
