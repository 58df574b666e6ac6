"""Build Jobs and the BuildKit daemon they talk to: build/* and buildkit/* findings.

Two detector families. ``build`` reads the logs of failed build Jobs (``job-<agent>-<ts>`` in
``nasiko-agents``; the runbook puts the chosen Job's pod logs into ``snapshot.logs``) and names the most
specific cause, plus the ``download-agent`` init container's failures (HTTP 404 after a backend restart).
``buildkit`` reads the objects only: is the ``buildkitd`` Deployment available, does its Service exist and
have ready endpoints, does every client point at that Service, and do build Jobs sit pending.

Build log wording differs between ``buildctl`` (BuildKit), ``docker build`` and ``docker buildx``, and
between pip, npm and apt, so causes are found by searching each line for several phrasings.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import pandas as pd

from nasiko_nb.checks import detector
from nasiko_nb.checks.registry import find_push_error
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.redact import scrub
from nasiko_nb.snapshot import Snapshot, event_message

DEFAULT_NAMESPACE = "nasiko-agents"
BUILDKIT_NAMESPACE = "buildkit"
BUILDKIT_SERVICE = "buildkitd"
BUILDKIT_PORT = 1234
PLATFORM_NAMESPACE = "nasiko"
CLIENT_CONTAINER = "buildkit-client"
INIT_CONTAINER = "download-agent"
PENDING_AFTER_S = 300
BUILD_JOB = re.compile(r"^job-(?P<agent>.+?)(?:-rebuild)?-(?P<ts>\d{9,})$")
_ADDRESS_VARIABLES = {"Deployment": "BUILDKIT_ADDRESS", "Job": "BUILDKIT_HOST", "Pod": "BUILDKIT_HOST"}

# Markers that a connection error is about reaching buildkitd itself (not a registry or a package index).
_DAEMON_CONTEXT = (r"(?:failed to get status|failed to dial gRPC|Error while dialing|buildkitd?\b|"
                   r"BuildKit daemon|:1234\b|failed to list workers|failed to connect to buildkitd)")

# Ordered per line: the first class whose pattern occurs in a line names that line's cause.
_CLASSES: list[tuple[str, re.Pattern]] = [(code, re.compile(pattern, re.IGNORECASE)) for code, pattern in [
    ("buildkit/wrong-address",
     rf"(?=.*{_DAEMON_CONTEXT}).*(?:no such host|server misbehaving|lookup \S+ on \S+: no|"
     r"unsupported protocol scheme|unknown scheme|invalid buildkit address|missing port in address)"),
    ("buildkit/daemon-down",
     rf"(?=.*{_DAEMON_CONTEXT}).*(?:connection refused|i/o timeout|no route to host|connection reset|"
     r"context deadline exceeded|code = Unavailable)"
     r"|cannot connect to the BuildKit daemon|failed to connect to buildkitd"),
    ("build/missing-dockerfile",
     r"failed to (?:read|load) dockerfile|open Dockerfile: no such file|\"/?Dockerfile\": not found"
     r"|unable to evaluate symlinks in Dockerfile path|Cannot locate specified Dockerfile"
     r"|lstat \S*Dockerfile: no such file|dockerfile: not found|failed to find target Dockerfile"),
    ("build/copy-source-missing",
     r"failed to compute cache key:.*\": not found|failed to calculate checksum of ref .*\": not found"
     r"|(?:COPY|ADD) failed: .*(?:not found|does not exist|no such file|outside the build context)"
     r"|failed to walk \S+: lstat .*no such file"),
    ("build/context-too-large",
     r"received message larger than max|trying to send message larger than max|ResourceExhausted"
     r"|context too large|build context is too large|request entity too large"),
    ("build/network-timeout",
     r"ConnectTimeoutError|ReadTimeoutError|Read timed out|ETIMEDOUT|ESOCKETTIMEDOUT|EAI_AGAIN|ECONNRESET"
     r"|Temporary failure (?:in )?(?:name )?resol(?:ution|ving)|connection timed? ?out|connect timeout|i/o timeout"
     r"|Could not resolve ['\"]?[\w.-]+|Failed to establish a new connection|network is unreachable"
     r"|Unable to connect to \S+|TLS handshake timeout|Failed to fetch https?://"
     r"|failed to fetch .*(?:timeout|timed out)|socket timeout|Name or service not known"),
    ("build/init-download-failed",
     r"curl: \(\d+\) .*(?:returned error|Could not resolve|Failed to connect)|wget: server returned error"),
]]
# When a log shows several causes, the Job's finding names the one that explains the failure best:
# a daemon that could not be reached explains everything; network retries may have recovered.
PRIORITY = ("buildkit/wrong-address", "buildkit/daemon-down", "build/missing-dockerfile", "build/copy-source-missing",
            "build/context-too-large", "build/push-unauthorized", "build/network-timeout", "build/init-download-failed")
_SOURCE = re.compile(r"\"(?P<quoted>[^\"]+)\": not found|stat (?P<stat>\S+?):? (?:file does not exist|no such file)"
                     r"|lstat (?P<lstat>\S+?): no such file")
_DIAL = re.compile(r"dial tcp(?: (?P<ip>[\d.]+:\d+|\[[0-9a-f:]+\]:\d+))?:? (?:lookup (?P<host>[\w.-]+))?")
_CURL = re.compile(r"curl: \((?P<code>\d+)\) (?P<text>.*?returned error: (?P<status>\d{3}).*|.*)", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s'\"]+")


@dataclass(frozen=True)
class BuildError:
    """One line of a build log that names a cause."""

    code: str
    line_no: int     # 1-based
    line: str
    detail: str = ""     # COPY source, registry host or daemon address when the line names it

    def to_dict(self) -> dict:
        return asdict(self)


def classify_build_log(text: str | None) -> list[BuildError]:
    """Every line of a build log that names a cause, in log order."""
    errors = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        push = find_push_error(line)
        if push is not None:
            errors.append(BuildError("build/push-unauthorized", number, line.strip(), push.registry_host))
            continue
        for code, pattern in _CLASSES:
            if pattern.search(line):
                errors.append(BuildError(code, number, line.strip(), _detail(code, line)))
                break
    return errors


def _detail(code: str, line: str) -> str:
    if code == "build/copy-source-missing":
        match = _SOURCE.search(line)
        if match:
            return next(v for v in match.groupdict().values() if v)
        return ""
    if code.startswith("buildkit/"):
        match = _DIAL.search(line)
        if match and (match["host"] or match["ip"]):
            return match["host"] or match["ip"]
    return ""


def most_specific(errors: list[BuildError]) -> BuildError | None:
    """The error that explains a failed build best (see PRIORITY); the last of that class in the log."""
    for code in PRIORITY:
        chosen = [e for e in errors if e.code == code]
        if chosen:
            return chosen[-1]
    return None


def log_excerpt(text: str | None, errors: list[BuildError], context: int = 3, max_lines: int = 40) -> str:
    """The error lines with `context` lines around each, numbered, gaps marked with "..."; never the whole log."""
    lines = (text or "").splitlines()
    if not lines or not errors:
        return ""
    wanted: set[int] = set()
    for error in errors:
        wanted.update(range(max(1, error.line_no - context), min(len(lines), error.line_no + context) + 1))
    marks = {e.line_no for e in errors}
    out, previous = [], 0
    for number in sorted(wanted):
        if previous and number != previous + 1:
            out.append("...")
        out.append(f"{number:>5}{'>' if number in marks else ' '} {lines[number - 1]}")
        previous = number
    if len(out) > max_lines:
        out = out[:max_lines] + [f"... ({len(out) - max_lines} more lines)"]
    return scrub("\n".join(out))


# --- object helpers (also used by checks.resources) -------------------------------------------------------

def name_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def namespace_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace") or ""


def parse_time(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def human_age(delta: timedelta | None) -> str:
    if delta is None:
        return ""
    seconds = max(0, int(delta.total_seconds()))
    if seconds >= 172800:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def object_age(snapshot: Snapshot, obj: dict) -> str:
    """How old the object was when the snapshot was taken ("" without a creationTimestamp)."""
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return human_age(snapshot.taken_at - created) if created else ""


def job_condition(job: dict, kind: str) -> dict | None:
    """The Job's condition `kind` ("Failed", "Complete") when its status is True."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and str(condition.get("status")) == "True":
            return condition
    return None


