"""What the registry runbooks ask of providers and of the cluster beyond the snapshot.

Each function makes a bounded number of calls (one per platform secret, one per pod of the chosen Job)
and turns provider failures into findings, so the pure checks in ``checks/registry.py`` get plain data.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shlex
from dataclasses import dataclass, field

import pandas as pd

from nasiko_nb.checks.registry import PLATFORM_SECRETS, PushError, find_push_error
from nasiko_nb.cluster import Cluster
from nasiko_nb.codes import make_finding
from nasiko_nb.credentials import check_secret_access
from nasiko_nb.findings import Finding
from nasiko_nb.logs import JobLogs, job_container_logs, read_job_logs
from nasiko_nb.providers.base import DockerCredential, ProviderError, RegistryProvider
from nasiko_nb.redact import normalize_host
from nasiko_nb.runbook import RunbookInputError
from nasiko_nb.snapshot import Snapshot

DO_HOST = "registry.digitalocean.com"


def provider_for(host: str, region: str = "") -> RegistryProvider | None:
    """The provider behind a registry host: DigitalOcean, ECR, or None for a plain Registry v2 (Harbor, ...)."""
    host = normalize_host(host)
    if host == DO_HOST:
        from nasiko_nb.providers.digitalocean import DigitalOceanProvider

        return DigitalOceanProvider(verify=os.environ.get("NASIKO_CA_BUNDLE") or True)
    if ".dkr.ecr." in host:
        from nasiko_nb.providers.ecr import EcrProvider

        return EcrProvider(region=region or host.split(".dkr.ecr.", 1)[1].split(".", 1)[0])
    return None


@dataclass
class AccountFacts:
    """The provider's view: who the API token belongs to and which registry that account has."""

    provider: RegistryProvider | None = None
    account: str = ""
    registry: str | None = "unknown"   # None: the account has no registry; "unknown": could not ask
    problems: list[Finding] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        rows = [("provider", self.provider.name if self.provider else "none (plain Registry v2, or not reachable)"),
                ("account", self.account or "?"), ("registry", self.registry if self.registry is not None else "(none)")]
        return pd.DataFrame(rows, columns=["fact", "value"])


def account_facts(host: str, region: str = "") -> AccountFacts:
    """Connect to the provider behind ``host`` (ECR: in ``region``, default the host's) and ask who we are and
    which registry the account has."""
    facts = AccountFacts()
    name = "digitalocean" if normalize_host(host) == DO_HOST else "ecr" if ".dkr.ecr." in host else ""
    try:
        facts.provider = provider_for(host, region)
        if facts.provider is None:
            return facts
        facts.account = facts.provider.account().id
        info = facts.provider.registry()
        facts.registry = info.name if info else None
    except ProviderError as exc:
        facts.problems.append(provider_finding(exc, name))
    return facts


def provider_finding(exc: ProviderError, provider: str) -> Finding:
    """A provider failure as a finding (the templates of provider/* take these fields)."""
    return make_finding(exc.code, f"Provider {provider}", str(exc), provider=provider, detail=str(exc),
                        endpoint=provider, action="the request", what="such object")


def access_checks(cluster: Cluster, host: str, repository: str, secrets=PLATFORM_SECRETS) -> list[dict]:
    """What the registry grants each platform secret's credentials on ``repository`` (one GET per secret)."""
    return [check_secret_access(cluster, namespace, name, host, repository) for namespace, name in secrets]


def access_frame(checks: list[dict]) -> pd.DataFrame:
    rows = [{"secret": f"{c['namespace']}/{c['secret']}", "repository": f"{c['host']}/{c['repository']}",
             "authenticated": c["authenticated"], "granted": ", ".join(c["granted"]) or "nothing",
             "detail": c["detail"]} for c in checks]
    return pd.DataFrame(rows, columns=["secret", "repository", "authenticated", "granted", "detail"])


def obtain_credentials(provider: RegistryProvider, expiry_seconds: int) -> DockerCredential:
    """New read-write credentials; raises ProviderError (nothing in the cluster is touched before this)."""
    return provider.docker_credentials(read_write=True, expiry_seconds=expiry_seconds or None)


def failed_jobs_frame(jobs: list[dict]) -> pd.DataFrame:
    rows = [{"job": j["metadata"]["name"], "created": j["metadata"].get("creationTimestamp", ""),
             "failed pods": (j.get("status") or {}).get("failed", 0),
             "reason": next((c.get("reason", "") for c in (j.get("status") or {}).get("conditions") or []
                             if c.get("type") == "Failed"), "")} for j in jobs]
    return pd.DataFrame(rows, columns=["job", "created", "failed pods", "reason"])


def job_logs(cluster: Cluster, snap: Snapshot, namespace: str, job: str, container: str = "buildkit-client") -> JobLogs:
    """The build Job's ``container`` logs (read into the snapshot) with the push error they end with."""
    read_job_logs(cluster, snap, namespace, job, (container,))
    logs = job_container_logs(snap, namespace, job, container)
    push_error = next((e for text in reversed(list(logs.values())) if (e := find_push_error(text))), None)
    return JobLogs(job, container, logs, push_error)


