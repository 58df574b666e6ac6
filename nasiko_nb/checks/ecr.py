"""Why ECR pulls and pushes stop working after a while: registry/ecr-* and registry/repository-missing.

ECR logins last 12 hours. The platform's CronJob `ecr-credential-refresher` (namespace `default`, every
6 h) recreates only `regcred` in `nasiko` and `buildkit`, so `agent-registry-credentials` in
`nasiko-agents` goes stale 12 h after it was made, and a refresher that is missing, suspended or failing
lets every secret go stale. Bootstrap creates only the repository `nasiko-images` while images are pushed
to `<registry>/<agent>`, so an agent's repository can be missing. A secret's age is its creation time
because the refresher deletes and recreates it (after an in-place fix: its REPLACED_AT annotation).
Nothing is said unless the platform's registry is ECR.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from nasiko_nb.checks import detector
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.redact import SecretSummary, normalize_host
from nasiko_nb.snapshot import Snapshot

REFRESHER = "ecr-credential-refresher"
REFRESHER_NAMESPACE = "default"
REFRESHER_INIT_JOB = "ecr-refresher-init"
REFRESHED_SECRETS = {("nasiko", "regcred"), ("buildkit", "regcred")}
TOKEN_LIFETIME = timedelta(hours=12)
SCHEDULE_PERIOD = timedelta(hours=6)
ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# The platform's secrets, in the order their registry host is trusted to name the platform's registry.
PLATFORM_SECRETS = (("nasiko", "regcred"), ("buildkit", "regcred"), ("nasiko-agents", "agent-registry-credentials"))
_WORKLOAD_KINDS = ("Deployment", "Job", "Pod")
_SHOWN_REPOSITORIES = 10


def is_ecr_host(host: str) -> bool:
    return bool(ECR_HOST.match(host or ""))


def platform_registry(snapshot: Snapshot, params: dict) -> str | None:
    """The platform's ECR registry host, or None when the platform's registry is not ECR."""
    if params.get("registry_host"):
        host = normalize_host(str(params["registry_host"]))
        return host if is_ecr_host(host) else None
    platform = [s for key in PLATFORM_SECRETS if (s := snapshot.secret(*key)) and s.docker_auths]
    # the first platform secret names the registry (an agent secret for ECR on a DigitalOcean platform is a
    # wrong-registry mistake, not an ECR platform); without platform secrets any ECR secret will do
    candidates = platform[:1] or snapshot.secrets
    return next((auth.host for secret in candidates for auth in secret.docker_auths if is_ecr_host(auth.host)), None)


@detector("ecr")
def detect(snapshot: Snapshot, params: dict) -> list[Finding]:
    """Refresher health, stale ECR secrets and missing repositories (params: registry_host, ecr_repositories)."""
    registry = platform_registry(snapshot, params)
    if registry is None:
        return []
    return [*_refresher_findings(snapshot, registry), *_stale_secret_findings(snapshot),
            *_missing_repository_findings(snapshot, params, registry)]


# --- the refresher CronJob -------------------------------------------------------------------------

def _refresher_findings(snapshot: Snapshot, registry: str) -> list[Finding]:
    resource = f"CronJob {REFRESHER_NAMESPACE}/{REFRESHER}"
    cronjob = snapshot.get("CronJob", REFRESHER_NAMESPACE, REFRESHER)
    if cronjob is None:
        if not _namespace_was_read(snapshot, REFRESHER_NAMESPACE):
            return []
        holders = ", ".join(f"{s.namespace}/{s.name}" for s in snapshot.secrets
                            if any(is_ecr_host(a.host) for a in s.docker_auths)) or "none"
        evidence = (f"no CronJob {REFRESHER} in namespace {REFRESHER_NAMESPACE}; registry {registry}; "
                    f"secrets holding ECR tokens: {holders}")
        return [make_finding("registry/ecr-refresher-missing", resource, evidence,
                             cronjob=REFRESHER, namespace=REFRESHER_NAMESPACE)]
    reasons, evidence = _refresher_problems(snapshot, cronjob)
    if not reasons:
        return []
    return [make_finding("registry/ecr-refresher-failing", resource, "; ".join(evidence),
                         cronjob=REFRESHER, namespace=REFRESHER_NAMESPACE, detail=" and ".join(reasons))]


def _refresher_problems(snapshot: Snapshot, cronjob: dict) -> tuple[list[str], list[str]]:
    """(reasons for the message, evidence lines) of a refresher that does not keep the tokens fresh."""
    now = snapshot.taken_at
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    jobs = sorted(_refresher_jobs(snapshot), key=_job_started)
    reasons, evidence = [], [f"schedule {spec.get('schedule', '?')}, suspend {bool(spec.get('suspend'))}, "
                                 f"last scheduled {status.get('lastScheduleTime') or 'never'}, "
                                 f"last successful {status.get('lastSuccessfulTime') or 'never'}"]
    evidence += [f"Job {_name(job)}: {_job_state(job)[0]} ({_job_started(job) or 'not started'})" for job in jobs]
    if spec.get("suspend"):
        reasons.append("it is suspended (spec.suspend is true)")
    finished = [job for job in jobs if _job_state(job)[0] in ("succeeded", "failed")]
    if finished and _job_state(finished[-1])[0] == "failed":
        state_detail = _job_state(finished[-1])[1]
        reasons.append(f"its last Job {_name(finished[-1])} failed" + (f" ({state_detail})" if state_detail else ""))
    last_success = max([t for t in [_time(status.get("lastSuccessfulTime"))]
                        + [_time((job.get("status") or {}).get("completionTime"))
                           for job in jobs if _job_state(job)[0] == "succeeded"] if t], default=None)
    if last_success is None:
        created = _time((cronjob.get("metadata") or {}).get("creationTimestamp"))
        if finished or (created and now - created > SCHEDULE_PERIOD):
            reasons.append("no run has ever succeeded")
    elif now - last_success > TOKEN_LIFETIME:
        reasons.append(f"its last successful run was {_age(now - last_success)} ago")
    return reasons, evidence


def _refresher_jobs(snapshot: Snapshot) -> list[dict]:
    jobs = []
    for job in snapshot.of_kind("Job"):
        meta = job.get("metadata") or {}
        owned = any(ref.get("kind") == "CronJob" and ref.get("name") == REFRESHER
                    for ref in meta.get("ownerReferences") or [])
        if meta.get("namespace") == REFRESHER_NAMESPACE and (owned or meta.get("name") == REFRESHER_INIT_JOB):
            jobs.append(job)
    return jobs


def _job_state(job: dict) -> tuple[str, str]:
    """(succeeded | failed | running | pending, the failure's reason and message)."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "succeeded", ""
        if condition.get("type") == "Failed":
            detail = ": ".join(p for p in (condition.get("reason"), condition.get("message")) if p)
            return "failed", detail
    if status.get("succeeded"):
        return "succeeded", ""
    if status.get("active"):
        return "running", ""
    if status.get("failed"):
        return "failed", f"{status['failed']} failed pod(s)"
    return "pending", ""


def _job_started(job: dict) -> str:
    return str((job.get("status") or {}).get("startTime") or (job.get("metadata") or {}).get("creationTimestamp")
               or "")


def _namespace_was_read(snapshot: Snapshot, namespace: str) -> bool:
    """True when the snapshot listed objects of `namespace`, so a missing CronJob there is really missing."""
    if not snapshot.can_read("CronJob", namespace):
        return False
    kinds = ("Pod", "Event", "Deployment", "ReplicaSet", "Job", "Service", "Endpoints", "ConfigMap",
             *snapshot.others)
    return (any((obj.get("metadata") or {}).get("namespace") == namespace for kind in kinds
                for obj in snapshot.of_kind(kind))
            or any(secret.namespace == namespace for secret in snapshot.secrets))


# --- secrets holding ECR tokens ----------------------------------------------------------------------

def _stale_secret_findings(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for secret in snapshot.secrets:
        auths = [a for a in secret.docker_auths if is_ecr_host(a.host)]
        created = _time(secret.issued)
        if not auths or created is None or snapshot.taken_at - created <= TOKEN_LIFETIME:
            continue
        age = _age(snapshot.taken_at - created)
        written = "credentials replaced" if secret.replaced else "created"
        evidence = (f"{written} {secret.issued} ({age} before the snapshot at "
                    f"{snapshot.taken_at.isoformat(timespec='seconds')}); "
                    + ", ".join(f"{a.host} user {a.username or '?'} password {a.fingerprint or 'none'}"
                                for a in auths)
                    + "; " + _why_not_refreshed(secret))
        findings.append(make_finding("registry/ecr-secret-stale", f"Secret {secret.namespace}/{secret.name}",
                                     evidence, secret=secret.name, namespace=secret.namespace, age=age))
    return findings


def _why_not_refreshed(secret: SecretSummary) -> str:
    if (secret.namespace, secret.name) in REFRESHED_SECRETS:
        return f"CronJob {REFRESHER_NAMESPACE}/{REFRESHER} should have recreated it within 6 h"
    return (f"CronJob {REFRESHER_NAMESPACE}/{REFRESHER} recreates only regcred (nasiko, buildkit), "
            f"never this secret")


# --- repositories the platform pushes to and pulls from -----------------------------------------------

def _missing_repository_findings(snapshot: Snapshot, params: dict, registry: str) -> list[Finding]:
    answer = params.get("ecr_repositories")
    if answer is None:
        return []
    existing = sorted({_repository_name(item) for item in answer})
    findings = []
    for repository, users in sorted(_needed_repositories(snapshot, registry).items()):
        if repository in existing:
            continue
        shown = ", ".join(existing[:_SHOWN_REPOSITORIES]) + (", ..." if len(existing) > _SHOWN_REPOSITORIES else "")
        evidence = (f"needed by {', '.join(sorted(users))}; repositories in {registry} ({len(existing)}): "
                    f"{shown or 'none'}")
        findings.append(make_finding("registry/repository-missing", f"Repository {registry}/{repository}", evidence,
                                     repository=repository, registry=registry))
    return findings


def _repository_name(item) -> str:
    """A repository name from a provider answer: a Repository, a describe-repositories dict or a name."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return item.get("name") or item.get("repositoryName") or ""
    return item.name


def _needed_repositories(snapshot: Snapshot, registry: str) -> dict[str, set[str]]:
    """Repository -> the objects that need it: images on `registry` in workloads and build Jobs' arguments,
    and `<agent>` for every agent seen whose image reference is not in the snapshot."""
    reference = re.compile(re.escape(registry) + r"/(?P<repository>[a-z0-9][a-z0-9._/-]*[a-z0-9])")
    needed: dict[str, set[str]] = {}
    agents_with_image: set[str] = set()
    for kind in _WORKLOAD_KINDS:
        for obj in snapshot.of_kind(kind):
            found = {match["repository"] for text in _container_strings(obj) for match in reference.finditer(text)}
            meta = obj.get("metadata") or {}
            for repository in found:
                needed.setdefault(repository, set()).add(f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')}")
            if found and (agent := snapshot.agent_of(obj)):
                agents_with_image.add(agent)
    for agent in snapshot.agents() - agents_with_image:
        needed.setdefault(agent, set()).add(f"agent {agent}")
    return needed


def _container_strings(obj: dict) -> list[str]:
    """Images, commands, arguments and env values of every container of a workload or pod."""
    spec = obj.get("spec") or {}
    pod_spec = ((spec.get("template") or {}).get("spec")) or spec
    strings = []
    for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
        strings.append(container.get("image") or "")
        strings += [str(part) for part in (container.get("command") or []) + (container.get("args") or [])]
        strings += [str(env.get("value") or "") for env in container.get("env") or []]
    return strings


# --- time ------------------------------------------------------------------------------------------------

def _time(value) -> datetime | None:
    """A timezone-aware time from an API timestamp (a string, or a datetime when YAML parsed it); None if unreadable."""
    if not value:
        return None
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _age(delta: timedelta) -> str:
    hours, minutes = divmod(int(delta.total_seconds()) // 60, 60)
    if hours >= 48:
        return f"{hours // 24}d {hours % 24}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")