def job_status(job: dict) -> str:
    if job_condition(job, "Failed"):
        return "Failed"
    if job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet"):
        return "Complete"
    return "Active" if (job.get("status") or {}).get("active") else "Pending"


def job_age(snapshot: Snapshot, job: dict) -> timedelta | None:
    started = parse_time((job.get("status") or {}).get("startTime")) or parse_time(
        (job.get("metadata") or {}).get("creationTimestamp"))
    return snapshot.taken_at - started if started else None


def build_jobs(snapshot: Snapshot, namespace: str) -> list[dict]:
    return [job for job in snapshot.jobs if namespace_of(job) == namespace and BUILD_JOB.match(name_of(job))]


def failed_build_jobs(snapshot: Snapshot, namespace: str) -> list[dict]:
    """Build Jobs whose condition Failed is True, newest first."""
    jobs = [job for job in build_jobs(snapshot, namespace) if job_condition(job, "Failed")]
    return sorted(jobs, key=lambda j: j["metadata"].get("creationTimestamp", ""), reverse=True)


def pod_state(pod: dict) -> str:
    """"Pending (Init:ImagePullBackOff)"-style summary of a pod's phase and its containers' reasons."""
    status = pod.get("status") or {}
    reasons = []
    for statuses, prefix in ((status.get("initContainerStatuses"), "Init:"), (status.get("containerStatuses"), "")):
        for item in statuses or []:
            state = item.get("state") or {}
            if state.get("waiting") and state["waiting"].get("reason") not in (None, "PodInitializing"):
                reasons.append(f"{prefix}{state['waiting']['reason']}")
            elif state.get("terminated") and (state["terminated"].get("exitCode") or 0) != 0:
                reasons.append(f"{prefix}{state['terminated'].get('reason') or 'Error'}"
                               f"(exit {state['terminated'].get('exitCode')})")
    if status.get("reason"):
        reasons.insert(0, status["reason"])
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reasons.append(condition.get("reason") or "Unschedulable")
    phase = status.get("phase") or "Unknown"
    return f"{phase} ({', '.join(reasons)})" if reasons else phase