@dataclass(frozen=True)
class RegistryTarget:
    """Where the platform pushes: host, registry name (DigitalOcean's first path part) and a repository to test."""

    host: str
    name: str
    repository: str

    @property
    def label(self) -> str:
        """What a confirm names for fixes of this registry: the DigitalOcean registry name, else the host."""
        return self.name or self.host


def resolve_registry(snap: Snapshot, registry: str = "", push_error: PushError | None = None) -> RegistryTarget:
    """The platform registry from (in order) the parameter, a push error, $NASIKO_PLATFORM_REGISTRY, agent images."""
    image = ""
    if push_error is not None:
        image = push_error.image.rsplit(":", 1)[0]
    agent_images = [c.get("image", "") for d in snap.deployments if d["metadata"]["name"].startswith("agent-")
                    for c in d["spec"]["template"]["spec"].get("containers", [])]
    reference = registry or image or os.environ.get("NASIKO_PLATFORM_REGISTRY", "") or (agent_images[0] if agent_images else "")
    host, _, path = reference.partition("/")
    host = normalize_host(host)
    name = path.split("/", 1)[0] if host == DO_HOST and path else ""
    repository = image.split("/", 1)[1] if image else ""
    if not repository and agent_images:
        repository = agent_images[0].split("/", 1)[-1].rsplit(":", 1)[0]
        if name and not repository.startswith(name + "/"):
            repository = f"{name}/{repository.split('/')[-1]}"
    return RegistryTarget(host, name, repository)


def pick_failed_job(jobs: list[dict], job: str) -> str:
    """The Job to diagnose: the one named, else the newest failed one; "" when there is none."""
    names = [j["metadata"]["name"] for j in jobs]
    if job and job not in names:
        raise RunbookInputError(f"job {job!r} is not a failed build Job here; failed: {', '.join(names) or 'none'}")
    return job or (names[0] if names else "")


def repositories_frame(provider: RegistryProvider | None) -> tuple[pd.DataFrame, list[Finding]]:
    """The account's repositories with tag counts, sizes and last update (what a registry deletion loses)."""
    columns = ["repository", "tags", "size MiB", "updated"]
    if provider is None:
        return pd.DataFrame(columns=columns), []
    try:
        repositories = provider.repositories()
    except ProviderError as exc:
        return pd.DataFrame(columns=columns), [provider_finding(exc, provider.name)]
    rows = [{"repository": r.name, "tags": r.tag_count,
             "size MiB": round(r.size_bytes / 2**20, 1) if r.size_bytes is not None else None,
             "updated": r.updated.isoformat(timespec="minutes") if r.updated else ""} for r in repositories]
    return pd.DataFrame(rows, columns=columns), []


def references_to_registry(snap: Snapshot, host: str, name: str) -> pd.DataFrame:
    """Every image reference and env value in the cluster that names ``host/name`` (what still uses that name)."""
    prefix = f"{host}/{name}/"
    rows = []
    for obj in (*snap.deployments, *snap.jobs, *snap.pods, *snap.of_kind("CronJob")):
        spec = obj.get("spec") or {}
        pod_spec = ((spec.get("jobTemplate") or {}).get("spec") or spec).get("template", {}).get("spec") or spec
        for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
            values = [("image", container.get("image", ""))]
            values += [(f"env {e.get('name')}", e.get("value") or "") for e in container.get("env") or []]
            values += [("args", " ".join(container.get("args") or []))]
            for field_name, value in values:
                if prefix in value or value.rstrip("/") == f"{host}/{name}":
                    rows.append({"kind": obj.get("kind", ""), "namespace": obj["metadata"].get("namespace", ""),
                                 "name": obj["metadata"]["name"], "container": container.get("name", ""),
                                 "field": field_name, "value": value[:160]})
    return pd.DataFrame(rows, columns=["kind", "namespace", "name", "container", "field", "value"])


def bootstrap_command(registry_name: str, kubeconfig: str = "") -> str:
    """The guide's option 1: the platform's bootstrap with the account's real registry name."""
    return ("uv run cli/main.py setup bootstrap \\\n"
            f"  --kubeconfig {kubeconfig or '/path/to/kubeconfig.yaml'} \\\n"
            "  --registry-type cloud \\\n"
            f"  --cloud-reg-name {registry_name}")


def tags_frame(provider: RegistryProvider | None, repositories: list[str]) -> tuple[pd.DataFrame, list[Finding]]:
    """Tags of the given repositories with digest, size and age (one provider call per repository)."""
    columns = ["repository", "tag", "digest", "size MiB", "updated"]
    rows, problems = [], []
    for repository in repositories if provider else []:
        try:
            tags = provider.tags(repository)
        except ProviderError as exc:
            problems.append(provider_finding(exc, provider.name))
            continue
        rows += [{"repository": t.repository, "tag": t.tag, "digest": t.digest[:19],
                  "size MiB": round(t.size_bytes / 2**20, 1) if t.size_bytes is not None else None,
                  "updated": t.updated.isoformat(timespec="minutes") if t.updated else ""} for t in tags]
    return pd.DataFrame(rows, columns=columns), problems