# --- detector "build" -------------------------------------------------------------------------------------

@detector("build")
def detect_build(snapshot: Snapshot, params: dict) -> list[Finding]:
    namespace = params.get("namespace") or DEFAULT_NAMESPACE
    findings = []
    for job in _chosen_jobs(snapshot, params):
        pods = [p for p in snapshot.pods_of_job(namespace_of(job), name_of(job)) if (p.get("status") or {}).get("phase") != "Succeeded"]
        resource = f"Job {namespace}/{name_of(job)}"
        init = _init_download_failure(snapshot, job, pods)
        if init is not None:
            findings.append(init)
            continue
        if not job_condition(job, "Failed"):
            continue
        finding = _log_finding(snapshot, job, pods, resource)
        if finding is not None:
            findings.append(finding)
    return findings


def _chosen_jobs(snapshot: Snapshot, params: dict) -> list[dict]:
    """Build Jobs of params["namespace"], narrowed to params["job"] or params["agent"] when given."""
    jobs = build_jobs(snapshot, params.get("namespace") or DEFAULT_NAMESPACE)
    if params.get("job"):
        jobs = [j for j in jobs if name_of(j) == params["job"]]
    if params.get("agent"):
        jobs = [j for j in jobs if BUILD_JOB.match(name_of(j))["agent"] == params["agent"]]
    return jobs