def token_lifecycle(snap: Snapshot, host: str, now=None) -> pd.DataFrame:
    """Per platform secret: when its token was issued (the secret's age) and when it expires at the latest."""
    from datetime import datetime, timezone

    from nasiko_nb.checks.registry import expected_lifetime, secret_age

    now = now or datetime.now(timezone.utc)
    rows = []
    for namespace, name in PLATFORM_SECRETS:
        summary = snap.secret(namespace, name)
        auth = summary.auth_for(host) if summary else None
        # a credential fix replaces the data in place: the credentials are as old as that replacement
        age = secret_age(dataclasses.replace(summary, created=summary.issued), now) if summary else None
        lifetime = expected_lifetime(host)
        rows.append({"secret": f"{namespace}/{name}", "user": auth.username if auth else "",
                     "fingerprint": auth.fingerprint if auth else "",
                     "issued": summary.issued if summary else "missing",
                     "expires by": (now - age + lifetime).isoformat(timespec="minutes") if age is not None else "",
                     "expired": bool(age is not None and age > lifetime)})
    return pd.DataFrame(rows, columns=["secret", "user", "fingerprint", "issued", "expires by", "expired"])


def ecr_check_params(host: str, repositories: pd.DataFrame, problems: list[Finding]) -> dict:
    """Params of the ``ecr`` and ``registry-secrets`` detectors: the registry, and the repositories ECR answered
    (None when it could not be asked, so no repository is called missing for want of an answer)."""
    return {"registry_host": host, "registry": host,
            "ecr_repositories": None if problems else list(repositories["repository"])}


REFRESHER = ("default", "ecr-credential-refresher")
_LOGIN_VARIABLE = re.compile(r"(\w+)=\$\(aws ecr get-login-password")


def refresher_extension(snap: Snapshot, host: str, region: str = "",
                        secret: tuple[str, str] = ("nasiko-agents", "agent-registry-credentials")) -> str:
    """The change to the refresher CronJob's script that makes it refresh ``secret`` too, as a diff and a patch.

    The script belongs to the platform's bootstrap, so it is advice to apply (and to carry into the bootstrap),
    not a fix this runbook applies. The added lines write the secret in place (apply), marked with
    REPLACED_AT so its age stays readable, and the refresher's Role must be allowed to do that.
    """
    from nasiko_nb.redact import REPLACED_AT

    namespace, name = secret
    if ".dkr.ecr." not in host:
        return f"The platform's registry {host or '(unknown)'} is not ECR: its logins need no refresher."
    region = region or host.split(".dkr.ecr.", 1)[1].split(".", 1)[0]
    cronjob = snap.get("CronJob", *REFRESHER)
    if cronjob is None:
        return f"There is no CronJob {REFRESHER[0]}/{REFRESHER[1]} to extend: re-create it with the bootstrap first."
    containers = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"].get("containers") or []
    found = [(index, field_name, position, part) for index, c in enumerate(containers)
             for field_name in ("command", "args") for position, part in enumerate(c.get(field_name) or [])
             if "get-login-password" in str(part)]
    if not found:
        return ("The refresher's script does not call `aws ecr get-login-password` in its command or args: "
                f"add the lines for {namespace}/{name} by hand after the line that gets the login.")
    index, field_name, position, script = found[0]
    if name in script:
        return f"The refresher's script already writes {name}; check its Job logs instead."
    match = _LOGIN_VARIABLE.search(script)
    password = f'"${match.group(1)}"' if match else f'"$(aws ecr get-login-password --region {region})"'
    added = (f"kubectl create secret docker-registry {name} -n {namespace} \\\n"
             f"  --docker-server={host} --docker-username=AWS --docker-password={password} \\\n"
             f"  --dry-run=client -o yaml \\\n"
             f"  | kubectl annotate -f - --local -o yaml {REPLACED_AT}=$(date -u +%Y-%m-%dT%H:%M:%SZ) \\\n"
             f"  | kubectl apply -f -\n")
    new_script = script.rstrip("\n") + "\n" + added
    diff = "".join(difflib.unified_diff(script.splitlines(True), new_script.splitlines(True),
                                        f"{field_name}[{position}] now", f"{field_name}[{position}] extended"))
    patch = [{"op": "replace", "value": new_script,
              "path": f"/spec/jobTemplate/spec/template/spec/containers/{index}/{field_name}/{position}"}]
    return (f"CronJob {REFRESHER[0]}/{REFRESHER[1]} refreshes only regcred. Add {namespace}/{name} to its script:\n\n"
            f"{diff}\nas a patch:\n\n  kubectl patch cronjob {REFRESHER[1]} -n {REFRESHER[0]} --type=json -p "
            f"{shlex.quote(json.dumps(patch))}\n\n"
            f"Its ServiceAccount's Role needs get, create and patch on secrets in {namespace}; carry the change "
            f"into the bootstrap, or the next install loses it.")