def _log_finding(snapshot: Snapshot, job: dict, pods: list[dict], resource: str) -> Finding | None:
    best, best_pod, best_text, best_errors = None, None, "", []
    for pod in pods:
        for previous in (False, True):
            text = snapshot.log(namespace_of(pod), name_of(pod), CLIENT_CONTAINER, previous)
            if not text:
                continue
            errors = classify_build_log(text)
            chosen = most_specific(errors)
            if chosen and (best is None or PRIORITY.index(chosen.code) < PRIORITY.index(best.code)):
                best, best_pod, best_text, best_errors = chosen, pod, text, errors
    if best is None:
        return None
    job_name = name_of(job)
    where = f"pod {name_of(best_pod)} container {CLIENT_CONTAINER}, line {best.line_no}:\n"
    evidence = where + log_excerpt(best_text, [best], context=2)
    others = sorted({e.code for e in best_errors} - {best.code})
    if others:
        evidence += f"\nalso in the log: {', '.join(others)}"
    if best.code == "build/push-unauthorized":
        return make_finding(best.code, resource, evidence, job=job_name, registry=best.detail)
    if best.code == "build/copy-source-missing":
        return make_finding(best.code, resource, evidence, job=job_name, source=best.detail or "(unknown)")
    if best.code.startswith("buildkit/"):
        configured = _env_value(snapshot, _pod_spec(best_pod), "BUILDKIT_HOST", namespace_of(best_pod)) \
            or _env_value(snapshot, _pod_spec(job), "BUILDKIT_HOST", namespace_of(job))
        if configured:
            evidence += f"\nconfigured BUILDKIT_HOST={configured}"
        hosts, ports, _ = expected_addresses(snapshot)
        if best.code == "buildkit/wrong-address" and configured and address_matches(configured, hosts, ports) \
                and snapshot.get("Service", BUILDKIT_NAMESPACE, BUILDKIT_SERVICE) is None:
            # the right name that does not resolve: the Service itself is gone
            return make_finding("buildkit/service-missing", resource, scrub(evidence + "; that name does not resolve: "
                                                                           "the Service is missing"),
                                service=BUILDKIT_SERVICE, namespace=BUILDKIT_NAMESPACE)
        return make_finding(best.code, resource, scrub(evidence), address=configured or best.detail or "(unknown)")
    return make_finding(best.code, resource, evidence, job=job_name)


def _init_download_failure(snapshot: Snapshot, job: dict, pods: list[dict]) -> Finding | None:
    """The download-agent init container exited non-zero or its log shows curl's HTTP error."""
    for pod in pods:
        spec_container = next((c for c in (pod.get("spec") or {}).get("initContainers") or []
                               if c.get("name") == INIT_CONTAINER), None)
        if spec_container is None:
            continue
        status = next((s for s in (pod.get("status") or {}).get("initContainerStatuses") or []
                       if s.get("name") == INIT_CONTAINER), {})
        terminated = ((status.get("state") or {}).get("terminated")
                      or (status.get("lastState") or {}).get("terminated") or {})
        exit_code = terminated.get("exitCode")
        log_line, http_status = "", ""
        for previous in (False, True):
            for line in (snapshot.log(namespace_of(pod), name_of(pod), INIT_CONTAINER, previous) or "").splitlines():
                match = _CURL.search(line)
                if match:
                    log_line, http_status = line.strip(), match["status"] or ""
        if not log_line and not exit_code:
            continue
        urls = _URL.findall(" ".join(str(x) for x in (spec_container.get("command") or [])
                                     + (spec_container.get("args") or [])))
        url = urls[0] if urls else "(not in the container's command)"
        parts = [f"pod {name_of(pod)} init container {INIT_CONTAINER}: GET {url}"]
        if http_status:
            parts.append(f"HTTP {http_status}")
        if exit_code:
            parts.append(f"exit code {exit_code}" + (f" ({terminated['reason']})" if terminated.get("reason") else ""))
        if log_line:
            parts.append(f"log: {log_line}")
        note = ("the backend keeps uploaded agent files on its container filesystem (no volume): a backend "
                "restart loses them, and the download then returns 404; re-upload the agent")
        evidence = scrub("; ".join(parts) + ". Note: " + note)
        return make_finding("build/init-download-failed", f"Job {namespace_of(job)}/{name_of(job)}", evidence,
                            container=INIT_CONTAINER, job=name_of(job))
    return None


# --- detector "buildkit" ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildkitClient:
    """One place a BuildKit address is configured."""

    object: str        # "Deployment nasiko/nasiko-backend"
    container: str
    variable: str
    address: str
    matches: bool


def expected_addresses(snapshot: Snapshot, namespace: str = BUILDKIT_NAMESPACE,
                       service: str = BUILDKIT_SERVICE) -> tuple[set[str], set[int], str]:
    """(hosts that name the Service, ports it exposes, the canonical address)."""
    svc = snapshot.get("Service", namespace, service)
    ports = {int(p["port"]) for p in ((svc or {}).get("spec") or {}).get("ports") or [] if p.get("port")}
    ports = ports or {BUILDKIT_PORT}
    hosts = {f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"}
    cluster_ip = ((svc or {}).get("spec") or {}).get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        hosts.add(cluster_ip)
    port = BUILDKIT_PORT if BUILDKIT_PORT in ports else min(ports)
    return hosts, ports, f"tcp://{service}.{namespace}.svc.cluster.local:{port}"


def address_matches(address: str, hosts: set[str], ports: set[int]) -> bool:
    match = re.fullmatch(r"tcp://(?P<host>[^:/]+):(?P<port>\d+)/?", (address or "").strip())
    return bool(match) and match["host"].rstrip(".").lower() in hosts and int(match["port"]) in ports


def _pod_spec(obj: dict) -> dict:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    return (spec.get("template") or {}).get("spec") or {}


def _env_value(snapshot: Snapshot, pod_spec: dict, variable: str, namespace: str = "") -> str | None:
    for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
        value = _container_env(snapshot, container, variable, namespace)
        if value is not None:
            return value
    return None


def _container_env(snapshot: Snapshot, container: dict, variable: str, namespace: str) -> str | None:
    for env in container.get("env") or []:
        if env.get("name") != variable:
            continue
        if "value" in env:
            return str(env.get("value") or "")
        ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            cm = snapshot.get("ConfigMap", namespace, ref.get("name", ""))
            if cm is not None:
                return str((cm.get("data") or {}).get(ref.get("key", ""), ""))
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        cm = snapshot.get("ConfigMap", namespace, ref.get("name", "")) if ref else None
        if cm is not None and variable in (cm.get("data") or {}):
            return str(cm["data"][variable])
    return None


def buildkit_clients(snapshot: Snapshot, params: dict | None = None) -> list[BuildkitClient]:
    """Every configured BuildKit address: BUILDKIT_ADDRESS in platform Deployments, BUILDKIT_HOST in build
    Job templates and in build pods whose Job is not in the snapshot."""
    params = params or {}
    hosts, ports, _ = expected_addresses(snapshot, params.get("buildkit_namespace") or BUILDKIT_NAMESPACE,
                                         params.get("buildkit_service") or BUILDKIT_SERVICE)
    agents_ns = params.get("namespace") or DEFAULT_NAMESPACE
    objects = [d for d in snapshot.deployments if namespace_of(d) != (params.get("buildkit_namespace")
                                                                      or BUILDKIT_NAMESPACE)]
    objects += build_jobs(snapshot, agents_ns)
    job_names = {name_of(j) for j in objects if j.get("kind") == "Job"}
    objects += [p for p in snapshot.pods_in(agents_ns)
                if BUILD_JOB.match(snapshot.job_name_of(p) or "") and snapshot.job_name_of(p) not in job_names]
    clients = []
    for obj in objects:
        kind = obj.get("kind") or ""
        variable = _ADDRESS_VARIABLES.get(kind)
        spec = _pod_spec(obj)
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            value = _container_env(snapshot, container, variable, namespace_of(obj))
            if value is None:
                continue
            clients.append(BuildkitClient(f"{kind} {namespace_of(obj)}/{name_of(obj)}", container.get("name", ""),
                                          variable, value, address_matches(value, hosts, ports)))
    return clients


def buildkit_clients_frame(snapshot: Snapshot, params: dict | None = None) -> pd.DataFrame:
    return pd.DataFrame([asdict(c) for c in buildkit_clients(snapshot, params)],
                        columns=["object", "container", "variable", "address", "matches"])


def build_jobs_frame(snapshot: Snapshot, namespace: str = DEFAULT_NAMESPACE) -> pd.DataFrame:
    """One row per build Job: status, age and its pods' phases and reasons."""
    rows = []
    for job in sorted(build_jobs(snapshot, namespace), key=name_of):
        pods = snapshot.pods_of_job(namespace_of(job), name_of(job))
        failed = job_condition(job, "Failed") or {}
        rows.append({"job": name_of(job), "agent": BUILD_JOB.match(name_of(job))["agent"],
                     "status": job_status(job), "reason": failed.get("reason") or "",
                     "age": human_age(job_age(snapshot, job)),
                     "pods": "; ".join(f"{name_of(p)}: {pod_state(p)}" for p in pods)})
    return pd.DataFrame(rows, columns=["job", "agent", "status", "reason", "age", "pods"])


@detector("buildkit")
def detect_buildkit(snapshot: Snapshot, params: dict) -> list[Finding]:
    bk_ns = params.get("buildkit_namespace") or BUILDKIT_NAMESPACE
    service = params.get("buildkit_service") or BUILDKIT_SERVICE
    _, _, canonical = expected_addresses(snapshot, bk_ns, service)
    findings: list[Finding] = []
    if bk_ns in snapshot.namespaces:
        findings += _daemon_findings(snapshot, bk_ns, service, canonical)
    # a failed Job whose log already shows the wrong address is reported by the "build" detector
    reported = {f"Job {namespace_of(j)}/{name_of(j)}" for j in build_jobs(snapshot, params.get("namespace")
                                                                         or DEFAULT_NAMESPACE)
                if job_condition(j, "Failed") and (f := _log_finding(snapshot, j, snapshot.pods_of_job(namespace_of(j), name_of(j)), ""))
                and f.code == "buildkit/wrong-address"}
    for client in buildkit_clients(snapshot, params):
        if not client.matches and client.object not in reported:
            svc = snapshot.get("Service", bk_ns, service)
            ports = ", ".join(str(p.get("port")) for p in ((svc or {}).get("spec") or {}).get("ports") or [])
            exposes = f"Service {bk_ns}/{service} exposes port {ports}" if svc else \
                f"Service {bk_ns}/{service} is not in the snapshot"
            evidence = (f"{client.variable}={client.address} in container {client.container} of {client.object}; "
                        f"{exposes}; expected {canonical}")
            findings.append(make_finding("buildkit/wrong-address", client.object, scrub(evidence),
                                         address=client.address or "(empty)"))
    findings += _pending_jobs(snapshot, params)
    return findings


def _daemon_findings(snapshot: Snapshot, bk_ns: str, service: str, canonical: str) -> list[Finding]:
    findings = []
    deployment = snapshot.get("Deployment", bk_ns, service)
    down = False
    if deployment is not None:
        status = deployment.get("status") or {}
        if not status.get("availableReplicas"):
            down = True
            pods = [p for p in snapshot.pods_in(bk_ns)
                    if snapshot.deployment_name_of(p) == service
                    or ((p.get("metadata") or {}).get("labels") or {}).get("app") == service]
            states = "; ".join(f"{name_of(p)}: {pod_state(p)}" for p in pods) or "no pods"
            wanted = (deployment.get("spec") or {}).get("replicas", 1)
            evidence = (f"Deployment {bk_ns}/{service}: {status.get('availableReplicas') or 0}/{wanted} available"
                        f" (replicas {status.get('replicas') or 0}, ready {status.get('readyReplicas') or 0}); "
                        f"pods: {states}")
            findings.append(make_finding("buildkit/daemon-down", f"Deployment {bk_ns}/{service}", scrub(evidence),
                                         address=canonical))
    elif snapshot.can_read("Deployment", bk_ns):
        down = True
        findings.append(make_finding("buildkit/daemon-down", f"Deployment {bk_ns}/{service}",
                                     f"no Deployment {service} in namespace {bk_ns}", address=canonical))
    svc = snapshot.get("Service", bk_ns, service)
    if svc is None:
        if snapshot.can_read("Service", bk_ns):
            findings.append(make_finding("buildkit/service-missing", f"Service {bk_ns}/{service}",
                                         f"no Service {service} in namespace {bk_ns}; clients expect {canonical}",
                                         service=service, namespace=bk_ns))
        return findings
    if down or not snapshot.can_read("Endpoints", bk_ns):
        return findings
    endpoints = snapshot.get("Endpoints", bk_ns, service)
    subsets = (endpoints or {}).get("subsets") or []
    ready = sum(len(s.get("addresses") or []) for s in subsets)
    if ready == 0:
        not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
        selector = ", ".join(f"{k}={v}" for k, v in ((svc.get("spec") or {}).get("selector") or {}).items())
        evidence = (f"Endpoints {bk_ns}/{service}: " + ("object missing" if endpoints is None else
                                                       f"0 ready addresses, {not_ready} not ready")
                    + f"; Service selector {selector or '(none)'}")
        findings.append(make_finding("buildkit/no-endpoints", f"Service {bk_ns}/{service}", evidence,
                                     service=service, namespace=bk_ns))
    return findings


def _pending_jobs(snapshot: Snapshot, params: dict) -> list[Finding]:
    namespace = params.get("namespace") or DEFAULT_NAMESPACE
    limit = float(params.get("pending_after_s", PENDING_AFTER_S))
    findings = []
    for job in build_jobs(snapshot, namespace):
        if job_status(job) in ("Failed", "Complete"):
            continue
        pods = snapshot.pods_of_job(namespace_of(job), name_of(job))
        if any((p.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed") for p in pods):
            continue
        age = job_age(snapshot, job)
        if age is None or age.total_seconds() <= limit:
            continue
        parts = [f"Job {name_of(job)} started {human_age(age)} ago (limit {human_age(timedelta(seconds=limit))}), "
                 f"no pod running or finished"]
        for pod in pods:
            parts.append(f"pod {name_of(pod)}: {pod_state(pod)}")
            events = [e for e in snapshot.events_for(pod) if e.get("type") == "Warning"]
            if events:
                parts.append(f"last warning {events[0].get('reason')}: {event_message(events[0])}")
        if not pods:
            parts.append("no pods created")
        findings.append(make_finding("buildkit/job-pending", f"Job {namespace}/{name_of(job)}",
                                     scrub("; ".join(parts)), job=name_of(job), age=human_age(age)))
    return findings


def buildkit_service_frame(snapshot: Snapshot, namespace: str = BUILDKIT_NAMESPACE,
                           service: str = BUILDKIT_SERVICE) -> pd.DataFrame:
    """The guide's `kubectl get svc,endpoints,deployment -n buildkit` as one table of facts."""
    svc = snapshot.get("Service", namespace, service)
    endpoints = snapshot.get("Endpoints", namespace, service) or {}
    deployment = snapshot.get("Deployment", namespace, service)
    subsets = endpoints.get("subsets") or []
    ready = [f"{a.get('ip')}:{p.get('port')}" for s in subsets for a in s.get("addresses") or [] for p in s.get("ports") or []]
    not_ready = [a.get("ip", "") for s in subsets for a in s.get("notReadyAddresses") or []]
    status = (deployment or {}).get("status") or {}
    rows = [
        ("Service", f"{namespace}/{service}" if svc else "missing"),
        ("cluster IP", ((svc or {}).get("spec") or {}).get("clusterIP", "")),
        ("ports", ", ".join(f"{p.get('port')}->{p.get('targetPort')}" for p in ((svc or {}).get("spec") or {}).get("ports") or [])),
        ("ready endpoints", ", ".join(ready) or "none"),
        ("not-ready endpoints", ", ".join(not_ready) or "none"),
        ("Deployment", f"{status.get('availableReplicas', 0)}/{(deployment or {}).get('spec', {}).get('replicas', 0)} available"
         if deployment else "missing"),
    ]
    return pd.DataFrame(rows, columns=["fact", "value"])


def addresses_to_probe(snapshot: Snapshot, params: dict | None = None) -> list[str]:
    """The canonical Service address and every other address a client is configured with (at most three)."""
    params = params or {}
    _, _, canonical = expected_addresses(snapshot, params.get("buildkit_namespace") or BUILDKIT_NAMESPACE,
                                         params.get("buildkit_service") or BUILDKIT_SERVICE)
    configured = [c.address for c in buildkit_clients(snapshot, params) if c.address]
    return list(dict.fromkeys([canonical, *configured]))[:3]
